"""`eenn hil run` against the virtual board: equal to the int8 chain, timing/energy = cost model,
resumable after SIGKILL, and surviving a board restart mid-run."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from eenn.cli import main
from eenn.errors import BoardError
from eenn.hil.run import RunOptions, run
from eenn.hil.session import RESULTS
from eenn.hil.virtual_board import TIMING_NOTE, VirtualBoard
from tests.hil_fixture import hil_pair, path_energy_j, path_latency_s, project_of_another_bundle

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
LINK_J = 8 * 8 * 4 * 0.00000000005  # psoc6 link J/byte x the 256-byte feature map


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return hil_pair(tmp_path_factory)


def _lines(session) -> list[dict]:
    return [json.loads(line) for line in (session / RESULTS).read_text().splitlines()]


def _assert_matches_chain(records, pair):
    assert sorted(r["index"] for r in records) == list(range(len(pair.labels)))  # exactly one per sample
    for r in records:
        i = r["index"]
        assert (r["class"], r["exit"]) == (pair.ref_class[i], pair.ref_exit[i]), i
        assert r["label"] == pair.labels[i]


def test_run_on_the_virtual_board_equals_the_int8_chain_and_the_cost_model(pair, tmp_path):
    out = tmp_path / "session"
    # the project is found beside the bundle (its bundle_hash names the bundle)
    res = CliRunner().invoke(main, ["hil", "run", "--port", "virtual", "--bundle", str(pair.bundle),
                                    "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "NOT measured" in res.output
    _assert_matches_chain(_lines(out), pair)
    s = json.loads((out / "summary.json").read_text())
    m = s["metrics"]
    y, cls, ex = pair.labels, pair.ref_class, pair.ref_exit
    rates = [float(np.mean(ex == k)) for k in range(2)]
    assert s["n"] == s["n_data"] == 120 and s["complete"]
    assert m["accuracy"]["measured"] == pytest.approx(float(np.mean(cls == y)), abs=1e-12)
    assert m["accuracy"]["measured"] == m["accuracy"]["reference"] == m["accuracy"]["predicted"]
    assert m["termination_rates"]["measured"] == pytest.approx(rates, abs=1e-12)
    assert m["termination_rates"]["measured"] == m["termination_rates"]["reference"]
    assert m["early_termination"]["measured"] == pytest.approx(rates[0])
    assert m["reference_agreement"]["measured"] == 1.0
    assert s["timing"] == TIMING_NOTE and s["timing_measured"] is False
    assert s["energy_source"] == "datasheet"
    # latency per exit path and per core: the cost model's (ticks are whole, so 1 tick / 1 us slack)
    want_lat = path_latency_s()
    want_en = [path_energy_j()[0], path_energy_j()[1] + LINK_J]
    for k, p in enumerate(s["paths"]):
        assert p["count"] == int(np.sum(ex == k)) > 0
        for stat in ("mean", "p50", "p99", "worst"):
            assert p["latency_s"][stat] == pytest.approx(want_lat[k], abs=1.5e-6)
            assert p["energy_j"][stat] == pytest.approx(want_en[k], rel=1e-3)
        assert p["latency_s"]["predicted"] == pytest.approx(want_lat[k], rel=1e-12)
        assert p["energy_j"]["predicted"] == pytest.approx(want_en[k], rel=1e-9)
        assert [c["processor"] for c in p["cores"]] == ["cm0p", "cm4"][: k + 1]
        assert p["cores"][0]["mean"] == pytest.approx(0.0021, abs=1e-8)
        # per exit, board vs the int8 chain: the same class, the same int8 scores
        agr = p["int8_reference"]
        assert agr["n"] == agr["same_exit"] == p["count"] and agr["class_agreement"] == 1.0
        assert agr["score_diff_lsb"] == {"n_samples": p["count"], "max": 0.0, "rms": 0.0}
    assert "vs int8 chain: class / score diff max, rms (LSB)" in res.output
    mean_lat = sum(r * t for r, t in zip(rates, want_lat))
    assert m["mean_latency_s"]["measured"] == pytest.approx(mean_lat, abs=2e-6)
    assert m["mean_latency_s"]["predicted"] == pytest.approx(mean_lat, rel=1e-9)  # the fixture's prediction
    assert m["worst_latency_s"]["measured"] == pytest.approx(want_lat[1], abs=1.5e-6)
    assert m["mean_energy_j"]["measured"] == pytest.approx(sum(r * e for r, e in zip(rates, want_en)), rel=1e-3)
    assert m["mean_energy_j"]["predicted"] == pytest.approx(sum(r * e for r, e in zip(rates, path_energy_j())),
                                                            rel=1e-9)
    assert (out / "latency.png").stat().st_size > 1000 and (out / "energy.png").stat().st_size > 1000
    assert "sample 119" in (out / "run.log").read_text()
    # run again: nothing left to do, the same summary
    res = CliRunner().invoke(main, ["hil", "run", "--port", "virtual", "--bundle", str(pair.bundle),
                                    "--out", str(out), "--no-progress", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "(0 run now, 120 from before)" in res.output
    assert len(_lines(out)) == 120


def test_a_project_from_another_bundle_is_refused(pair, tmp_path):
    proj = project_of_another_bundle(pair.project, tmp_path / "other", "0" * 64)
    res = CliRunner().invoke(main, ["hil", "run", "--port", "virtual", "--bundle", str(pair.bundle),
                                    "--project", str(proj), "--out", str(tmp_path / "s")])
    assert res.exit_code == 2
    assert "was generated from bundle 000000000000" in res.output and "eenn generate" in res.output


def _gate_board(board: VirtualBoard, block_at: int) -> tuple[threading.Event, threading.Event]:
    """Make the board hang inside inference number `block_at` until released."""
    inner = board.fw._run_stage
    reached, release = threading.Event(), threading.Event()
    count = {"n": 0}

    def gated(stage, x, fm_len, n_scores):
        if stage == 0:
            count["n"] += 1
            if count["n"] == block_at:
                reached.set()
                release.wait(30)
        return inner(stage, x, fm_len, n_scores)

    board.fw._run_stage = gated
    return reached, release


def _run_cli(args, **kw):
    return subprocess.Popen([sys.executable, "-c", "from eenn.cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_sigkill_midway_then_restart_gives_exactly_one_result_per_sample(pair, tmp_path):
    out = tmp_path / "session"
    board = VirtualBoard(pair.project)
    url = board.open_socket(0)
    board.serve_in_thread()
    reached, release = _gate_board(board, block_at=41)
    args = ["hil", "run", "--port", url, "--bundle", str(pair.bundle), "--project", str(pair.project),
            "--out", str(out), "--no-plots", "--no-progress"]
    proc = _run_cli(args)
    try:
        assert reached.wait(60), proc.stderr.read() if proc.poll() is not None else "board never reached sample 41"
        os.kill(proc.pid, signal.SIGKILL)  # killed while sample 40 is on the board
        proc.wait(10)
    finally:
        release.set()
    assert proc.returncode == -signal.SIGKILL
    done = _lines(out)
    assert [r["index"] for r in done] == list(range(40))
    assert not (out / "summary.json").exists()
    with open(out / RESULTS, "ab") as fh:  # and as if the kill had torn a write
        fh.write(b'{"index": 40, "cla')
    proc = _run_cli(args)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        board.close()
    assert proc.returncode == 0, stderr
    assert "(80 run now, 40 from before)" in stdout
    _assert_matches_chain(_lines(out), pair)
    meta = json.loads((out / "session.json").read_text())
    assert len(meta["starts"]) == 2
    assert "torn last line" in (out / "run.log").read_text()
    assert json.loads((out / "summary.json").read_text())["n"] == 120


def test_board_restarted_mid_run_is_survived(pair, tmp_path):
    b1 = VirtualBoard(pair.project)
    url = b1.open_socket(0)
    port = int(url.rsplit(":", 1)[1])
    b1.serve_in_thread()
    boards = [b1]

    def restart_at_30(rec):
        if rec["index"] == 30:
            boards[0].close()  # the board goes away mid-run ...

            def later():  # ... and comes back on the same port a moment later
                time.sleep(0.5)
                b2 = VirtualBoard(pair.project)
                b2.open_socket(port)
                b2.serve_in_thread()
                boards.append(b2)
            threading.Thread(target=later, daemon=True).start()

    out = tmp_path / "session"
    try:
        res = run(RunOptions(port=url, out=out, bundle=pair.bundle, project=pair.project, progress=False,
                             plots=False, reconnect_s=20, on_record=restart_at_30))
    finally:
        for b in boards:
            b.close()
    assert len(boards) == 2
    _assert_matches_chain(_lines(out), pair)
    assert res.summary.retries >= 1
    assert sum(r["attempts"] > 1 for r in _lines(out)) == 1  # sample 31 needed a second attempt
    log = (out / "run.log").read_text()
    assert "recovering" in log and "recovered the conversation" in log


def test_a_board_that_never_comes_back_stops_with_how_to_continue(pair, tmp_path):
    board = VirtualBoard(pair.project)
    url = board.open_socket(0)
    board.serve_in_thread()

    def vanish_at_5(rec):
        if rec["index"] == 5:
            board.close()

    with pytest.raises(BoardError) as err:  # not the user's fault: exit code 3
        run(RunOptions(port=url, out=tmp_path / "s", bundle=pair.bundle, project=pair.project, progress=False,
                       plots=False, reconnect_s=1, retries=1, on_record=vanish_at_5))
    board.close()
    assert err.value.exit_code == 3
    msg = str(err.value)
    assert "did not come back" in msg and "6 of 120 samples are recorded" in msg and "run the same command" in msg
    assert len(_lines(tmp_path / "s")) == 6
    assert "stopped:" in (tmp_path / "s" / "run.log").read_text()


def test_disagreement_with_the_int8_reference_is_reported(pair, tmp_path):
    import shutil

    proj = tmp_path / "project"
    shutil.copytree(pair.project, proj)
    ref_path = proj / "eenn" / "reference.json"
    ref = json.loads(ref_path.read_text())
    ref["samples"][3]["class"] = (ref["samples"][3]["class"] + 1) % 3  # as if the firmware had answered wrongly
    ref_path.write_text(json.dumps(ref))
    res = CliRunner().invoke(main, ["hil", "run", "--port", "virtual", "--bundle", str(pair.bundle), "--project",
                                    str(proj), "--out", str(tmp_path / "s"), "--limit", "10", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "WARNING: 1 sample(s) answered differently" in res.output
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert s["metrics"]["reference_agreement"]["measured"] == pytest.approx(0.9)
    assert s["n"] == 10 and not s["complete"]


# ---------------------------------------------------------------- a run that cannot start
def _hil_run(pair, port: str, out, *extra: str):
    return CliRunner().invoke(main, ["hil", "run", "--port", port, "--bundle", str(pair.bundle), "--project",
                                     str(pair.project), "--out", str(out), "--no-plots", "--no-progress", *extra])


def _loses_first_reply(board: VirtualBoard) -> list[bytes]:
    """The board's first answer (to the resync that opens `hil run`) never reaches the host."""
    inner, lost = board.fw.feed, []

    def feed(data):
        out = inner(data)
        if not lost and b"m-ready" in out:
            lost.append(out)
            return b""
        return out

    board.fw.feed = feed
    return lost


