"""The integer rules shared with the firmware: exact thresholds and TFLite requantization."""
from fractions import Fraction

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from eenn.augment.quant import (
    confidence_q,
    dequantize,
    exit_taken,
    quantize,
    quantize_multiplier,
    requantize,
    threshold_q,
)

scales = st.floats(min_value=1e-4, max_value=0.5, allow_nan=False).map(lambda s: float(np.float32(s)))
zero_points = st.integers(-128, 127)
thresholds = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(thresholds, scales, zero_points)
def test_threshold_q_splits_int8_range_exactly(t, scale, zp):
    thr = threshold_q(t, scale, zp, "max")
    for q in range(-128, 128):
        exact = (Fraction(q) - zp) * Fraction(scale) >= Fraction(t)
        assert (q >= thr) == exact


def test_threshold_q_softmax_edges():
    assert threshold_q(0.6, 1 / 256, -128) == 26  # 154/256 = 0.6016 ≥ 0.6 > 153/256
    assert threshold_q(1.0, 1 / 256, -128) == 128  # no int8 reaches it: never exits
    assert threshold_q(0.0, 1 / 256, -128) == -128  # every score reaches it: always exits


@given(st.lists(st.integers(-128, 127), min_size=2, max_size=20), st.integers(0, 255))
def test_margin_threshold_matches_float_margin(scores, thr_steps):
    scale = 1 / 256
    t = thr_steps * scale
    q = np.array(scores, dtype=np.int8)
    thr = threshold_q(t, scale, -128, "margin")
    top = np.sort(q.astype(int))[-2:]
    assert exit_taken(q, thr, "margin")[0] == ((top[1] - top[0]) * scale >= t)
    assert confidence_q(q, "margin")[0] == top[1] - top[0]


@given(st.floats(min_value=1e-6, max_value=100.0, allow_nan=False))
def test_quantize_multiplier_represents_ratio(real):
    m, shift = quantize_multiplier(real)
    assert 2**30 <= m < 2**31
    assert abs(m * 2.0 ** (shift - 31) - real) <= real * 2**-30


@given(scales, scales, zero_points, zero_points)
def test_requantize_within_one_step_of_float(sp, sc, zp, zc):
    q = np.arange(-128, 128).astype(np.int8)
    m, shift = quantize_multiplier(sp / sc)
    out = requantize(q, m, shift, zp, zc).astype(int)
    ideal = np.clip(np.round((q.astype(int) - zp) * (sp / sc)) + zc, -128, 127)
    assert np.abs(out - ideal).max() <= 1


def test_requantize_identity_is_exact():
    q = np.arange(-128, 128).astype(np.int8)
    m, shift = quantize_multiplier(1.0)
    assert np.array_equal(requantize(q, m, shift, -5, -5), q)


@given(scales, zero_points)
def test_quantize_roundtrip_within_half_step(scale, zp):
    x = np.linspace(-1, 1, 101)
    q = quantize(x, scale, zp)
    back = dequantize(q, scale, zp)
    inside = (q > -128) & (q < 127)
    assert np.all(np.abs(back[inside] - x[inside]) <= scale / 2 + 1e-6)
