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


# ------------------------------------------------------------------ the protocol switches, on the virtual board
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")


@pytest.fixture(scope="module")
def toy_board(tmp_path_factory):
    from eenn.hil.virtual_board import VirtualBoard
    from tests.int8_project import int8_project

    project = int8_project(tmp_path_factory, "plain")
    timing = tmp_path_factory.mktemp("timing") / "board.toml"
    timing.write_text('[cm0p."*"]\ncycles_per_mac = 7.0\ncycles_per_call = 300\n'
                      '[cm4.CONV_2D]\ncycles_per_mac = 4.0\ncycles_per_call = 1000\n'
                      '[cm4."*"]\ncycles_per_mac = 1.0\ncycles_per_call = 50\n')
    board = VirtualBoard(project, timing=timing)
    yield board
    board.close()


def _cmd(board, text: str) -> list[str]:
    out = board.handle(text.encode() + b"%").decode().split("\r\n")[:-1]
    assert out[-1] == "m-ready", out
    return out[:-1]


def _infer(board, q: np.ndarray):
    from eenn.hil.client import parse_results

    _cmd(board, f"db load {q.size}")
    data = q.astype(np.int8).tobytes()
    for i in range(0, len(data), 100):
        _cmd(board, "db " + data[i:i + 100].hex())
    return parse_results(_cmd(board, "infer 1 0"))


def test_noexit_runs_every_stage_and_profile_reports_each_operator(toy_board):
    from eenn.codegen.reference import Int8Chain

    board = toy_board
    chain = Int8Chain(board.project_dir)
    xs = np.load(board.project_dir / "fixture_test.npz")["x"]
    qs = [chain.quantize_input(x).reshape(-1) for x in xs[:40]]
    exits = [_infer(board, q).exit for q in qs]
    assert 0 in exits  # some samples exit early with the thresholds on...
    assert _cmd(board, "eenn-noexit on") == ["m-eenn-noexit-[on]"]
    res = [_infer(board, q) for q in qs]
    assert {r.exit for r in res} == {1} and all(r.ops is None for r in res)  # ...none with every exit off
    assert _cmd(board, "eenn-profile") == ["m-eenn-profile-[off]"]
    assert _cmd(board, "eenn-profile on") == ["m-eenn-profile-[on]"]
    r = _infer(board, qs[0])
    t = board.timing
    want = [(k, o.index, o.name, round(t.model.op_timing(st.processor, o.name).cycles(o.macs)))
            for k, st in enumerate(board.manifest.stages) for o in t.ops[k]]
    assert [(o.stage, o.index, o.name, o.ticks) for o in r.ops] == want
    # each stage's ticks are its operators' (the timing model's), to a tick of rounding
    for k in range(2):
        assert abs(r.stage_ticks[k] - sum(o.ticks for o in r.ops if o.stage == k)) <= 1, (r.stage_ticks, r.ops)
    assert r.ticks[1] >= r.stage_ticks[1]
    assert _cmd(board, "eenn-profile off") == ["m-eenn-profile-[off]"]
    assert _cmd(board, "eenn-noexit off") == ["m-eenn-noexit-[off]"]
    assert _infer(board, qs[exits.index(0)]).exit == 0  # thresholds back
    assert _cmd(board, "eenn-noexit maybe") == ["e-[eenn-noexit: expected 'on' or 'off']"]
    assert _cmd(board, "eenn-profile on now") == ["e-[Too many arguments for 'eenn-profile']"]
    prof = _cmd(board, "profile")
    assert "m-eenn-op-table-[96]" in prof and any("timing model board.toml" in line for line in prof)


def test_the_op_table_is_bounded_and_names_are_cut():
    import ctypes

    from eenn.hil.host_build import build_host_library

    lib = ctypes.CDLL(str(build_host_library()))
    lib.ee_op_record.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_uint64]
    lib.ee_op_stage_begin.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    table = ctypes.create_string_buffer(8 + 96 * 40)
    assert lib.ee_op_record(0, b"CONV_2D", 5) == 1  # no active table: nothing recorded
    lib.ee_op_stage_begin(ctypes.addressof(table), 3)
    rcs = [lib.ee_op_record(i, b"A_VERY_LONG_OPERATOR_NAME_INDEED", 100 + i) for i in range(100)]
    lib.ee_op_stage_end()
    assert rcs == [0] * 96 + [1] * 4
    count, dropped = np.frombuffer(table.raw[:8], dtype=np.uint32)
    assert (count, dropped) == (96, 4)
    last = table.raw[8 + 95 * 40:8 + 96 * 40]
    stage, index = np.frombuffer(last[:8], dtype=np.uint32)
    assert (stage, index) == (3, 95)
    assert last[8:32].split(b"\0")[0] == b"A_VERY_LONG_OPERATOR_NA"  # 23 characters + NUL
    assert int(np.frombuffer(last[32:40], dtype=np.uint64)[0]) == 195


def load_manifest_hash(project) -> str:
    from eenn.codegen.manifest import load_manifest

    return load_manifest(project).bundle_hash


def test_profile_errors(toy_board, tmp_path, tmp_path_factory):
    from tests.int8_project import int8_project

    other = int8_project(tmp_path_factory, "margin")
    r = CliRunner().invoke(main, ["hil", "profile", "--port", "/dev/eenn-no-such-port", "--project", str(other),
                                  "--out", str(tmp_path / "m.json"), "--timeout", "0.5"])
    assert r.exit_code == 3 and "cannot open /dev/eenn-no-such-port" in r.output, r.output  # no board: as hil run
    # a board that runs another solution: the fixture's projects share one hash, so give a copy another
    import shutil

    another = tmp_path / "another"
    shutil.copytree(other, another)
    pj = another / "eenn" / "project.json"
    pj.write_text(pj.read_text().replace(load_manifest_hash(other), "ab" * 32))
    r = CliRunner().invoke(main, ["hil", "profile", "--port", f"virtual:{toy_board.project_dir}", "--project",
                                  str(another), "--out", str(tmp_path / "m.json"), "--timeout", "2"])
    assert r.exit_code == 2 and ("bundle" in r.output.lower() or "solution" in r.output.lower()), r.output
    assert not (tmp_path / "m.json").exists()
    timing = tmp_path / "t.json"
    timing.write_text(json.dumps(TIMING))
    r = CliRunner().invoke(main, ["hil", "run", "--port", "/dev/ttyACM0", "--project", str(other), "--out",
                                  str(tmp_path / "s"), "--virtual-timing", str(timing)])
    assert r.exit_code == 2 and "only for --port virtual" in r.output, r.output
    timing.write_text(json.dumps({"cm4": {"*": {"cycles_per_mac": 1, "cycles_per_call": "fast"}}}))
    r = CliRunner().invoke(main, ["hil", "virtual", str(other), "--timing", str(timing)])
    assert r.exit_code == 2 and "cm4.*.cycles_per_call = 'fast': expected a non-negative number" in r.output, r.output