def test_a_reply_lost_in_the_handshake_is_retried_by_hil_run(pair, tmp_path):
    board = VirtualBoard(pair.project)
    url = board.open_socket(0)
    lost = _loses_first_reply(board)
    board.serve_in_thread()
    try:
        r = _hil_run(pair, url, tmp_path / "s", "--limit", "4", "--timeout", "0.5", "--retries", "10")
    finally:
        board.close()
    assert lost, "the fixture did not drop a reply"
    assert r.exit_code == 0, r.output
    assert "the start-up handshake needed 2 attempts (" in (tmp_path / "s" / "run.log").read_text()
    assert [rec["index"] for rec in _lines(tmp_path / "s")] == [0, 1, 2, 3]


def _silent_port():
    """A port that accepts the connection and never answers (a board that is powered but hung)."""
    import socket as socket_mod

    srv = socket_mod.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    return srv, f"socket://127.0.0.1:{srv.getsockname()[1]}"


def test_a_board_that_never_answers_is_exit_3_and_writes_no_session(pair, tmp_path):
    srv, url = _silent_port()
    try:
        r = _hil_run(pair, url, tmp_path / "s", "--timeout", "0.2", "--retries", "1")
    finally:
        srv.close()
    assert r.exit_code == 3, r.output
    assert "did not complete the start-up handshake (resync, name, profile) in 2 attempt(s)" in r.output
    assert "run the same command again" not in r.output
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("case", ["wrong port", "another solution on the board"])
def test_a_run_that_cannot_start_says_why_and_leaves_nothing(pair, tmp_path, case):
    import shutil

    board = None
    if case == "wrong port":
        port, code, want = "/dev/no-such-board-eenn", 3, "cannot open /dev/no-such-board-eenn"
    else:
        other = tmp_path / "other"
        shutil.copytree(pair.project, other)
        mf = other / "eenn" / "project.json"
        mf.write_text(json.dumps({**json.loads(mf.read_text()), "bundle_hash": "0" * 64}))
        board = VirtualBoard(other)
        port = board.open_socket(0)
        board.serve_in_thread()
        code, want = 2, "the board runs solution 000000000000"
    try:
        r = _hil_run(pair, port, tmp_path / "s", "--reconnect", "0.2")
    finally:
        if board is not None:
            board.close()
    assert r.exit_code == code, r.output
    assert want in r.output and "run the same command again" not in r.output
    assert not (tmp_path / "s").exists()


