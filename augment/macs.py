"""Multiply-accumulates and int8 parameter bytes per Keras layer type.

The cost model is MACs / MAC rate, so these formulas are the cost model's foundation. A layer
type that is neither listed as compute nor as zero-MAC is refused by name, never guessed.
"""
from __future__ import annotations

from math import prod
from typing import Any, Sequence

Shape = tuple[int, ...]  # without the batch dimension

COMPUTE = {
    "Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
    "Conv1DTranspose", "Conv2DTranspose", "Dense",
}
SPATIAL_COMPUTE = COMPUTE - {"Dense"}
# Zero-MAC layers, by the role they play when layers are fused into blocks.
POST = {  # fused into the compute layer before them
    "BatchNormalization", "LayerNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU",
    "Softmax", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "ActivityRegularization", "Identity",
}
POOL = {"MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D"}
GLOBAL_POOL = {"GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D"}
RESHAPE = {"Reshape", "Flatten", "Permute"}
SHAPING = {"ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D",
           "Rescaling", "Normalization"}
MERGE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"}
INPUT = {"InputLayer"}
SUPPORTED = COMPUTE | POST | POOL | GLOBAL_POOL | RESHAPE | SHAPING | MERGE | INPUT

BIAS_BYTES = 4  # int8 kernels keep int32 biases


def kind_of(class_name: str) -> str:
    for kind, members in (("compute", COMPUTE), ("post", POST), ("pool", POOL), ("global_pool", GLOBAL_POOL),
                          ("reshape", RESHAPE), ("shaping", SHAPING), ("merge", MERGE), ("input", INPUT)):
        if class_name in members:
            return kind
    return "unsupported"


def _kernel(config: dict[str, Any]) -> int:
    return prod(int(k) for k in config["kernel_size"])


def layer_macs(class_name: str, config: dict[str, Any], input_shapes: Sequence[Shape], output_shape: Shape) -> int:
    """MACs of one layer for one sample (batch dimension excluded)."""
    if class_name not in COMPUTE:
        return 0
    in_shape = input_shapes[0]
    if class_name == "Dense":
        return prod(in_shape[:-1]) * in_shape[-1] * output_shape[-1]
    out_spatial = prod(output_shape[:-1])
    in_c = in_shape[-1]
    k = _kernel(config)
    if class_name in ("Conv1D", "Conv2D"):
        groups = int(config.get("groups", 1) or 1)
        return out_spatial * output_shape[-1] * k * (in_c // groups)
    if class_name in ("DepthwiseConv1D", "DepthwiseConv2D"):
        dm = int(config.get("depth_multiplier", 1))
        return out_spatial * in_c * dm * k
    if class_name in ("SeparableConv1D", "SeparableConv2D"):
        dm = int(config.get("depth_multiplier", 1))
        return out_spatial * in_c * dm * k + out_spatial * in_c * dm * output_shape[-1]
    if class_name in ("Conv1DTranspose", "Conv2DTranspose"):
        return prod(in_shape[:-1]) * k * in_c * output_shape[-1]
    raise AssertionError(class_name)


def param_bytes_int8(class_name: str, config: dict[str, Any], weight_shapes: Sequence[Shape], folded: bool) -> int:
    """Bytes of parameters after full-integer quantization.

    Kernels are int8; biases int32. A BatchNormalization folded into the compute layer before it
    costs nothing; elsewhere it becomes a per-channel multiply and add (int8 constants).
    """
    if class_name in COMPUTE:
        total = 0
        for shape in weight_shapes:
            n = prod(shape)
            total += n * BIAS_BYTES if len(shape) == 1 else n
        return total
    if class_name == "BatchNormalization":
        return 0 if folded else 2 * prod(weight_shapes[0]) if weight_shapes else 0
    if class_name == "PReLU":
        return sum(prod(s) for s in weight_shapes)
    return 0
