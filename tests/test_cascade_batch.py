"""The batched threshold phase equals the per-architecture exact simulation and, where the
graph search is exact (up to two exits), its shortest path."""
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eenn.augment import thresholds as T
from eenn.augment.cascade_batch import best_choices, evaluate_batch

COST_TOL = 1e-9  # relative: the mean cost is a sum of the same products in another order


def _problem(seed, n_loc, n):
    rng = np.random.default_rng(seed)
    skill = rng.uniform(0.3, 0.9, size=n_loc)
    correct = np.vstack([rng.random((n_loc, n)) < skill[:, None], rng.random((1, n)) < 0.95])
    # confident where right, more often: a threshold trades accuracy for cost
    conf = np.clip(rng.beta(2, 2, size=(n_loc, n)) + 0.3 * correct[:-1], 0, 1)
    archs = [()] + [(a,) for a in range(n_loc)] + [(a, b) for a in range(n_loc) for b in range(a + 1, n_loc)]
    depth = np.sort(rng.uniform(0.05, 1.0, size=n_loc))
    costs = []
    for arch in archs:
        cuts = [depth[a] for a in arch] + [1.0]
        costs.append(np.diff([0.0] + cuts) * 100 + rng.uniform(0, 3, size=len(cuts)))
    return conf, correct, archs, costs


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 80), st.integers(2, 9))
def test_batch_equals_exact_grid_per_architecture(seed, n_loc, n, steps):
    conf, correct, archs, costs = _problem(seed, n_loc, n)
    grid = T.default_grid("max", steps)
    got = evaluate_batch(conf, correct, archs, costs, grid)
    for i, arch in enumerate(archs):
        data = T.CascadeData(conf=conf[list(arch)], correct=correct[list(arch) + [n_loc]], stage_cost=costs[i])
        ref = T.exact_grid(data, grid)
        np.testing.assert_array_equal(got.accuracy[i], ref.accuracy)  # counts / n: exact
        np.testing.assert_allclose(got.mean_cost[i], ref.mean_cost, rtol=COST_TOL)
        np.testing.assert_allclose(got.termination[i], ref.termination, rtol=0, atol=1e-12)


def test_best_choices_match_exact_and_graph_search():
    conf, correct, archs, costs = _problem(1, 8, 300)
    grid = T.default_grid("max", 13)
    objective = T.Objective(kind="weighted", base_cost=100.0, base_accuracy=float(correct[-1].mean()), w=0.7)
    batch = best_choices(evaluate_batch(conf, correct, archs, costs, grid), objective)
    for i, arch in enumerate(archs):
        data = T.CascadeData(conf=conf[list(arch)], correct=correct[list(arch) + [8]], stage_cost=costs[i])
        exact, _ = T.search(data, grid, objective, "exact")
        assert batch[i].indices == exact.indices
        assert abs(batch[i].cost - exact.cost) <= 1e-9
        if arch:  # the shortest path is exact for up to two exits
            assert abs(T.graph_search(data, grid, objective).cost - exact.cost) <= 1e-9
    # negative control: stage costs in another order give other answers
    shuffled = best_choices(evaluate_batch(conf, correct, archs, [np.roll(c, 1) for c in costs], grid), objective)
    assert sum(a.indices != b.indices for a, b in zip(batch, shuffled)) > len(archs) // 4


def test_three_processors_74_locations_take_seconds():
    """2,776 architectures × 169 configurations on 1,000 calibration samples."""
    conf, correct, archs, costs = _problem(2, 74, 1000)
    assert len(archs) == 2776
    start = time.perf_counter()
    result = evaluate_batch(conf, correct, archs, costs, T.default_grid("max", 13))
    seconds = time.perf_counter() - start
    assert sum(np.size(a) for a in result.accuracy) == 1 + 74 * 13 + 2701 * 169
    print(f"2,776 architectures × 169 configurations: {seconds:.2f} s")
    assert seconds < 30


def test_the_search_scores_batched_cut_sets_as_search_placements_would():
    """The search's threshold phase (`search._batched_grids`, then `recost` per placement) picks
    what the per-cut-set `search_placements` picks: same thresholds, accuracy and rates, the
    mean cost within COST_TOL; cut sets of three exits are left to `search_placements`."""
    from types import SimpleNamespace

    from eenn.augment.search import Scores, _batched_grids, _cascade
    from eenn.augment.search_config import SearchConfig

    rng = np.random.default_rng(3)
    n, locs = 400, [f"block_{i}" for i in range(4)]
    y = rng.integers(0, 5, n)

    def softmax(skill):
        logits = rng.normal(0, 1, (n, 5))
        logits[np.arange(n), y] += skill
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    probs = {loc: softmax(0.5 + i) for i, loc in enumerate(locs)}
    final = softmax(4.0)
    problem = SimpleNamespace(bg=SimpleNamespace(candidates=[SimpleNamespace(after_layer=l) for l in locs]),
                              dataset=SimpleNamespace(y_cal=y))
    scores = Scores(probs={"cal": probs}, final={"cal": final}, float_probs={})
    placements = {(0,): [[10, 30], [4, 50]], (1, 3): [[10, 5, 30], [12, 2, 40]], (0, 1, 2): [[1, 1, 1, 9]]}
    grid = T.default_grid("max", 9)
    config = SearchConfig(threshold_method="auto").checked()
    batched = _batched_grids(problem, scores, {c: p[0] for c, p in placements.items()}, grid, config)
    assert set(batched) == {(0,), (1, 3)}
    objective = T.Objective(kind="max_drop", base_cost=40.0, base_accuracy=float(np.mean(final.argmax(1) == y)),
                            w=0.9, max_drop=0.05)
    for cuts, batch in batched.items():
        arch = SimpleNamespace(cuts=cuts)
        data = _cascade(arch, problem.bg, probs, final, y, placements[cuts][0], "max")
        want = T.search_placements(data, placements[cuts], grid, objective, "exact")
        for costs, (ref, _) in zip(placements[cuts], want):
            got = T.best_exact(batch.recost(costs), objective)
            assert (got.thresholds, got.accuracy, got.termination) == (ref.thresholds, ref.accuracy, ref.termination)
            assert got.mean_cost == pytest.approx(ref.mean_cost, rel=COST_TOL)
    assert _batched_grids(problem, scores, {(0,): [1, 2]}, grid, SearchConfig(threshold_method="graph").checked()) == {}
