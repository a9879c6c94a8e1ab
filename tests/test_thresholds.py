"""Threshold search: the vectorised exact grid against a per-sample loop, and the paper's graph
against the exhaustive optimum."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eenn.augment import thresholds as T
from eenn.errors import EennError


def random_case(seed: int, k: int, n: int, classes: int = 4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    probs = []
    for _ in range(k + 1):
        logits = rng.normal(size=(n, classes)) * rng.uniform(0.5, 4)
        logits[np.arange(n), y] += rng.uniform(0, 3)  # better than chance, to varying degrees
        e = np.exp(logits - logits.max(1, keepdims=True))
        probs.append(e / e.sum(1, keepdims=True))
    macs = rng.uniform(1, 10, k + 1)
    return probs, y, macs


def cascade_data(probs, y, macs, confidence="max"):
    conf = np.stack([T.confidence_of(p, confidence) for p in probs[:-1]]) if len(probs) > 1 else np.zeros((0, len(y)))
    correct = np.stack([p.argmax(1) == y for p in probs])
    return T.CascadeData(conf=conf, correct=correct, stage_cost=np.asarray(macs))


def loop_reference(probs, y, macs, thresholds):
    """Per sample, in plain Python: the stage that answers, right or wrong, and MACs spent."""
    right, spent, stages = 0, 0.0, []
    for i in range(len(y)):
        for k, t in enumerate(list(thresholds) + [None]):
            spent += macs[k]
            p = probs[k][i]
            if t is None or (t < 1.0 and p.max() >= t):
                right += int(p.argmax() == y[i])
                stages.append(k)
                break
    return right / len(y), spent / len(y), stages


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(0, 3), n=st.integers(1, 60), g=st.integers(2, 5))
def test_exact_grid_matches_a_per_sample_loop(seed, k, n, g):
    probs, y, macs = random_case(seed, k, n)
    grid = np.round(np.sort(np.random.default_rng(seed).uniform(0.2, 1.0, g)), 3)
    grid[-1] = 1.0  # include "never exits"
    data = cascade_data(probs, y, macs)
    result = T.exact_grid(data, grid, max_cells=64)  # tiny chunks: exercises the chunking
    for idx in itertools.product(range(g), repeat=k):
        th = [grid[j] for j in idx]
        acc, mean_macs, stages = loop_reference(probs, y, macs, th)
        assert np.asarray(result.accuracy)[idx] == pytest.approx(acc)
        assert np.asarray(result.mean_cost)[idx] == pytest.approx(mean_macs)
        rates = np.bincount(stages, minlength=k + 1) / n
        np.testing.assert_allclose(np.asarray(result.termination)[idx], rates)
        stage, acc2, macs2 = T.simulate(data, th)
        assert list(stage) == stages and acc2 == pytest.approx(acc) and macs2 == pytest.approx(mean_macs)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 2), n=st.integers(5, 80), w=st.floats(0.0, 1.0))
def test_graph_equals_exhaustive_for_up_to_two_exits(seed, k, n, w):
    probs, y, macs = random_case(seed, k, n)
    data = cascade_data(probs, y, macs)
    grid = T.default_grid("max", 7)
    obj = T.Objective("weighted", base_cost=float(sum(macs)), base_accuracy=float(np.mean(probs[-1].argmax(1) == y)), w=w)
    best = T.best_exact(T.exact_grid(data, grid), obj)
    graph = T.graph_search(data, grid, obj)
    assert graph.cost == pytest.approx(best.cost, abs=1e-9)
    # each choice carries the termination rates of its thresholds (what latency and energy follow from)
    for choice in (best, graph):
        stage, _, _ = T.simulate(data, choice.thresholds)
        np.testing.assert_allclose(choice.termination, np.bincount(stage, minlength=k + 1) / n)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(5, 60))
def test_graph_with_three_exits_is_a_feasible_upper_bound(seed, n):
    probs, y, macs = random_case(seed, 3, n)
    data = cascade_data(probs, y, macs)
    grid = T.default_grid("max", 5)
    obj = T.Objective("weighted", base_cost=float(sum(macs)), base_accuracy=0.5, w=0.9)
    best = T.best_exact(T.exact_grid(data, grid), obj)
    for mode in ("conditional", "independent"):
        g = T.graph_search(data, grid, obj, mode=mode)
        _, acc, m = T.simulate(data, g.thresholds)  # the graph's cost is the exact cost of its answer
        assert g.cost == pytest.approx(float(obj.cost(m, acc)))
        assert g.cost >= best.cost - 1e-12


def test_graph_has_the_papers_size():
    probs, y, macs = random_case(0, 2, 50)
    data = cascade_data(probs, y, macs)
    grid = T.default_grid()
    first, pairs = T._graph_edges(data, grid, 0.9, float(sum(macs)), "conditional")
    nodes = 1 + len(first) + pairs[0].shape[1] + 1
    assert len(grid) == 13 and nodes == 28  # two exits, 13 thresholds each, input and final


def test_max_drop_is_the_best_feasible_configuration():
    probs, y, macs = random_case(3, 2, 200)
    data = cascade_data(probs, y, macs)
    grid = T.default_grid("max", 9)
    base_acc = float(np.mean(probs[-1].argmax(1) == y))
    obj = T.Objective("max_drop", base_cost=float(sum(macs)), base_accuracy=base_acc, max_drop=0.02)
    res = T.exact_grid(data, grid)
    best = T.best_exact(res, obj)
    assert base_acc - best.accuracy <= 0.02 + 1e-12
    feasible = base_acc - np.asarray(res.accuracy) <= 0.02 + 1e-12
    assert best.mean_cost == pytest.approx(np.asarray(res.mean_cost)[feasible].min())
    g = T.graph_search(data, grid, obj)  # Lagrangian sweep: feasible, never better than exact
    assert base_acc - g.accuracy <= 0.02 + 1e-12 and g.cost >= best.cost - 1e-12


def test_threshold_one_never_exits_and_margin_confidence():
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.3, 0.2], [0.34, 0.33, 0.33]])
    assert not T.exits_at(T.confidence_of(p), 1.0).any()
    np.testing.assert_allclose(T.confidence_of(p, "margin"), [1.0, 0.2, 0.01], atol=1e-12)
    assert T.exits_at(T.confidence_of(p), 0.5).tolist() == [True, True, False]
    with pytest.raises(EennError):
        T.confidence_of(p, "entropy")


def test_auto_uses_the_graph_when_the_grid_is_large():
    probs, y, macs = random_case(1, 2, 100)
    data = cascade_data(probs, y, macs)
    obj = T.Objective("weighted", base_cost=float(sum(macs)), base_accuracy=0.5)
    choice, result = T.search(data, T.default_grid(), obj, "auto", exact_limit=100)
    assert choice.method == "graph" and result is None
    choice2, result2 = T.search(data, T.default_grid(), obj, "auto")
    assert choice2.method == "exact" and result2 is not None
    assert choice.cost == pytest.approx(choice2.cost)
