"""What is folded into the exported exit, so that it is the plain planned model the board runs.

Training sees a standardised feature map and a BatchNormalization before each Dense; the export
sees the raw map: the standardisation is folded into the first weighted layer, each
training-only BatchNormalization into the Dense after it (`fold_into_export`). The softmax
temperature fitted on the calibration split is folded into the last layer (`fit_temperature`,
`scale_last_layer`), so that a confidence threshold means the same for every exit.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from eenn.augment.exits import ExitPlan
from eenn.augment.fake_quant import is_fake_quant


def channel_stats(chunks: Callable[[], Any], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over an iterable of (n, ..., C) arrays."""
    s = np.zeros(channels)
    s2 = np.zeros(channels)
    n = 0
    for a in chunks():
        a = np.asarray(a, dtype=np.float64).reshape(-1, channels)
        s += a.sum(0)
        s2 += (a * a).sum(0)
        n += len(a)
    mean = s / max(n, 1)
    std = np.sqrt(np.maximum(s2 / max(n, 1) - mean * mean, 0.0))
    return mean, np.maximum(std, 1e-3 * max(float(std.max(initial=0.0)), 1e-6))


_COMMUTING = {"AveragePooling1D", "AveragePooling2D", "MaxPooling1D", "MaxPooling2D", "GlobalAveragePooling1D",
              "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten"}


def foldable_layer(plan: ExitPlan) -> int | None:
    """Index of the first weighted layer when a per-channel affine map before it can be folded into it."""
    for i, layer in enumerate(plan.layers):
        c, cfg = layer["class_name"], layer["config"]
        if c in _COMMUTING:
            continue
        if c == "Dense":
            return i if cfg.get("use_bias", True) else None
        if c in ("Conv1D", "Conv2D"):
            one = all(int(k) == 1 for k in cfg["kernel_size"])
            if not cfg.get("use_bias", True):
                return None
            return i if one or cfg.get("padding", "valid") == "valid" else None
        return None
    return None


def _fold_input_affine(layer: Any, scale: np.ndarray, shift: np.ndarray) -> None:
    """Make `layer` (Conv or Dense) compute on x what it computed on scale·x + shift, per input
    channel (a Dense after Flatten reads channel r mod C at row r)."""
    weights = layer.get_weights()
    kernel = weights[0].astype(np.float64)
    rows = kernel.shape[-2] if kernel.ndim > 2 else kernel.shape[0]
    ch = np.arange(rows) % len(scale)
    a, c = scale[ch], shift[ch]
    if kernel.ndim > 2:  # conv (k..., C_in, C_out)
        new_kernel = kernel * a.reshape((1,) * (kernel.ndim - 2) + (-1, 1))
        delta = np.einsum("kco,c->o", kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1]), c)
    else:  # dense (D, U)
        new_kernel = kernel * a[:, None]
        delta = c @ kernel
    weights[0] = new_kernel.astype(np.float32)
    weights[1] = (weights[1].astype(np.float64) + delta).astype(np.float32)
    layer.set_weights(weights)


def fold_into_export(train_exit: Any, export_exit: Any, stats: tuple[np.ndarray, np.ndarray] | None) -> None:
    """Copy the trained weights into the plain exit (which sees raw feature maps), folding the
    input standardisation (x − mean) / std into the first weighted layer and every training-only
    BatchNormalization into the Dense layer after it."""
    src = [l for l in train_exit.layers if l.weights and not is_fake_quant(l)]
    dst = [l for l in export_exit.layers if l.weights]
    pending_bn: tuple[np.ndarray, np.ndarray] | None = None
    first = True
    it = iter(dst)
    for layer in src:
        if layer.name.endswith("_bnfold"):
            gamma, beta, mean, var = (w.astype(np.float64) for w in layer.get_weights())
            a = gamma / np.sqrt(var + layer.epsilon)
            pending_bn = (a, beta - a * mean)
            continue
        target = next(it)
        # a Dense trained in place of a 1×1 convolution (build_exit's pointwise_dense): same numbers, reshaped
        target.set_weights([w.reshape(t.shape) for w, t in zip(layer.get_weights(), target.get_weights(), strict=True)])
        if pending_bn is not None:
            _fold_input_affine(target, *pending_bn)
            pending_bn = None
        if first and stats is not None:
            mean, std = stats
            _fold_input_affine(target, 1.0 / std, -mean / std)
        first = False


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T minimising the calibration split's negative log-likelihood of softmax(z / T)
    (temperature scaling): over-confident exits get T > 1, so a threshold means what it says."""
    z = logits.astype(np.float64)
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        a = z / np.exp(log_t)
        a = a - a.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(a).sum(axis=1)) - a[rows, y]))

    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):  # golden-section search; NLL is convex in 1/T
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))


_HOMOGENEOUS = {"AveragePooling1D", "AveragePooling2D", "MaxPooling1D", "MaxPooling2D", "GlobalAveragePooling1D",
                "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten", "Dropout", "ReLU"}


def scalable(plan: ExitPlan) -> bool:
    """Whether scaling the last weighted layer by 1/T scales the logits by 1/T (positively
    homogeneous layers in between)."""
    layers = [l for l in plan.layers if l["class_name"] != "Softmax"]
    for layer in reversed(layers):
        c = layer["class_name"]
        if c == "Dense" or c.startswith("Conv"):
            return layer["config"].get("activation", "linear") in ("linear", None, "relu")
        if c not in _HOMOGENEOUS:
            return False
    return False


def scale_last_layer(model: Any, factor: float) -> None:
    layer = [l for l in model.layers if l.weights][-1]
    layer.set_weights([w * np.float32(factor) for w in layer.get_weights()])
