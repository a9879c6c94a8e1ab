"""`eenn hil profile` closes the loop: a board whose timing differs from the hardware profile is
profiled, and a search with the measured file predicts that board's latency per exit path."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from eenn.cli import main
from eenn.errors import EennError
from eenn.hil.timing import TimingModel, op_macs

# A board that is not the psoc6 profile: the CM4 1.5x slower per MAC than its 2 cycles/MAC and
# 2000 cycles per operator call, the CM0+ with 800 cycles per call.
TIMING = {"cm4": {"*": {"cycles_per_mac": 3.0, "cycles_per_call": 2000}},
          "cm0p": {"*": {"cycles_per_mac": 10.0, "cycles_per_call": 800}}}
FAST = ["--epochs", "3", "--augment", "1", "--latency", "2.5", "--hw", "psoc6"]


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def _paths(session) -> list[tuple[int, float, float]]:
    """(exit, board mean latency, predicted latency) of each exit path that samples took."""
    s = json.loads((session / "summary.json").read_text())
    return [(p["exit"], p["latency_s"]["mean"], p["latency_s"]["predicted"]) for p in s["paths"]
            if p["latency_s"].get("mean") is not None]


def _deploy_and_run(tmp_path, name, model, data, timing, *extra):
    bundle, project, session = tmp_path / f"{name}_bundle", tmp_path / f"{name}_project", tmp_path / f"{name}_run"
    run("search", model, "--data", data, "--out", bundle, "--cache-dir", tmp_path / "cache", "--quiet", *FAST, *extra)
    run("generate", bundle, "--kit", "CY8CPROTO-062-4343W", "--out", project)
    run("hil", "run", "--port", f"virtual:{project}", "--virtual-timing", timing, "--bundle", bundle,
        "--out", session, "--limit", "60", "--no-progress", "--no-plots")
    return bundle, project, _paths(session)


def test_profile_then_search_predicts_the_board(trained_digits, tmp_path):
    model, data = trained_digits
    timing = tmp_path / "board.json"
    timing.write_text(json.dumps(TIMING))
    bundle, project, before = _deploy_and_run(tmp_path, "before", model, data, timing)
    err_before = max(abs(board - pred) / board for _, board, pred in before)
    assert err_before > 0.10, before  # the profile's cost model does not know this board

    measured = tmp_path / "measured.json"
    r = run("hil", "profile", "--port", "virtual", "--project", project, "--bundle", bundle, "--out", measured,
            "--virtual-timing", timing, "--samples", "3")
    assert "cm4:" in r.output
    m = json.loads(measured.read_text())
    # the operator fit recovers the board's CM4 rate and call overhead: its tick rate / 3 cycles per MAC
    from eenn.codegen.manifest import load_manifest

    hz = {s.processor: s.tick_hz for s in load_manifest(project).stages}
    assert "cm4" in hz and "cm4" in m["processors"], (hz, m["processors"])
    assert m["processors"]["cm4"]["macs_per_s"] == pytest.approx(hz["cm4"] / 3.0, rel=1e-3)
    assert m["profile"]["processors"]["cm4"]["op_overhead_s"] == pytest.approx(2000 / hz["cm4"], rel=1e-2)

    _, _, after = _deploy_and_run(tmp_path, "after", model, data, timing, "--measured", measured)
    err_after = max(abs(board - pred) / board for _, board, pred in after)
    print(f"latency per exit path: before {before} (max error {err_before:.1%}); after {after} "
          f"(max error {err_after:.1%})")
    assert err_after < 0.02, after


def test_timing_file_is_checked_field_by_field(tmp_path):
    cases = [
        ({"cm4": {"CONV_2D": {"cycles_per_mac": 3.0}}}, "missing cycles_per_call"),
        ({"cm4": {"CONV_2D": {"cycles_per_mac": -1, "cycles_per_call": 0}}}, r"cm4.CONV_2D.cycles_per_mac = -1"),
        ({"cm4": {"conv": {"cycles_per_mac": 1, "cycles_per_call": 0}}}, "TFLite builtin operator name"),
        ({"cm4": {"*": {"cycles_per_mac": 1, "cycles_per_call": 0, "speed": 2}}}, "unknown field.*speed"),
        ([], "expected an object of processor name"),
    ]
    import re

    for raw, message in cases:
        with pytest.raises(EennError, match=message):
            TimingModel.from_dict(raw, "t.json")
    bad = tmp_path / "t.json"
    bad.write_text("{")
    with pytest.raises(EennError, match="not a readable JSON"):
        TimingModel.load(bad)
    t = TimingModel.from_dict({"cm4": {"CONV_2D": {"cycles_per_mac": 3, "cycles_per_call": 10}}}, "t.json")
    assert t.op_timing("cm4", "CONV_2D").cycles(100) == 310
    with pytest.raises(EennError, match=re.escape("no entry for operator SOFTMAX")):
        t.op_timing("cm4", "SOFTMAX")
    with pytest.raises(EennError, match="no processor.*gpu"):
        TimingModel.from_dict({"gpu": {"*": {"cycles_per_mac": 1, "cycles_per_call": 0}}}, "t.json").check(
            ["cm0p", "cm4"], {})


def test_op_macs():
    assert op_macs("CONV_2D", [(1, 8, 8, 1), (8, 3, 3, 1)], (1, 8, 8, 8)) == 8 * 8 * 8 * 9
    assert op_macs("DEPTHWISE_CONV_2D", [(1, 8, 8, 8), (1, 3, 3, 8)], (1, 8, 8, 8)) == 8 * 8 * 8 * 9
    assert op_macs("FULLY_CONNECTED", [(1, 32), (10, 32)], (1, 10)) == 320
    assert op_macs("RESHAPE", [(1, 2, 2)], (1, 4)) == 0
    assert op_macs("SOFTMAX", [(1, 10)], (1, 10)) == 10
    assert np.isfinite(op_macs("MEAN", [(1, 4, 4, 32)], (1, 32)))
