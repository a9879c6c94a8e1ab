"""eenn/project.json as docs/interfaces.md says a reader takes it: keys it does not know are
ignored; a missing required one is named, with the file."""
from __future__ import annotations

import json
import shutil

import pytest

from eenn.codegen.manifest import MANIFEST_PATH, load_manifest
from eenn.errors import EennError
from tests.hil_fixture import hil_pair


@pytest.fixture
def project(tmp_path_factory, tmp_path):
    dst = tmp_path / "project"
    shutil.copytree(hil_pair(tmp_path_factory).project, dst)
    return dst


def _edit(project, change) -> None:
    mf = project / MANIFEST_PATH
    raw = json.loads(mf.read_text())
    change(raw)
    mf.write_text(json.dumps(raw))


def test_unknown_keys_are_ignored_at_every_level(project):
    before = load_manifest(project)

    def add(raw):
        raw["added_by_a_newer_eenn"] = {"x": 1}
        raw["input"]["layout"] = "nhwc"
        raw["energy"]["idle_w"] = [0.0, 0.0]
        for st in raw["stages"]:
            st["future"] = True
            st["scores"]["dtype"] = "int8"
            if st.get("feature_map"):
                st["feature_map"]["dtype"] = "int8"
        if raw.get("firmware"):
            raw["firmware"]["watchdog_s"] = 3.0
        for c in raw.get("cores") or []:
            c["future"] = 1

    _edit(project, add)
    assert load_manifest(project) == before


@pytest.mark.parametrize("where, drop, says", [
    ("top", "bundle_hash", "lacks the field 'bundle_hash'"),
    ("stage", "predicted_s", "stages[0] lacks the field 'predicted_s'"),
    ("scores", "zero_point", "stages[0].scores lacks the field 'zero_point'"),
    ("energy", "sleep_w", "energy lacks the field 'sleep_w'"),
])
def test_a_missing_required_field_is_named_with_the_file(project, where, drop, says):
    def remove(raw):
        target = {"top": raw, "stage": raw["stages"][0], "scores": raw["stages"][0]["scores"],
                  "energy": raw["energy"]}[where]
        del target[drop]

    _edit(project, remove)
    with pytest.raises(EennError) as exc:
        load_manifest(project)
    assert str(project / MANIFEST_PATH) in str(exc.value) and says in str(exc.value)


def test_reference_json_is_read_typed_and_written_back_byte_for_byte(project):
    """eenn/reference.json: the typed reader gives what the file says, the writer reproduces the
    file exactly (generate writes it through the same type), new keys are ignored, a missing
    field is named."""
    from eenn.codegen.manifest import REFERENCE_PATH, read_reference, reference_json_bytes

    path = project / REFERENCE_PATH
    raw = json.loads(path.read_text())
    ref = read_reference(project)
    assert ref.n == raw["n"] == len(ref.samples) and ref.accuracy == raw["accuracy"]
    assert [(s.cls, s.exit) for s in ref.samples] == [(s["class"], s["exit"]) for s in raw["samples"]]
    assert ref.whole_eenn is None and raw["whole_eenn"] is None  # this fixture's chain has no whole-EENN check
    assert reference_json_bytes(ref) == path.read_bytes()
    raw["board_notes"] = "newer eenn"
    raw["samples"][0]["latency_hint"] = 1
    path.write_text(json.dumps(raw))
    assert read_reference(project) == ref
    del raw["samples"][3]["exit"]
    path.write_text(json.dumps(raw))
    with pytest.raises(EennError, match=r"reference.json: samples\[3\]: expected .*'exit'"):
        read_reference(project)
    del raw["accuracy"]
    path.write_text(json.dumps(raw))
    with pytest.raises(EennError, match="reference.json lacks the field 'accuracy'"):
        read_reference(project)
