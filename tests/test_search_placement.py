"""The search with stages placed anywhere (issue 13): the default objective (the largest energy
saving within 1 point), the honest base, "nothing beats the base", a 3-processor bundle with
several stages on one processor, and the paper's space reproducing the earlier choice."""
import itertools
import json

import numpy as np
import pytest

from eenn.augment import thresholds as T
from eenn.augment.bundle import load_bundle
from eenn.augment.features import AugmentConfig
from eenn.augment.report import format_summary
from eenn.augment.search import evaluated_points, run_search
from eenn.augment.search_config import SearchConfig
from eenn.augment.solution import write_result
from eenn.augment.training import TrainConfig


@pytest.fixture(scope="module")
def digits(trained_digits):
    return trained_digits


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One exit cache for the module: exits do not depend on the placement or the measure."""
    return tmp_path_factory.mktemp("exit-cache")


def config(cache, **kw):
    settings = dict(latency_bound_s=2.5, seed=0, cache_dir=cache, train=TrainConfig(epochs=3),
                    augment=AugmentConfig(copies=1))
    settings.update(kw)
    return SearchConfig(**settings)


def _cal_base_accuracy(res):
    return float(np.mean(res.probs["cal"]["base"].argmax(1) == res.dataset.y_cal))


def test_default_is_the_largest_energy_saving_within_one_point(digits, cache):
    model, data = digits
    res = run_search(model, data, config(cache))
    s = res.solution.search
    assert (s["objective"], s["max_accuracy_drop"], s["efficiency"], s["placement"], s["max_exits"]) == \
        ("max_drop", 0.01, "energy", "any", 2)
    # the base: the cheapest single processor in energy, the input's transfer included (the CM4F)
    base = res.solution.metrics["base"]
    per = {r["processor"]: r for r in res.solution.metrics["base_per_processor"]}
    assert base["processor"] == s["base_processor"] == "cm4" == min(per, key=lambda k: per[k]["energy_j"])
    assert base["mean_energy_j"] == pytest.approx(per["cm4"]["energy_j"], rel=1e-12)
    assert per["cm4"]["input_transfer_s"] > 0 and per["cm0p"]["input_transfer_s"] == 0
    # brute force over every evaluated (architecture, thresholds) point on the calibration split
    base_j, base_acc = per["cm4"]["energy_j"], _cal_base_accuracy(res)
    best_gain, best_where = 0.0, None  # the base model itself: no saving, no loss
    for e in res.evaluated:
        pt = evaluated_points(e)
        gain = 1 - pt["mean_energy_j"] / base_j
        ok = base_acc - pt["accuracy"] <= 0.01 + 1e-12
        if ok.any() and gain[ok].max() > best_gain + 1e-12:
            best_gain, best_where = float(gain[ok].max()), e
    cal = res.solution.metrics["calibration"]
    assert cal["efficiency_gain"] == pytest.approx(best_gain, abs=1e-9)
    assert cal["accuracy_drop"] <= 0.01 + 1e-12
    assert (best_where is None) == res.no_exit
    if best_where is not None:
        assert res.chosen.arch == best_where.arch
    # every architecture of the space with an exit was scored (none pruned at 2.5 s), plus the base
    assert res.stats["architectures"] == res.stats["expected_architectures"] == 12
    assert len(res.evaluated) == 1 + sum(1 for e in res.evaluated if e.arch.n_exits)
    assert {e.arch.processors for e in res.evaluated if e.arch.n_exits} >= {(0, 0), (0, 1), (1, 1)}


def test_nothing_beats_the_base_answers_the_base_in_one_line(digits, cache, tmp_path):
    """Measured block times that make the backbone nearly free: every exit only adds cost."""
    from eenn.augment.block_graph import build_block_graph
    from eenn.augment.layer_graph import build_layer_graph
    from eenn.augment.model_io import load_model

    model, data = digits
    bg = build_block_graph(build_layer_graph(load_model(model)))
    names = [b.name for b in bg.blocks]  # the head keeps its MAC-rate estimate
    measured = tmp_path / "measured.json"
    measured.write_text(json.dumps({"processors": {p: {"block_s": {n: 1e-7 for n in names}}
                                                   for p in ("cm0p", "cm4")}}))
    res = run_search(model, data, config(cache, measured=str(measured)))
    assert res.no_exit and res.solution.exits == []
    seg = res.solution.segments
    assert len(seg) == 1 and seg[0].processor == res.solution.metrics["base"]["processor"]
    rejected = res.solution.search["rejected"]
    assert rejected is not None and rejected["efficiency_gain"] < 0
    # the best rejected candidate: the largest saving among early-exit points within the bound
    base_acc = _cal_base_accuracy(res)
    best = max(float(np.max(np.where(base_acc - p["accuracy"] <= 0.01 + 1e-12, -p["mean_cost"], -np.inf)))
               for p in (evaluated_points(e) for e in res.evaluated if e.arch.n_exits))
    assert rejected["efficiency_gain"] == pytest.approx(1 + best / res.solution.metrics["base"]["mean_energy_j"],
                                                        rel=1e-9)
    text = format_summary(res.solution, res.pareto_rows)
    lines = [ln for ln in text.splitlines() if "no early-exit network beats it" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"solution the base model alone on {seg[0].processor}")
    assert f"{-rejected['efficiency_gain'] * 100:+.1f} % energy" in lines[0] and rejected["placement"] in lines[0]
    write_result(res, tmp_path / "b")
    from eenn.report import ReportSources, write_report

    write_report(ReportSources(bundle=tmp_path / "b"), tmp_path / "r.html", tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    assert "no early-exit network beats it" in md and f"base model on {seg[0].processor}" in md


THREE = """
name = "three"
description = "a slow first core, a cheap middle one, an expensive last one"
shared_memory = true
exclusive = true
[[processor]]
name = "slow"
core = "cortex-m0plus"
clock_hz = 1e8
macs_per_s = 5e6
sram_bytes = 1048576
flash_bytes = 2097152
active_w = 0.02
sleep_w = 0.0005
wakeup_s = 0.0
[[processor]]
name = "cheap"
core = "cortex-m4"
clock_hz = 1.5e8
macs_per_s = 75e6
sram_bytes = 1048576
flash_bytes = 2097152
active_w = 0.03
sleep_w = 0.0005
wakeup_s = 2e-5
[[processor]]
name = "big"
core = "cortex-m7"
clock_hz = 4e8
macs_per_s = 100e6
sram_bytes = 1048576
flash_bytes = 2097152
active_w = 0.5
sleep_w = 0.0005
wakeup_s = 1e-4
[[link]]
from = "slow"
to = "cheap"
bytes_per_s = 4e8
latency_s = 2e-6
j_per_byte = 5e-11
[[link]]
from = "cheap"
to = "big"
bytes_per_s = 4e8
latency_s = 2e-6
j_per_byte = 5e-11
"""


def test_three_processors_several_stages_on_one_make_a_valid_bundle(digits, cache, tmp_path):
    model, data = digits
    hw = tmp_path / "three.toml"
    hw.write_text(THREE)
    res = run_search(model, data, config(cache, hardware=str(hw), latency_bound_s=None, max_accuracy_drop=0.05))
    assert res.stats["architectures"] == 3 + 2 * 6 + 1 * 10
    assert res.solution.metrics["base"]["processor"] == "cheap"
    assert not res.no_exit, "the digits exits save energy on any core"
    write_result(res, tmp_path / "b")
    sol = load_bundle(tmp_path / "b").solution
    order = ["slow", "cheap", "big"]
    procs = [s.processor for s in sol.segments]
    assert len(sol.segments) == len(sol.exits) + 1
    assert [order.index(p) for p in procs] == sorted(order.index(p) for p in procs)
    assert len(set(procs)) < len(procs) and procs[0] != "slow"  # several stages on one; the first skipped
    for seg, ex in zip(sol.segments, sol.exits):
        assert ex.processor == seg.processor and ex.after_layer == seg.last_layer
    assert "(same core, no hand-off)" in format_summary(res.solution, res.pareto_rows)
    # the recorded float test metrics follow from the bundle's Keras parts, run stage by stage
    # (the headline metrics are the int8 outputs' the board computes: tests/test_int8_scoring.py)
    from tests.test_search import cascade

    test = np.load(tmp_path / "b" / "test.npz")
    sol2, pred, stage = cascade(tmp_path / "b", test["x"])
    n = len(test["y"])
    assert abs(np.mean(pred == test["y"]) - sol2.metrics["float"]["eenn"]["accuracy"]) <= 1.0 / n + 1e-9
    # the chosen mapping: no hand-off between the stages on one core, the input's transfer paid once
    mc = res.chosen.mapping
    for k, h in enumerate(mc.handoff_s):
        assert (h == 0.0) == (res.chosen.arch.processors[k] == res.chosen.arch.processors[k + 1])
    assert mc.input_s > 0
    from eenn.report import ReportSources, write_report

    write_report(ReportSources(bundle=tmp_path / "b"), tmp_path / "r.html", tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    assert "## Where each stage runs" in md and "same core" in md and "base model on cheap" in md


def test_distributed_profile_reports_the_device_energy(digits, cache):
    model, data = digits
    res = run_search(model, data, config(cache, hardware="rk3588-cloud", latency_bound_s=None))
    m = res.solution.metrics
    assert m["base"]["processor"] != "workstation-gpu"  # the input would cross the 50 Mbit/s link first
    per = {r["processor"]: r for r in m["base_per_processor"]}
    assert per["workstation-gpu"]["input_transfer_s"] > 0.02  # the link's latency alone is 20 ms
    for part in ("base", "eenn"):
        assert 0 < m[part]["mean_device_energy_j"] < m[part]["mean_energy_j"]
    assert "mean energy on rk3588-cpu" in format_summary(res.solution)
    # against the named base, the chosen network is no slower and costs the device no more
    assert not res.no_exit
    assert m["eenn"]["mean_latency_s"] <= m["base"]["mean_latency_s"]
    assert m["eenn"]["mean_device_energy_j"] <= m["base"]["mean_device_energy_j"]


def _old_choice(res):
    """The paper-space choice as main computed it before issue 13: cut i on processor i, the rest
    on the last, the base model on the last processor, w·gain − (1 − w)·drop in MACs, ties to fewer
    exits then enumeration order; recomputed here from the cached softmax outputs."""
    bg = res.block_graph
    n_proc = len(res.profile.processors)
    y = res.dataset.y_cal
    probs, final = res.probs["cal"], res.probs["cal"]["final"]
    base_acc = float(np.mean(final.argmax(1) == y))
    obj = T.Objective("weighted", base_cost=float(bg.total_macs), base_accuracy=base_acc, w=0.9)
    grid = T.default_grid("max", 13)
    best = ((), (n_proc - 1,), (), 0.0)
    for k in range(1, min(len(bg.candidates), n_proc - 1) + 1):
        for cuts in itertools.combinations(range(len(bg.candidates)), k):
            locs = [bg.candidates[c].after_layer for c in cuts]
            macs, start = [], 0
            for c in cuts:
                blk = bg.candidates[c].block
                macs.append(sum(b.macs for b in bg.blocks[start:blk + 1]) + res.plans[c].cost.macs)
                start = blk + 1
            macs.append(sum(b.macs for b in bg.blocks[start:]) + bg.head.macs)
            data = T.CascadeData(conf=np.stack([probs[l].max(1) for l in locs]),
                                 correct=np.stack([probs[l].argmax(1) == y for l in locs] + [final.argmax(1) == y]),
                                 stage_cost=np.asarray(macs, dtype=np.float64))
            choice, _ = T.search(data, grid, obj, "exact")
            if round(choice.cost, 12) < round(best[3], 12):
                best = (cuts, tuple(range(k)) + (n_proc - 1,), choice.thresholds, choice.cost)
    return best


@pytest.mark.parametrize("hw", ["psoc6", "rk3588-cloud"])
def test_paper_space_in_macs_reproduces_the_earlier_choice(digits, cache, hw):
    model, data = digits
    res = run_search(model, data, config(cache, hardware=hw, placement="boundary", efficiency="macs", w=0.9,
                                         latency_bound_s=2.5 if hw == "psoc6" else None))
    assert res.solution.search["objective"] == "weighted"
    assert res.stats["architectures"] == {"psoc6": 3, "rk3588-cloud": 4}[hw]
    cuts, procs, thresholds, cost = _old_choice(res)
    assert res.chosen.arch.cuts == cuts and res.chosen.choice.thresholds == thresholds
    assert res.chosen.choice.cost == pytest.approx(cost, abs=1e-12)
    if cuts:
        assert res.chosen.arch.processors == procs


def test_objective_defaults_resolve_as_documented():
    assert (lambda c: (c.objective, c.max_accuracy_drop, c.efficiency, c.placement, c.max_exits))(
        SearchConfig().checked()) == ("max_drop", 0.01, "energy", "any", 2)
    paper = SearchConfig(w=0.9).checked()
    assert (paper.objective, paper.max_accuracy_drop, paper.w) == ("weighted", None, 0.9)
    both = SearchConfig(w=0.5, max_accuracy_drop=0.02).checked()
    assert (both.objective, both.max_accuracy_drop) == ("max_drop", 0.02)
    from eenn.errors import EennError

    with pytest.raises(EennError, match="placement 'anywhere'"):
        SearchConfig(placement="anywhere").checked()
    with pytest.raises(EennError, match="max exits -1"):
        SearchConfig(max_exits=-1).checked()


def test_without_power_figures_energy_falls_back_to_latency(digits, cache, tmp_path, capsys):
    from eenn.augment.progress import Progress

    model, data = digits
    hw = tmp_path / "nopower.toml"
    hw.write_text(THREE.replace('name = "three"', 'name = "nopower"').replace("active_w = 0.02", "active_w = 0.0")
                  .replace("active_w = 0.03", "active_w = 0.0").replace("active_w = 0.5", "active_w = 0.0")
                  .replace("sleep_w = 0.0005", "sleep_w = 0.0"))
    res = run_search(model, data, config(cache, hardware=str(hw), latency_bound_s=None),
                     progress=Progress(enabled=True, err=True))
    assert res.solution.search["efficiency"] == "latency"
    assert "has no power figures (all 0 W): measuring latency instead of energy" in capsys.readouterr().err
    # the base: the fastest single processor ("big", 100 MMAC/s, after the input's relay)
    assert res.solution.metrics["base"]["processor"] == "big"
    assert res.chosen.choice.mean_cost == pytest.approx(res.solution.metrics["calibration"]["eenn"]["mean_latency_s"])
