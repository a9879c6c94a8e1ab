"""Example HIL tests, written as ordinary pytest tests with the `eenn_board` fixture.

    pytest docs/ci/test_hil_example.py --eenn-port /dev/ttyACM0 --eenn-bundle runs/bundle
    pytest docs/ci/test_hil_example.py --eenn-port virtual --eenn-bundle runs/bundle

Copy this file next to your own tests and adapt the thresholds. Without --eenn-port the tests
are skipped.
"""
import json
from pathlib import Path

import numpy as np


def test_board_runs_the_bundle_solution(eenn_board):
    assert eenn_board.info.name == "eenn"
    assert eenn_board.info.hash == eenn_board.manifest.bundle_hash
    assert eenn_board.info.stages == len(eenn_board.manifest.stages)


def test_first_samples_match_the_int8_reference(eenn_board):
    """The board answers as the Python int8 chain does (eenn/reference.json), sample by sample."""
    ref_path = eenn_board.project / "eenn" / "reference.json"
    reference = json.loads(ref_path.read_text())["samples"]
    x, _ = eenn_board.test_data()
    for i in range(20):
        res = eenn_board.infer(x[i])
        assert (res.cls, res.exit) == (reference[i]["class"], reference[i]["exit"]), f"sample {i}"


def test_early_exit_is_faster_than_the_full_path(eenn_board):
    x, _ = eenn_board.test_data()
    by_exit = {}
    for i in range(40):
        res = eenn_board.infer(x[i])
        by_exit.setdefault(res.exit, []).append(res.elapsed_us)
    if len(by_exit) > 1:
        assert np.mean(by_exit[min(by_exit)]) < np.mean(by_exit[max(by_exit)])


def test_accuracy_holds_on_the_test_split(eenn_board, tmp_path):
    summary = eenn_board.run(tmp_path / "session", limit=60)
    acc = summary["metrics"]["accuracy"]
    assert acc["measured"] >= acc["predicted"] - 0.10  # the search's prediction, within 10 points
    assert summary["metrics"]["reference_agreement"]["measured"] == 1.0
    assert Path(tmp_path / "session" / "results.jsonl").is_file()
