"""`eenn search` end to end on the built-in digits example: the bundle, its consistency with the
Keras parts, resuming after a kill, bad inputs, and the no-exit outcome."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from eenn.augment.bundle import load_bundle
from eenn.augment.search import run_search
from eenn.augment.search_config import SearchConfig
from eenn.augment.training import TrainConfig
from eenn.augment.features import AugmentConfig
from eenn.cli import main
from eenn.errors import EennError

FAST = ["--epochs", "3", "--augment", "1"]


@pytest.fixture(scope="module")
def digits(trained_digits):
    return trained_digits


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def fast_config(cache, **kw):
    """A quick search in the paper's terms (its space, MACs, w = 0.9) unless told otherwise; the
    new defaults (placement any, energy, at most 1 point lost) are tested in test_search_placement.py."""
    settings = dict(latency_bound_s=2.5, seed=0, cache_dir=cache, train=TrainConfig(epochs=3),
                    augment=AugmentConfig(copies=1), placement="boundary", efficiency="macs", w=0.9)
    settings.update(kw)
    return SearchConfig(**settings)


def cascade(bundle_dir: Path, x: np.ndarray):
    """Run the bundle's Keras parts as the firmware would: per sample, the stage that answers."""
    import keras

    b = load_bundle(bundle_dir)
    sol = b.solution
    segs = [keras.models.load_model(bundle_dir / s.file, compile=False) for s in sol.segments]
    exits = [keras.models.load_model(bundle_dir / e.file, compile=False) for e in sol.exits]
    h = x
    pred = np.full(len(x), -1)
    stage = np.full(len(x), len(exits))
    alive = np.ones(len(x), dtype=bool)
    for k, seg in enumerate(segs):
        h = seg.predict(h, verbose=0)
        if k < len(exits):
            p = exits[k].predict(h, verbose=0)
            t = sol.exits[k].threshold
            here = alive & (p.max(1) >= t) & (t < 1.0)
        else:
            p, here = h, alive.copy()
        pred[here], stage[here] = p.argmax(1)[here], k
        alive &= ~here
    return sol, pred, stage


