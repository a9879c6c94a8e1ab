"""Small Keras models built in tests (seconds, no downloads)."""
from __future__ import annotations

import numpy as np


def _keras():
    import keras

    return keras, keras.layers


def cnn2d(num_classes: int = 4, input_shape=(16, 16, 1)):
    """Conv blocks with BN/ReLU/pooling, a depthwise-separable block, GAP + Dense head."""
    keras, L = _keras()
    inp = keras.Input(input_shape, name="image")
    x = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = L.BatchNormalization(name="c1_bn")(x)
    x = L.ReLU(name="c1_relu")(x)
    x = L.MaxPooling2D(name="c1_pool")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="ds_dw")(x)
    x = L.ReLU(name="ds_dw_relu")(x)
    x = L.Conv2D(16, 1, name="ds_pw")(x)
    x = L.ReLU(name="ds_pw_relu")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c3")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(num_classes, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name="cnn2d")


def ecg_fcn(num_classes: int = 6, length: int = 128):
    """A 1-D fully convolutional ECG-style net: Conv1D-BN-ReLU blocks, GAP, Dense softmax."""
    keras, L = _keras()
    inp = keras.Input((length, 1), name="beat")
    x = inp
    for i, (f, k) in enumerate([(8, 7), (16, 5), (16, 3)]):
        x = L.Conv1D(f, k, padding="same", name=f"conv{i}")(x)
        x = L.BatchNormalization(name=f"bn{i}")(x)
        x = L.ReLU(name=f"relu{i}")(x)
        if i < 2:
            x = L.MaxPooling1D(2, name=f"pool{i}")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    out = L.Dense(num_classes, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name="ecg_fcn")


def small_resnet(num_classes: int = 5):
    """A stem and three residual blocks (two identity, one projection), GAP + Dense."""
    keras, L = _keras()
    inp = keras.Input((16, 16, 3), name="img")
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    for i in range(2):
        y = L.Conv2D(8, 3, padding="same", name=f"r{i}_a")(x)
        y = L.ReLU(name=f"r{i}_a_relu")(y)
        y = L.Conv2D(8, 3, padding="same", name=f"r{i}_b")(y)
        x = L.Add(name=f"r{i}_add")([x, y])
        x = L.ReLU(name=f"r{i}_out")(x)
    s = L.Conv2D(16, 1, strides=2, name="r2_proj")(x)
    y = L.Conv2D(16, 3, strides=2, padding="same", name="r2_a")(x)
    x = L.Add(name="r2_add")([s, y])
    x = L.ReLU(name="r2_out")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="tail")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(num_classes, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name="small_resnet")


def sequential_1d(num_classes: int = 3):
    keras, L = _keras()
    return keras.Sequential([
        keras.Input((32, 2)),
        L.Conv1D(4, 3, activation="relu", name="s_conv"),
        L.SeparableConv1D(8, 3, name="s_sep"),
        L.Flatten(name="s_flat"),
        L.Dense(num_classes, activation="softmax", name="s_fc"),
    ], name="seq1d")


def independent_macs(model) -> int:
    """MACs counted straight from kernel shapes (Conv/Depthwise/Separable/Dense), for cross-checks."""
    total = 0
    for layer in model.layers:
        name = type(layer).__name__
        out = layer.output.shape[1:]
        spatial = int(np.prod(out[:-1]))
        if name in ("Conv1D", "Conv2D"):
            total += spatial * int(np.prod(layer.kernel.shape))
        elif name in ("DepthwiseConv1D", "DepthwiseConv2D"):
            total += spatial * int(np.prod(layer.kernel.shape))
        elif name in ("SeparableConv1D", "SeparableConv2D"):
            total += spatial * int(np.prod(layer.depthwise_kernel.shape)) + spatial * int(np.prod(layer.pointwise_kernel.shape))
        elif name == "Dense":
            total += int(np.prod(layer.input.shape[1:-1])) * int(np.prod(layer.kernel.shape))
    return total
