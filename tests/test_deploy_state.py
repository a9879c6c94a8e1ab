"""deploy.json: written and read back typed; a newer eenn's keys are ignored, a broken or foreign
directory is refused unless --force."""
from __future__ import annotations

import json

import pytest

from eenn.deploy_state import STATE, DeployState, StageRecord, read_state, write_state
from eenn.errors import EennError


def _state() -> DeployState:
    return DeployState(inputs={"model": "m.keras", "data": "d.npz", "kit": "K", "port": "virtual"},
                       stages={"search": StageRecord("ran", 12.5, key="k" * 64, bundle_hash="b" * 64),
                               "hil": StageRecord("kept", 3.0, port="virtual", ran=0, skipped=40)})


def test_round_trip_and_newer_keys(tmp_path):
    write_state(tmp_path, _state())
    raw = json.loads((tmp_path / STATE).read_text())
    assert raw["stages"]["search"] == {"status": "ran", "seconds": 12.5, "key": "k" * 64, "bundle_hash": "b" * 64}
    assert read_state(tmp_path, force=False) == _state()
    raw["stages"]["search"]["gpu"] = "none"  # written by a newer eenn: still read
    raw["host"] = "ci-7"
    (tmp_path / STATE).write_text(json.dumps(raw))
    assert read_state(tmp_path, force=False) == _state()


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"schema_version": 9, "stages": {}}), "schema_version 9, expected 1"),
    (json.dumps({"schema_version": 1, "stages": {"hil": {"ran": 3}}}), "stages.hil lacks the field 'status'"),
])
def test_a_broken_state_is_refused_unless_forced(tmp_path, text, message):
    (tmp_path / STATE).write_text(text)
    with pytest.raises(EennError, match=f"{STATE}: {message}.*--force") as err:
        read_state(tmp_path, force=False)
    assert str(err.value).count(STATE) == 1  # the file named once, then what is wrong in it
    assert read_state(tmp_path, force=True) is None  # --force: start over


def test_a_directory_eenn_did_not_make(tmp_path):
    assert read_state(tmp_path / "new", force=False) is None
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(EennError, match="not made by `eenn deploy`"):
        read_state(tmp_path, force=False)
    assert read_state(tmp_path, force=True) is None
    with pytest.raises(EennError, match="is a file"):
        read_state(tmp_path / "notes.txt", force=True)