def test_a_failed_restart_keeps_the_session_as_it_was(pair, tmp_path):
    out = tmp_path / "s"
    r = _hil_run(pair, "virtual", out, "--limit", "3")
    assert r.exit_code == 0, r.output
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"}
    srv, url = _silent_port()
    try:
        r = _hil_run(pair, url, out, "--timeout", "0.2", "--retries", "0")
    finally:
        srv.close()
    assert r.exit_code == 3 and "start-up handshake" in r.output
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"} == before


def test_a_session_in_use_is_refused_before_the_board_is_touched(pair, tmp_path):
    from eenn.hil.session import Session

    out = tmp_path / "s"
    r = _hil_run(pair, "virtual", out, "--limit", "2")
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "session.json").read_text())
    identity = {k: meta[k] for k in ("bundle_hash", "data_sha256", "n_samples")}
    srv, url = _silent_port()
    try:
        with Session.open(out, identity):  # another `hil run` holds the session (and the board)
            t0 = time.monotonic()
            r = _hil_run(pair, url, out, "--timeout", "2", "--retries", "3")
            elapsed = time.monotonic() - t0
    finally:
        srv.close()
    assert r.exit_code == 2, r.output
    assert "another `eenn hil run` is using this session" in r.output
    assert elapsed < 2  # refused at once, not after a handshake with the other run's board


