"""The simulated int8 rounding of quantization-aware exit training (augment/fake_quant.py):
TFLite's asymmetric int8 grid, off until switched on, ranges measured on the calibration data
as the converter measures them, pooling on its input's grid. Its use in training:
tests/test_training.py."""
from __future__ import annotations

import numpy as np
import pytest

from eenn.augment.fake_quant import calibrate, fake_quant_layer, same_grid_layer, set_active


def _grid(lo: float, hi: float) -> tuple[float, int]:
    """TFLite's asymmetric int8 (scale, zero point) for a float range that includes 0."""
    scale = (hi - lo) / 255.0
    return scale, int(round(-128 - lo / scale))


def _model():
    import keras

    fq = fake_quant_layer("conv")
    inp = keras.Input((4,))
    h = fq(inp)
    pooled = same_grid_layer("pool", fq)(keras.layers.Lambda(lambda t: t * 0.3)(h))
    return fq, keras.Model(inp, [h, pooled])


def test_ranges_are_the_calibration_min_max_and_do_not_move_otherwise():
    fq, model = _model()
    cal = np.array([[0.5, 1.0, 2.0, 4.0], [-1.5, 0.0, 3.0, 6.0]], np.float32)
    calibrate(model, lambda: model(cal))
    assert (float(fq.lo), float(fq.hi)) == (-1.5, 6.0)
    model(cal * 10, training=True)
    model(cal * 10)
    assert (float(fq.lo), float(fq.hi)) == (-1.5, 6.0)  # training and inference leave them alone
    calibrate(model, lambda: model(np.abs(cal)))
    assert (float(fq.lo), float(fq.hi)) == (0.0, 6.0)  # measured afresh; 0 is always inside


def test_rounding_is_off_until_switched_on_and_then_on_the_int8_grid():
    fq, model = _model()
    lo, hi = -1.5, 6.0
    calibrate(model, lambda: model(np.array([[lo, 0.0, 0.0, hi]], np.float32)))
    x = np.random.default_rng(0).uniform(-3, 9, size=(64, 4)).astype(np.float32)
    out, _ = model(x)
    np.testing.assert_array_equal(np.asarray(out), x)  # inactive: identity
    set_active(model, True)
    out, pooled = (np.asarray(t) for t in model(x))
    scale, zp = _grid(lo, hi)
    q = np.round(out / scale) + zp
    np.testing.assert_allclose(out / scale + zp, q, atol=1e-3)  # on the grid ...
    assert q.min() >= -128 and q.max() <= 127  # ... saturated at its ends
    inside = (x > lo) & (x < hi)
    assert np.abs(out - x)[inside].max() <= scale / 2 + 1e-5  # and the nearest level inside
    qp = pooled / scale + zp
    np.testing.assert_allclose(qp, np.round(qp), atol=1e-3)  # pooled values sit on the conv's grid
    set_active(model, False)
    np.testing.assert_array_equal(np.asarray(model(x)[0]), x)


def test_calibrating_measures_in_float_and_leaves_rounding_off():
    fq, model = _model()
    calibrate(model, lambda: model(np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)))
    set_active(model, True)
    seen = []
    calibrate(model, lambda: seen.append(np.asarray(model(np.array([[0.0, 0.1, 0.2, 5.0]], np.float32))[0])))
    np.testing.assert_allclose(seen[0], [[0.0, 0.1, 0.2, 5.0]])  # the float values, not rounded ones
    assert float(fq.hi) == pytest.approx(5.0) and float(fq.active) == 0.0
