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