def test_search_writes_a_bundle_that_matches_its_metrics(digits, tmp_path):
    model, data = digits
    out = tmp_path / "bundle"
    r = CliRunner().invoke(main, ["search", str(model), "--data", str(data), "--hw", "psoc6", "--latency", "2.5",
                                  "--clock-plan", "cm4-150",
                                  "--out", str(out), "--cache-dir", str(tmp_path / "cache"), *FAST])
    assert r.exit_code == 0, r.output
    from eenn.augment.hardware import load_profile

    hw = json.loads((out / "solution.json").read_text())["hardware"]  # the profile the search ran on: the plan's
    assert hw["clock_plan"] == "cm4-150" and hw == load_profile("psoc6", "cm4-150").to_dict()
    assert "caching features" in r.output and "training exits" in r.output  # progress (not a TTY: lines)
    assert "accuracy" in r.output and "early termination" in r.output
    names = {p.name for p in out.iterdir()}
    assert {"solution.json", "base.keras", "segment_0.keras", "calibration.npz", "test.npz", "pareto.csv",
            "pareto.png", "termination.png", "macs_per_exit.png"} <= names
    raw = json.loads((out / "solution.json").read_text())
    assert raw["schema_version"] == 1
    for part in ("base", "eenn"):
        assert set(raw["metrics"][part]) >= {"accuracy", "precision", "recall", "mean_macs", "mean_latency_s",
                                             "worst_latency_s", "mean_energy_j"}
    # 2 candidates, 2 processors, up to 2 exits anywhere: the base on either, 2 × 3 and 1 × 4 placements
    assert raw["search"]["stats"]["architectures"] == 2 + 6 + 4
    assert raw["search"]["placement"] == "any" and raw["search"]["max_exits"] == 2
    assert raw["search"]["objective"] == "max_drop" and raw["search"]["max_accuracy_drop"] == 0.01
    assert raw["search"]["efficiency"] == "energy" and raw["metrics"]["base"]["processor"] == "cm4"
    assert "base on cm4" in r.output
    test = np.load(out / "test.npz")
    sol, pred, stage = cascade(out, test["x"])
    m = sol.metrics["eenn"]
    assert len(sol.segments) == len(sol.exits) + 1
    assert sum(m["termination_rates"]) == pytest.approx(1.0)
    # the Keras parts reproduce the recorded float test metrics (a sample may sit on a threshold: 1
    # allowed); the headline figures are the int8 ones (tests/test_int8_scoring.py checks those)
    n = len(test["y"])
    assert sol.metrics["scoring"] == "int8"
    flt = sol.metrics["float"]["eenn"]
    assert m["float_accuracy"] == flt["accuracy"]
    assert abs(np.mean(pred == test["y"]) - flt["accuracy"]) <= 1.0 / n + 1e-9
    assert abs(np.mean(stage < len(sol.exits)) - flt["early_termination"]) <= 1.0 / n + 1e-9
    # the base model is the comparison point, on its cheapest processor (the CM4F)
    import keras

    base = keras.models.load_model(out / "base.keras", compile=False)
    assert m is not None and sol.metrics["base"]["float_accuracy"] == pytest.approx(
        np.mean(base.predict(test["x"], verbose=0).argmax(1) == test["y"]))
    assert sol.metrics["base"]["mean_macs"] == sol.base_model.total_macs
    cal = np.load(out / "calibration.npz")["x"]
    assert cal.dtype == np.float32 and 0 < len(cal) <= 1000 and cal.shape[1:] == test["x"].shape[1:]
    rows = (out / "pareto.csv").read_text().splitlines()
    assert rows[0].startswith("exits,processors,thresholds,mean_macs") and len(rows) >= 2
    # --json: the same search again (every exit from the disk cache), a machine-readable summary
    r = CliRunner().invoke(main, ["search", str(model), "--data", str(data), "--latency", "2.5", "--out", str(out),
                                  "--clock-plan", "cm4-150",
                                  "--force", "--cache-dir", str(tmp_path / "cache"), "--json", "--quiet", *FAST])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["search"]["stats"]["exits_trained"] == 0 and summary["metrics"] == raw["metrics"]
    assert summary["exits"] == raw["exits"] and summary["bundle"] == str(out)


def test_segments_compose_to_the_base_model(digits, tmp_path):
    import keras

    model, data = digits
    res = run_search(model, data, fast_config(tmp_path / "c", w=0.0))  # any architecture: compose check
    from eenn.augment.solution import write_result

    write_result(res, tmp_path / "b")
    b = load_bundle(tmp_path / "b")
    x = np.load(data)["x_test"][:50]
    h = x
    for s in b.solution.segments:
        h = keras.models.load_model(tmp_path / "b" / s.file, compile=False).predict(h, verbose=0)
    base = keras.models.load_model(model, compile=False).predict(x, verbose=0)
    np.testing.assert_allclose(h, base, rtol=1e-5, atol=1e-6)


def test_rerun_trains_no_exit_again(digits, tmp_path):
    model, data = digits
    first = run_search(model, data, fast_config(tmp_path / "c"))
    assert first.stats["exits_trained"] == first.stats["exits_needed"] > 0
    again = run_search(model, data, fast_config(tmp_path / "c"))
    assert again.stats["exits_trained"] == 0 and again.stats["exits_from_cache"] == first.stats["exits_needed"]
    assert again.solution.exits == first.solution.exits
    assert again.solution.metrics["eenn"] == first.solution.metrics["eenn"]
    # psoc6 (two processors): the paper's graph search lands within 1 % of the exhaustive optimum
    assert first.stats["graph_compared"] == 2 and first.stats["graph_gap_max"] <= 0.01


