"""Solution bundle: atomic writing, hash verification, structural checks."""
import json

import pytest

from eenn.augment.bundle import (
    BaseModelInfo,
    ExitSpec,
    SegmentSpec,
    Solution,
    load_bundle,
    write_bundle,
)
from eenn.errors import EennError

METRICS = {k: 0.5 for k in ("accuracy", "precision", "recall", "mean_macs", "mean_latency_s",
                             "worst_latency_s", "mean_energy_j")}


def solution():
    return Solution(
        base_model=BaseModelInfo(source="m.h5", sha256="0" * 64, file="base.keras", input_shape=[8, 1],
                                 num_classes=3, total_macs=100),
        hardware={"name": "psoc6"},
        search={"w": 0.9},
        segments=[SegmentSpec(0, "cm0p", "a", "b", "segment_0.keras", 40, [4, 2]),
                  SegmentSpec(1, "cm4", "c", "d", "segment_1.keras", 60, [3])],
        exits=[ExitSpec(0, "b", "cm0p", 0.6, "exit_0.keras", 5)],
        metrics={"split": "test", "base": dict(METRICS), "eenn": {**METRICS, "early_termination": 0.7}},
    )


def populate(tmp):
    for name in ("base.keras", "segment_0.keras", "segment_1.keras", "exit_0.keras"):
        (tmp / name).write_bytes(name.encode())
    (tmp / "pareto.csv").write_text("a,b\n")


def test_roundtrip_and_hash(tmp_path):
    h = write_bundle(tmp_path / "b", solution(), populate)
    b = load_bundle(tmp_path / "b")
    assert b.hash == h and len(h) == 64
    assert set(b.solution.files) == {"base.keras", "segment_0.keras", "segment_1.keras", "exit_0.keras"}
    assert b.solution.exits[0].threshold == 0.6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_altered_file_is_caught(tmp_path):
    write_bundle(tmp_path / "b", solution(), populate)
    (tmp_path / "b" / "exit_0.keras").write_bytes(b"tampered")
    with pytest.raises(EennError, match="'exit_0.keras' was altered"):
        load_bundle(tmp_path / "b")


def test_missing_file_is_caught(tmp_path):
    write_bundle(tmp_path / "b", solution(), populate)
    (tmp_path / "b" / "segment_1.keras").unlink()
    with pytest.raises(EennError, match="'segment_1.keras' is missing"):
        load_bundle(tmp_path / "b")


def test_failure_leaves_no_partial_bundle(tmp_path):
    def broken(tmp):
        populate(tmp)
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_bundle(tmp_path / "b", solution(), broken)
    assert list(tmp_path.iterdir()) == []


