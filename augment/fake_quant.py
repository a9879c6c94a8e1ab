"""int8 activation quantization simulated while an exit trains (quantization-aware training).

Why: the exit runs on the board as a full-integer int8 model whose every activation tensor has
one (scale, zero point) per tensor, calibrated on min/max. Early exits are small and see maps
whose channels differ in range by orders of magnitude; the input standardisation and the
BatchNormalization folded into their weights lean on exactly the low-range channels that int8
rounds away. Trained in float only, such an exit can lose ten points when converted (DS-CNN-L
after its first convolution). Training the last epochs through the rounding the converter will
apply lets the exit learn weights that survive it.

What is simulated, tensor by tensor as TFLite quantizes them:
- the exit's input, the backbone's int8 feature map;
- the output of every weighted layer (after its fused activation);
- pooling and flatten outputs, rounded to their input's grid (int8 pooling keeps the input's
  scale and zero point).
Each range is what the converter will find: the min/max of that tensor over the calibration
split, measured with the current weights (`calibrate`) before every epoch that rounds.
Rounding uses a straight-through gradient (`tf.quantization.fake_quant_with_min_max_vars`,
which also nudges the range so that 0 is exact, as TFLite does). The layers exist only in the
training model: the exported exit is the plain planned model and the converter calibrates it
afresh. Weights are not fake-quantized (per-channel int8 weights cost little, and the weights
the converter sees are the folded ones, not the trained ones).
"""
from __future__ import annotations

from typing import Any, Callable

SUFFIX = "_fakequant"  # training-only layers; fold_into_export skips them


def round_int8(x: Any, lo: Any, hi: Any) -> Any:
    """`x` rounded to the int8 grid spanning [lo, hi] (0 exact, as TFLite nudges it), with a
    straight-through gradient; the one definition the layers below and the cached exit input use."""
    import tensorflow as tf

    hi = tf.maximum(hi, lo + 1e-6)
    return tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8, narrow_range=False)


def fake_quant_layer(name: str) -> Any:
    """A Keras layer that rounds its input to an int8 grid while `active`, and widens its range to
    what it sees while `measuring` (see the module doc)."""
    import keras
    import tensorflow as tf

    class FakeQuant(keras.layers.Layer):
        def build(self, input_shape):
            zero = keras.initializers.Zeros()
            self.lo = self.add_weight(shape=(), initializer=zero, trainable=False, name="lo")
            self.hi = self.add_weight(shape=(), initializer=zero, trainable=False, name="hi")
            # A variable: the training step is traced once and must see it switched on later.
            self.active = self.add_weight(shape=(), initializer=zero, trainable=False, name="active")
            # A Python flag: `calibrate` runs the model eagerly, the traced step never measures.
            self.measuring = False

        def call(self, x, training=False):
            if self.measuring:
                self.lo.assign(tf.minimum(self.lo, tf.reduce_min(x)))
                self.hi.assign(tf.maximum(self.hi, tf.reduce_max(x)))
            return self.round(x)

        def round(self, x):
            # A branch, not a select: in the float epochs neither the rounding nor its gradient runs.
            return tf.cond(self.active > 0, lambda: round_int8(x, self.lo, self.hi), lambda: tf.identity(x))

    return FakeQuant(name=name + SUFFIX)


def same_grid_layer(name: str, source: Any) -> Any:
    """Rounds to `source`'s grid without measuring (pooling keeps its input's scale)."""
    import keras

    class SameGrid(keras.layers.Layer):
        def call(self, x, training=False):
            return source.round(x)

    return SameGrid(name=name + SUFFIX)


def is_fake_quant(layer: Any) -> bool:
    return layer.name.endswith(SUFFIX)


def _layers(model: Any) -> list[Any]:
    out = []
    for layer in getattr(model, "layers", []):
        if is_fake_quant(layer) and hasattr(layer, "active"):
            out.append(layer)
        if hasattr(layer, "layers"):
            out += _layers(layer)
    return out


def set_active(model: Any, active: bool) -> None:
    """Switch the rounding on (or off) in every fake-quant layer of `model`, nested models included."""
    for layer in _layers(model):
        layer.active.assign(1.0 if active else 0.0)


def calibrate(model: Any, run: Callable[[], Any]) -> None:
    """Set every range to the min/max (0 included) of its tensor while `run()` feeds the
    calibration split through `model` in float, as the converter will; rounding is left off.
    `run` must call the model eagerly (not through a traced function)."""
    layers = _layers(model)
    for layer in layers:
        layer.active.assign(0.0)
        layer.lo.assign(0.0)
        layer.hi.assign(0.0)
        layer.measuring = True
    try:
        run()
    finally:
        for layer in layers:
            layer.measuring = False
