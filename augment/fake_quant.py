"""int8 activation quantization simulated while an exit trains (quantization-aware training).

Why: the exit runs on the board as a full-integer int8 model whose every activation tensor has
one (scale, zero point) per tensor, calibrated on min/max. Early exits are small and see maps
whose channels differ in range by orders of magnitude; the input standardisation and the
BatchNormalization folded into their weights lean on exactly the low-range channels that int8
rounds away. Trained in float only, such an exit can lose ten points when converted (DS-CNN-L
after its first convolution). Training the last epochs through the rounding the converter will
apply lets the exit learn weights that survive it.

What is simulated, tensor by tensor as TFLite quantizes them:
- the exit's input, the backbone's int8 feature map: a fixed range, the min/max of that map on
  the calibration split (what the converter calibrates the segment's output on);
- the output of every weighted layer (after its fused activation): a range tracked as a moving
  average of batch min/max, as TensorFlow's own QAT does;
- pooling and flatten outputs: rounded to their input's grid (int8 pooling keeps the input's
  scale and zero point).
Rounding uses a straight-through gradient (`tf.quantization.fake_quant_with_min_max_vars`).
The layers exist only in the training model: the exported exit is the plain planned model and
the converter calibrates it afresh. Weights are not fake-quantized (per-channel int8 weights
cost little; the weights the converter sees are the folded ones, not the trained ones).
"""
from __future__ import annotations

from typing import Any

SUFFIX = "_fakequant"  # training-only layers; fold_into_export skips them


def fake_quant_layer(name: str, fixed_range: tuple[float, float] | None = None, momentum: float = 0.9) -> Any:
    """A Keras layer that rounds its input to an int8 grid when `active` is set (see module doc)."""
    import keras
    import tensorflow as tf

    class FakeQuant(keras.layers.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.fixed = fixed_range
            self.momentum = momentum

        def build(self, input_shape):
            lo, hi = self.fixed if self.fixed is not None else (0.0, 0.0)
            self.lo = self.add_weight(shape=(), initializer=keras.initializers.Constant(min(lo, 0.0)),
                                      trainable=False, name="lo")
            self.hi = self.add_weight(shape=(), initializer=keras.initializers.Constant(max(hi, 0.0)),
                                      trainable=False, name="hi")
            self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False, name="seen")
            self.active = self.add_weight(shape=(), initializer="zeros", trainable=False, name="active")

        def call(self, x, training=False):
            if training and self.fixed is None:
                m = tf.where(self.seen > 0, self.momentum, 0.0)
                self.lo.assign(m * self.lo + (1 - m) * tf.minimum(tf.reduce_min(x), 0.0))
                self.hi.assign(m * self.hi + (1 - m) * tf.maximum(tf.reduce_max(x), 0.0))
                self.seen.assign(1.0)
            return self.round(x)

        def round(self, x):
            hi = tf.maximum(self.hi, self.lo + 1e-6)
            q = tf.quantization.fake_quant_with_min_max_vars(x, self.lo, hi, num_bits=8, narrow_range=False)
            return tf.where(self.active > 0, q, x)

    return FakeQuant(name=name + SUFFIX)


def same_grid_layer(name: str, source: Any) -> Any:
    """Rounds to `source`'s current grid without updating it (pooling keeps its input's scale)."""
    import keras

    class SameGrid(keras.layers.Layer):
        def call(self, x, training=False):
            return source.round(x)

    return SameGrid(name=name + SUFFIX)


def is_fake_quant(layer: Any) -> bool:
    return layer.name.endswith(SUFFIX)


def set_active(model: Any, active: bool) -> None:
    """Switch the rounding on (or off) in every fake-quant layer of `model`, nested models included."""
    for layer in _walk(model):
        if is_fake_quant(layer) and hasattr(layer, "active"):
            layer.active.assign(1.0 if active else 0.0)


def _walk(model: Any):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _walk(layer)