def test_interrupted_search_resumes_without_retraining(digits, tmp_path):
    model, data = digits
    cache = tmp_path / "c"
    seen = []

    def crash(trained):
        seen.append(trained.location)
        raise KeyboardInterrupt("simulated interruption after one exit")

    with pytest.raises(KeyboardInterrupt):
        run_search(model, data, fast_config(cache), on_exit_trained=crash)
    res = run_search(model, data, fast_config(cache))
    assert res.stats["exits_from_cache"] == 1 and res.stats["exits_trained"] == res.stats["exits_needed"] - 1
    assert res.exits[[c for c, e in res.exits.items() if e.location == seen[0]][0]].from_cache
    # an entry damaged afterwards (its exit.keras cut short) is trained again, and the search says so
    from eenn.augment.progress import Progress

    class Lines(Progress):
        def __init__(self):
            super().__init__(enabled=False)
            self.lines = []

        def say(self, message):
            self.lines.append(message)

    entry = next(d for d in (cache / "exits").iterdir() if not d.name.startswith(".") and (d / "exit.keras").is_file())
    (entry / "exit.keras").write_bytes((entry / "exit.keras").read_bytes()[:100])
    lines = Lines()
    again = run_search(model, data, fast_config(cache), progress=lines)
    assert again.stats["exits_trained"] == 1 and again.stats["exits_from_cache"] == res.stats["exits_needed"] - 1
    damaged = [ln for ln in lines.lines if "damaged" in ln]
    assert len(damaged) == 1 and "exit.keras truncated" in damaged[0] and "training it again" in damaged[0]