def test_a_score_off_by_3_lsb_shows_in_its_exits_score_difference(pair, tmp_path):
    import shutil

    from eenn.codegen.reference import decode_scores, encode_scores

    proj = tmp_path / "project"
    shutil.copytree(pair.project, proj)
    ref_path = proj / "eenn" / "reference.json"
    ref = json.loads(ref_path.read_text())
    n = 10
    k = int(pair.ref_exit[3])
    scores = decode_scores(ref["samples"][3]["scores_q"])
    j = int(np.argmin(scores))  # a score with room to move without changing the class
    scores[j] += 3  # as if the board had computed it 3 LSB higher than the chain
    ref["samples"][3]["scores_q"] = encode_scores(np.array(scores))
    ref_path.write_text(json.dumps(ref))
    res = CliRunner().invoke(main, ["hil", "run", "--port", "virtual", "--bundle", str(pair.bundle), "--project",
                                    str(proj), "--out", str(tmp_path / "s"), "--limit", str(n), "--no-plots"])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    agr = s["paths"][k]["int8_reference"]
    at_k = int(np.sum(pair.ref_exit[:n] == k))
    assert agr["class_agreement"] == 1.0 and agr["score_diff_lsb"]["n_samples"] == at_k
    assert agr["score_diff_lsb"]["max"] == 3.0
    # one difference of 3 among at_k samples x len(scores) scores
    assert agr["score_diff_lsb"]["rms"] == pytest.approx(math.sqrt(9 / (at_k * len(scores))), rel=1e-12)
    assert f"WARNING: exit {k}: the board's int8 scores differ from the Python int8 chain's by up to 3 LSB" in res.output
    other = s["paths"][1 - k]["int8_reference"]["score_diff_lsb"]
    assert other["max"] == 0.0 and other["rms"] == 0.0
