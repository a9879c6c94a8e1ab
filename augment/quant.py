"""Integer rules that the firmware and Python must agree on bit for bit.

The exit decision runs on the int8 softmax of the early classifier and the feature map crossing
cores may need requantizing. Both are done here with exact integer arithmetic (TFLite's
fixed-point scheme), and `firmware/src` implements the same rules in C; tests compare the two.
See docs/interfaces.md, "Integer rules".
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

import numpy as np

Confidence = Literal["max", "margin"]
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def threshold_q(threshold: float, scale: float, zero_point: int, confidence: Confidence = "max") -> int:
    """The int32 threshold that makes `max_q >= threshold_q` equal `dequant(max_q) >= threshold`.

    Computed exactly on rationals (the float32 scale is exact as a Fraction), so no value of the
    int8 score sits on the wrong side through float rounding. For `margin` the compare is on
    `q1 - q2` and the zero point cancels.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    ratio = Fraction(threshold) / Fraction(float(scale))
    if confidence == "max":
        return math.ceil(ratio + zero_point)
    if confidence == "margin":
        return math.ceil(ratio)
    raise ValueError(f"confidence must be 'max' or 'margin', got {confidence!r}")


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real ≈ multiplier · 2^(shift − 31), multiplier in [2^30, 2^31)."""
    if real < 0:
        raise ValueError("requantization multiplier must be non-negative")
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)
    q = int(math.floor(mantissa * (1 << 31) + 0.5))  # half away from zero, as std::round
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise ValueError(f"requantization ratio {real} is too large for int32 fixed point")
    return q, shift


def _trunc_div_pow2(x: np.ndarray, bits: int) -> np.ndarray:
    """Integer division by 2**bits truncating toward zero, as C's `/` on int64."""
    return np.where(x >= 0, x >> bits, -((-x) >> bits))


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int32 values, vectorised in int64."""
    a = np.asarray(a, dtype=np.int64)
    ab = a * np.int64(b)
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    out = _trunc_div_pow2(ab + nudge, 31)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, np.int64(INT32_MAX), out)


def rounding_divide_by_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: divide by 2^exponent, rounding half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    if exponent == 0:
        return x
    mask = np.int64((1 << exponent) - 1)
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(np.int64)
    return (x >> exponent) + (remainder > threshold).astype(np.int64)


def requantize(q: np.ndarray, multiplier: int, shift: int, in_zero_point: int, out_zero_point: int) -> np.ndarray:
    """Map int8 values of one quantization onto another exactly as the C runtime does."""
    acc = np.asarray(q, dtype=np.int64) - in_zero_point
    left, right = max(shift, 0), max(-shift, 0)
    acc = acc * (1 << left)
    if np.any((acc < INT32_MIN) | (acc > INT32_MAX)):
        raise OverflowError("requantization input overflows int32 after the left shift")
    acc = saturating_rounding_doubling_high_mul(acc, multiplier)
    acc = rounding_divide_by_pot(acc, right)
    return np.clip(acc + out_zero_point, -128, 127).astype(np.int8)


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float → int8 with TFLite's rounding (half away from zero) and saturation."""
    scaled = np.asarray(x, dtype=np.float64) / float(scale)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    return np.clip(rounded + zero_point, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(q, dtype=np.float32) - np.float32(zero_point)) * np.float32(scale)


def confidence_q(scores_q: np.ndarray, confidence: Confidence = "max") -> np.ndarray:
    """Integer confidence per row of int8 scores: max, or top1 − top2 for `margin`."""
    s = np.asarray(scores_q, dtype=np.int32)
    if s.ndim == 1:
        s = s[None, :]
    if confidence == "max":
        return s.max(axis=1)
    if confidence == "margin":
        top2 = np.sort(s, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    raise ValueError(f"confidence must be 'max' or 'margin', got {confidence!r}")


def exit_taken(scores_q: np.ndarray, thr_q: int, confidence: Confidence = "max") -> np.ndarray:
    """True where the early classifier is confident enough to stop (per row)."""
    return confidence_q(scores_q, confidence) >= thr_q
