"""Summary statistics: nearest-rank percentiles, macro precision/recall, the datasheet energy model."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eenn.hil.energy import DatasheetEnergy
from eenn.hil.summary import percentile, precision_recall, score_agreement, stats

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


def test_score_agreement_per_exit_by_hand():
    # samples 0, 1 answered at exit 0 on both sides; sample 2 at exit 0 on the board, exit 1 in the chain
    records = [{"index": 0, "class": 2, "exit": 0, "scores_q": [-128, 10, 40]},
               {"index": 1, "class": 1, "exit": 0, "scores_q": [-100, 90, -120]},
               {"index": 2, "class": 0, "exit": 0, "scores_q": [100, 0, 0]},
               {"index": 3, "class": 0, "exit": 1, "scores_q": [5, 1]}]
    ref_class, ref_exit = np.array([2, 1, 0, 0]), np.array([0, 0, 1, 1])
    ref_scores = [[-128, 7, 40], [-100, 91, -120], [0, 0, 100], [5, 1]]
    a = score_agreement(records, ref_class, ref_exit, ref_scores, 0)
    assert (a["n"], a["same_exit"]) == (3, 2)
    assert a["class_agreement"] == pytest.approx(2 / 3)  # sample 2 left the chain at another exit
    # differences board - chain over samples 0 and 1: (0, 3, 0, 0, -1, 0)
    assert a["score_diff_lsb"] == {"n_samples": 2, "max": 3.0, "rms": pytest.approx(math.sqrt(10 / 6), rel=1e-12)}
    b = score_agreement(records, ref_class, ref_exit, ref_scores, 1)
    assert b["class_agreement"] == 1.0 and b["score_diff_lsb"] == {"n_samples": 1, "max": 0.0, "rms": 0.0}
    # no scores on one side (an older reference.json): agreement still, differences null
    c = score_agreement(records, ref_class, ref_exit, None, 0)
    assert c["class_agreement"] == pytest.approx(2 / 3) and c["score_diff_lsb"]["max"] is None
    with pytest.raises(ValueError, match="sample 0: the board sent 3 scores, the int8 chain has 2"):
        score_agreement(records, ref_class, ref_exit, [[1, 2], [1, 2, 3], [1, 2, 3], [5, 1]], 0)