@pytest.mark.slow
def test_killed_search_resumes_without_retraining(digits, tmp_path):
    """SIGKILL a CLI search once an exit is on disk; the re-run trains only what was not finished."""
    model, data = digits
    cache, out = tmp_path / "cache", tmp_path / "out"
    cmd = [str(Path(sys.executable).parent / "eenn"), "search", str(model), "--data", str(data), "--out", str(out),
           "--cache-dir", str(cache), "--epochs", "40", "--augment", "2", "--w", "0.5"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    entries = cache / "exits"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if entries.is_dir() and any((d / "meta.json").is_file() for d in entries.iterdir()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the search finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists() or not any(out.iterdir())  # no partial bundle
    done = sum(1 for d in entries.iterdir() if (d / "meta.json").is_file())
    assert done >= 1
    r = run("search", model, "--data", data, "--out", out, "--cache-dir", cache, "--epochs", "40", "--augment", "2",
            "--w", "0.5", "--json", "--quiet")
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)["search"]["stats"]
    assert stats["exits_from_cache"] == done
    assert stats["exits_trained"] == stats["exits_needed"] - done
    r = run("search", model, "--data", data, "--out", out, "--force", "--cache-dir", cache, "--epochs", "40",
            "--augment", "2", "--w", "0.5", "--json", "--quiet")
    assert json.loads(r.output)["search"]["stats"]["exits_trained"] == 0


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_bad_inputs_exit_2_without_a_bundle(digits, tmp_path):
    model, data = digits
    d = dict(np.load(data))
    cases = [
        (_write(tmp_path / "shape.npz", **{**d, "x_train": d["x_train"][:, :7]}), "do not match the model input"),
        (_write(tmp_path / "labels.npz", **{**d, "y_test": d["y_test"] + 5}), "out of range"),
        (_write(tmp_path / "empty.npz", **{**d, "x_val": d["x_val"][:0], "y_val": d["y_val"][:0]}),
         "calibration split .* is empty"),
    ]
    for path, message in cases:
        out = tmp_path / f"out_{path.stem}"
        r = run("search", model, "--data", path, "--out", out, "--no-cache", "--quiet", *FAST)
        assert r.exit_code == 2, r.output
        assert "error:" in r.output and __import__("re").search(message, r.output), r.output
        assert not out.exists()
    r = run("search", model, "--data", data, "--out", tmp_path / "out_plan", "--clock-plan", "cm4-200", "--quiet")
    assert r.exit_code == 2 and "unknown clock plan 'cm4-200': expected one of bsp-default, cm4-150" in r.output
    assert not (tmp_path / "out_plan").exists()
    out = tmp_path / "out_latency"
    r = run("search", model, "--data", data, "--out", out, "--latency", "1e-6", "--no-cache", "--quiet", *FAST)
    assert r.exit_code == 2 and not out.exists()
    found = __import__("re").search(r"fastest possible worst-case latency on cm0p → cm4 is ([0-9.e+-]+) s", r.output)
    assert found, r.output
    from eenn.augment.layer_graph import build_layer_graph
    from eenn.augment.model_io import load_model

    # the fastest: the base model alone on the CM4F at its MAC rate under the default clock plan, the input passed on by the CM0+
    from eenn.augment.hardware import load_profile

    psoc6 = load_profile("psoc6")
    link, n_in = psoc6.links[0], 8 * 8
    into = link.latency_s + n_in / link.bytes_per_s + psoc6.processors[1].wakeup_s
    assert float(found.group(1)) == pytest.approx(build_layer_graph(load_model(model)).total_macs / psoc6.processor("cm4").macs_per_s + into,
                                                  rel=1e-3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary bundle left


def test_no_exit_is_a_valid_answer(digits, tmp_path):
    model, data = digits
    res = run_search(model, data, fast_config(tmp_path / "c"))
    base_latency = res.base_test.worst_latency_s
    # a bound that only the base model alone on the CM4F meets
    only_base = run_search(model, data, fast_config(tmp_path / "c", latency_bound_s=base_latency * 1.0001))
    assert only_base.no_exit and only_base.solution.exits == []
    from eenn.augment.report import format_summary
    from eenn.augment.solution import write_result

    assert "no exit" in format_summary(only_base.solution)
    write_result(only_base, tmp_path / "b")
    b = load_bundle(tmp_path / "b")
    assert len(b.solution.segments) == 1 and b.solution.segments[0].processor == "cm4"
    assert b.solution.metrics["eenn"]["early_termination"] == 0.0


def test_three_processors_graph_matches_exhaustive_and_max_drop(digits, tmp_path):
    model, data = digits
    res = run_search(model, data, fast_config(tmp_path / "c", hardware="rk3588-cloud", latency_bound_s=None))
    assert res.stats["architectures"] == 1 + 2 + 1  # two locations, up to two exits
    assert res.stats["graph_compared"] >= 1 and res.stats["graph_gap_max"] <= 0.01
    strict = run_search(model, data, fast_config(tmp_path / "c", max_accuracy_drop=0.0))
    cal = strict.solution.metrics["calibration"]["eenn"]
    base_cal = float(np.mean(strict.probs["cal"]["base"].argmax(1) == strict.dataset.y_cal))
    assert cal["accuracy"] >= base_cal - 1e-12


def test_uncached_training_and_finetuning(digits, tmp_path):
    model, data = digits
    slow = run_search(model, data, fast_config(None, feature_cache=False))
    assert slow.stats["exits_trained"] == slow.stats["exits_needed"] and not slow.stats["feature_cache"]
    chance = np.bincount(slow.dataset.y_cal).max() / len(slow.dataset.y_cal)
    assert all(e.cal_accuracy > chance + 0.2 for e in slow.exits.values() if not e.aborted)
    ft = run_search(model, data, fast_config(tmp_path / "c", finetune=True, w=0.5))
    if ft.no_exit:
        pytest.skip("the search chose no exit; nothing to fine-tune")
    assert ft.solution.search["fine_tuned"] and len(ft.solution.search["threshold_grid"]) == 13
    assert ft.solution.search["fine_threshold_steps"] == 101
    fine = np.round(np.linspace(0.4, 1.0, 101), 6)  # the second search: 101 steps over the same range
    assert all(np.isclose(fine, e.threshold).any() for e in ft.solution.exits)
    # the fine-tuned parts are the bundle's, and the backbone moved (it was unfrozen)
    assert "segment_0.keras" in ft.finetuned_models and "exit_0.keras" in ft.finetuned_models
    import keras

    base = keras.models.load_model(model, compile=False)
    moved = [l.name for l in ft.finetuned_models["segment_0.keras"].layers if l.weights and not np.allclose(
        l.get_weights()[0], base.get_layer(l.name).get_weights()[0])]
    assert moved
    from eenn.augment.solution import write_result

    write_result(ft, tmp_path / "b")
    test = np.load(tmp_path / "b" / "test.npz")
    sol, pred, stage = cascade(tmp_path / "b", test["x"])
    n = len(test["y"])
    assert abs(np.mean(pred == test["y"]) - sol.metrics["eenn"]["float_accuracy"]) <= 1.0 / n + 1e-9
    assert sol.metrics["scoring"] == "int8" and "int8_finetuned_s" in ft.stats  # the fine-tuned parts, converted
    with pytest.raises(EennError):
        run_search(model, data, fast_config(None, w=1.5))


def test_calibrating_on_train_scales_the_thresholds(digits, tmp_path):
    model, data = digits
    res = run_search(model, data, fast_config(tmp_path / "c", calibration="train", correction=2 / 3, w=0.5))
    assert res.dataset.calibration == "train" and res.solution.search["calibration"] == "train"
    np.testing.assert_array_equal(res.dataset.x_cal, res.dataset.x_train)
    if res.no_exit:
        pytest.skip("the search chose no exit; no threshold to scale")
    for spec, t in zip(res.solution.exits, res.chosen.choice.thresholds):
        assert spec.threshold == pytest.approx(t * 2 / 3 if t < 1 else t)


def test_exits_the_rule_cannot_shrink_to_the_budget_are_reported(digits, tmp_path, capsys):
    from eenn.augment.exits import ExitConfig
    from eenn.augment.progress import Progress

    model, data = digits
    res = run_search(model, data, fast_config(tmp_path / "cache", exits=ExitConfig(budget_share=0.0002)),
                     progress=Progress(enabled=True, err=True))
    over = res.stats["exits_over_budget"]
    assert over and set(over) <= {c.after_layer for c in res.block_graph.candidates}
    assert all(res.plans[i].over_budget == (res.plans[i].location in over) for i in res.plans)
    assert f"{len(over)} of {len(res.plans)} stay above the 0.02 % budget" in capsys.readouterr().err


def test_energy_efficiency_picks_the_cheapest_point_in_joules(digits, tmp_path):
    """--efficiency energy: the objective's gain is 1 − mean energy / the base model's (cost model),
    and the choice is the best of every evaluated (architecture, thresholds) point in those terms,
    which a MAC-based choice on the same exits need not be."""
    from eenn.augment.search import evaluated_points

    model, data = digits
    runs = {eff: run_search(model, data, fast_config(tmp_path / "cache", efficiency=eff)) for eff in ("macs", "energy")}
    res = runs["energy"]
    assert res.solution.search["efficiency"] == "energy"
    base_j = res.solution.metrics["base"]["mean_energy_j"]
    base_acc = float(np.mean(res.probs["cal"]["base"].argmax(1) == res.dataset.y_cal))

    def energy_cost(j, acc):
        return -(0.9 * (1 - j / base_j) - 0.1 * (base_acc - acc))

    best = min(float(np.min(energy_cost(p["mean_energy_j"], p["accuracy"])))
               for p in map(evaluated_points, res.evaluated))
    assert res.chosen.choice.cost == pytest.approx(best, abs=1e-12)
    assert res.chosen.choice.mean_cost == pytest.approx(res.solution.metrics["calibration"]["eenn"]["mean_energy_j"])
    mac_choice = runs["macs"].solution.metrics["calibration"]["eenn"]
    assert best <= energy_cost(mac_choice["mean_energy_j"], mac_choice["accuracy"]) + 1e-12
    assert res.stats["exits_trained"] == 0  # the measure does not change the exits: trained once, reused
    chosen_row = next(r for r in res.pareto_rows if r["chosen"])
    assert chosen_row["efficiency_gain"] == pytest.approx(1 - chosen_row["mean_energy_j"] / base_j, abs=1e-6)
    with pytest.raises(EennError, match="efficiency 'flops'"):
        run_search(model, data, fast_config(tmp_path / "cache", efficiency="flops"))