def test_refuses_foreign_directory_without_force(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(EennError, match="did not write.*--force"):
        write_bundle(tmp_path / "b", solution(), populate)
    write_bundle(tmp_path / "b", solution(), populate, overwrite=True)
    assert not (tmp_path / "b" / "notes.txt").exists()


def test_structure_is_checked(tmp_path):
    write_bundle(tmp_path / "b", solution(), populate)
    p = tmp_path / "b" / "solution.json"
    raw = json.loads(p.read_text())
    raw["exits"][0]["after_layer"] = "elsewhere"
    p.write_text(json.dumps(raw))
    with pytest.raises(EennError, match="exit 0 must sit at the end of segment 0"):
        load_bundle(tmp_path / "b")


def test_not_a_bundle(tmp_path):
    with pytest.raises(EennError, match="not a solution bundle"):
        load_bundle(tmp_path)


# ---------------------------------------------------------------- solution.json protects itself
def _edit(path, change):
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")


def _set_threshold(value):
    def change(raw):
        raw["exits"][0]["threshold"] = value
    return change


def test_an_edited_threshold_is_refused_naming_the_file_and_the_way_to_accept_it(tmp_path):
    write_bundle(tmp_path / "b", solution(), populate)
    p = tmp_path / "b" / "solution.json"
    assert json.loads(p.read_text())["content_sha256"]
    _edit(p, _set_threshold(0.5))
    with pytest.raises(EennError) as err:
        load_bundle(tmp_path / "b")
    msg = str(err.value)
    assert msg.startswith(f"{p}: edited after the search") and f"eenn accept-edit {tmp_path / 'b'}" in msg


def test_reformatting_is_not_an_edit(tmp_path):
    h = write_bundle(tmp_path / "b", solution(), populate)
    p = tmp_path / "b" / "solution.json"
    p.write_text(json.dumps(json.loads(p.read_text())))  # one line, keys in another order
    b = load_bundle(tmp_path / "b")
    assert b.hash != h and b.notes == ()


def test_an_accepted_edit_loads_and_keeps_its_history(tmp_path):
    from eenn.augment.bundle import accept_edit

    h0 = write_bundle(tmp_path / "b", solution(), populate)
    p = tmp_path / "b" / "solution.json"
    _edit(p, _set_threshold(0.5))
    before, after = accept_edit(tmp_path / "b")
    assert before != after != h0
    b = load_bundle(tmp_path / "b")
    assert b.hash == after and b.solution.exits[0].threshold == 0.5
    edits = json.loads(p.read_text())["accepted_edits"]
    assert len(edits) == 1 and edits[0]["content_sha256_before"] != edits[0]["content_sha256_after"]
    assert accept_edit(tmp_path / "b") == (after, after)  # nothing more to accept
    _edit(p, _set_threshold(0.45))  # a second, unaccepted edit is caught again
    with pytest.raises(EennError, match="edited after the search"):
        load_bundle(tmp_path / "b")


def test_accept_edit_refuses_a_broken_file_or_altered_parts(tmp_path):
    from eenn.augment.bundle import accept_edit

    write_bundle(tmp_path / "b", solution(), populate)
    p = tmp_path / "b" / "solution.json"
    _edit(p, lambda raw: raw["exits"][0].update(after_layer="elsewhere"))
    with pytest.raises(EennError, match="exit 0 must sit at the end of segment 0"):
        accept_edit(tmp_path / "b")
    write_bundle(tmp_path / "b", solution(), populate, overwrite=True)
    _edit(p, _set_threshold(0.5))
    (tmp_path / "b" / "exit_0.keras").write_bytes(b"tampered")
    with pytest.raises(EennError, match="'exit_0.keras' was altered"):
        accept_edit(tmp_path / "b")


def test_a_bundle_of_an_older_eenn_loads_with_a_note(tmp_path):
    write_bundle(tmp_path / "b", solution(), populate)
    p = tmp_path / "b" / "solution.json"
    _edit(p, lambda raw: raw.pop("content_sha256"))
    b = load_bundle(tmp_path / "b")
    assert len(b.notes) == 1 and "without a content hash" in b.notes[0] and "eenn accept-edit" in b.notes[0]


def test_accept_edit_on_the_command_line(tmp_path):
    from click.testing import CliRunner

    from eenn.cli import main

    write_bundle(tmp_path / "b", solution(), populate)
    _edit(tmp_path / "b" / "solution.json", _set_threshold(0.5))
    r = CliRunner().invoke(main, ["accept-edit", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "accepted the edit" in r.output and "computed before the edit" in r.output and "eenn generate" in r.output
    assert load_bundle(tmp_path / "b").solution.exits[0].threshold == 0.5
    r = CliRunner().invoke(main, ["accept-edit", str(tmp_path / "b")])
    assert r.exit_code == 0 and "nothing to accept" in r.output


# ---------------------------------------------------------------- a file system that refuses the bundle
def test_a_bundle_into_a_read_only_directory_is_one_clear_error(tmp_path):
    from tests.readonly import read_only_dir

    with read_only_dir(tmp_path / "ro") as ro:
        with pytest.raises(EennError, match=f"cannot write {ro / 'b'}: (Permission denied|Operation not permitted)"):
            write_bundle(ro / "b", solution(), populate)
        assert list(ro.iterdir()) == []


def test_a_disk_full_while_saving_a_model_is_one_clear_error_and_leaves_nothing(tmp_path):
    import errno
    import os

    def fills_up(tmp):
        populate(tmp)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as h5py / zipfile report it: no file named

    with pytest.raises(EennError, match=f"cannot write {tmp_path / 'b'}: No space left on device"):
        write_bundle(tmp_path / "b", solution(), fills_up)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("section, index, field", [("exits", 0, "threshold"), ("segments", 1, "processor"),
                                                    ("base_model", None, "num_classes")])
def test_a_missing_field_names_the_file_the_entry_and_the_field(tmp_path, section, index, field):
    write_bundle(tmp_path / "b", solution(), populate)
    path = tmp_path / "b" / "solution.json"
    raw = json.loads(path.read_text())
    del (raw[section][index] if index is not None else raw[section])[field]
    path.write_text(json.dumps(raw))
    with pytest.raises(EennError) as err:
        load_bundle(tmp_path / "b", verify=False)
    msg = str(err.value)
    assert str(path) in msg and f"'{field}'" in msg and "__init__" not in msg
    if section == "exits":
        assert "exit 0 (exits[0]) lacks the field 'threshold'" in msg
    if section == "segments":
        assert "segment 1" in msg


def test_keys_this_eenn_does_not_know_are_ignored(tmp_path):
    write_bundle(tmp_path / "b", solution(), populate)
    path = tmp_path / "b" / "solution.json"
    raw = json.loads(path.read_text())
    raw["exits"][0]["added_later"] = 1
    raw["added_later"] = {}
    path.write_text(json.dumps(raw))
    assert load_bundle(tmp_path / "b", verify=False).solution.exits[0].threshold == 0.6
