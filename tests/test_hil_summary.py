"""Summary statistics: nearest-rank percentiles, macro precision/recall, the datasheet energy model."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eenn.hil.energy import DatasheetEnergy
from eenn.hil.summary import percentile, precision_recall, stats

values = st.lists(st.floats(0, 1e3, allow_nan=False), min_size=1, max_size=300)


@given(values, st.floats(0.1, 100))
def test_percentile_is_the_nearest_rank(vals, p):
    got = percentile(vals, p)
    assert got in vals  # always a value that happened
    below_or_equal = sum(v <= got for v in vals)
    strictly_below = sum(v < got for v in vals)
    assert below_or_equal >= math.ceil(p / 100 * len(vals) - 1e-9)  # at least p % do not exceed it
    assert strictly_below < max(1, math.ceil(p / 100 * len(vals) - 1e-9))  # and it is the smallest such


@given(values)
def test_stats_are_ordered(vals):
    s = stats(vals)
    assert s["n"] == len(vals)
    assert min(vals) <= s["p50"] <= s["p99"] <= s["worst"] == max(vals)
    assert min(vals) - 1e-9 <= s["mean"] <= max(vals) + 1e-9


def test_percentile_examples_and_empty():
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile(list(range(1, 101)), 100) == 100
    assert percentile([7], 99) == 7
    assert stats([])["mean"] is None
    with pytest.raises(ValueError):
        percentile([], 50)


@settings(deadline=None, max_examples=60)  # the first call imports scikit-learn
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=200))
def test_macro_precision_recall_match_scikit_learn(pairs):
    from sklearn.metrics import precision_score, recall_score

    y = np.array([a for a, _ in pairs])
    p = np.array([b for _, b in pairs])
    labels = np.unique(y)
    prec, rec = precision_recall(y, p)
    assert prec == pytest.approx(precision_score(y, p, labels=labels, average="macro", zero_division=0))
    assert rec == pytest.approx(recall_score(y, p, labels=labels, average="macro", zero_division=0))


def test_energy_splits_the_handoff_between_sender_and_receiver():
    e = DatasheetEnergy(active_w=[0.02, 0.04], sleep_w=[0.001, 0.002], handoff_s=[(0.3e-3, 0.1e-3)], link_j=[1e-6])
    assert e.power_w(0) == pytest.approx(0.022) and e.power_w(1) == pytest.approx(0.041)
    # early exit: core 0's time (+ any time beyond its ticks at core 0's power)
    assert e.inference_j([2e-3, 0.0], 2e-3, 0) == pytest.approx(2e-3 * 0.022)
    # full path: 0.4 ms of handoff, 3/4 at the sender's power, 1/4 at the receiver's, plus the link energy
    got = e.inference_j([2e-3, 5e-3], 7.4e-3, 1)
    want = 2e-3 * 0.022 + 5e-3 * 0.041 + 0.3e-3 * 0.022 + 0.1e-3 * 0.041 + 1e-6
    assert got == pytest.approx(want, rel=1e-12)


@given(st.lists(st.lists(st.floats(0.01, 5000.0), min_size=1, max_size=20), min_size=1, max_size=4),
       st.booleans())
def test_latency_bins_give_every_path_a_visible_bar(paths, constant):
    """Shared bins over all latencies: each value falls inside, and no bin is thinner than 1/200
    of the axis, even when a path's latencies are all equal (the virtual board's are)."""
    from eenn.hil.plots import latency_bins

    if constant:
        paths = [[vals[0]] * len(vals) for vals in paths]
    values = [v for vals in paths for v in vals]
    edges = latency_bins(values)
    span = edges[-1] - edges[0]
    assert all(b - a >= span / 200 for a, b in zip(edges, edges[1:]))
    assert edges[0] < min(values) and max(values) < edges[-1]
