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
