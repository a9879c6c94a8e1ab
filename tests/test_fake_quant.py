"""The simulated int8 rounding of quantization-aware exit training (augment/fake_quant.py):
TFLite's asymmetric int8 grid, off until switched on, ranges fixed or tracked, pooling on its
input's grid. Its use in training: tests/test_training.py."""
from __future__ import annotations

import numpy as np
import pytest

from eenn.augment.fake_quant import fake_quant_layer, same_grid_layer, set_active


def _grid(lo: float, hi: float) -> tuple[float, int]:
    """TFLite's asymmetric int8 (scale, zero point) for a float range that includes 0."""
    scale = (hi - lo) / 255.0
    return scale, int(round(-128 - lo / scale))


def test_rounding_is_off_until_switched_on_and_then_on_the_int8_grid():
    import keras

    lo, hi = -1.5, 6.0
    fq = fake_quant_layer("x", fixed_range=(lo, hi))
    x = np.random.default_rng(0).uniform(-3, 9, size=(64, 7)).astype(np.float32)
    inp = keras.Input((7,))
    model = keras.Model(inp, fq(inp))
    np.testing.assert_array_equal(np.asarray(model(x)), x)  # inactive: identity
    set_active(model, True)
    out = np.asarray(model(x))
    scale, zp = _grid(lo, hi)
    q = np.round(out / scale) + zp
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)  # on the grid ...
    assert q.min() >= -128 - 1e-3 and q.max() <= 127 + 1e-3  # ... saturated at its ends
    inside = (x > lo) & (x < hi)
    assert np.abs(out - x)[inside].max() <= scale / 2 + 1e-5  # and the nearest level inside
    set_active(model, False)
    np.testing.assert_array_equal(np.asarray(model(x)), x)


def test_tracked_range_follows_the_batches_and_pooling_keeps_its_input_grid():
    import keras

    fq = fake_quant_layer("conv", momentum=0.5)
    inp = keras.Input((4,))
    h = fq(inp)
    pooled = same_grid_layer("pool", fq)(keras.layers.Lambda(lambda t: t * 0.3)(h))
    model = keras.Model(inp, [h, pooled])
    a = np.array([[0.0, 1.0, 2.0, 4.0]], np.float32)
    model(a, training=True)
    assert (float(fq.lo), float(fq.hi)) == (0.0, 4.0)  # first batch: its own range (0 always inside)
    model(a * 2, training=True)
    assert float(fq.hi) == pytest.approx(0.5 * 4.0 + 0.5 * 8.0)  # then a moving average
    model(-a, training=False)
    assert float(fq.lo) == 0.0 and float(fq.hi) == pytest.approx(6.0)  # inference does not move it
    set_active(model, True)
    _, p = model(a)
    scale, zp = _grid(0.0, 6.0)
    q = np.asarray(p) / scale
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)  # the pooled values sit on the conv's grid
