"""The generated project, byte for byte: a refactor of the pipeline must not change what lands on
the board. A bundle with fixed (seeded, untrained) weights is generated and every file's sha256,
with the bundle hash replaced by a placeholder (the .keras files carry their save time), is
compared with tests/data/golden_project.json.

Files that eenn writes from its own templates and the firmware must always match. Files derived
from the TFLite converter's bytes (the models and what is computed from them) are compared only
where the converter produced the golden models: the converter is a dependency, not eenn, and may
round a calibration range differently on another CPU.

A deliberate change of the generated output is recorded with EENN_UPDATE_GOLDEN=1 (commit the
new golden with the change that caused it)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "data" / "golden_project.json"
CONVERTER_MODELS = ("eenn/models/base.tflite", "eenn/models/stage0.tflite", "eenn/models/stage1.tflite")
# Found by regenerating with other weights: these change with the converter's output, nothing else does.
CONVERTER_DERIVED = CONVERTER_MODELS + ("eenn/project.json", "eenn/reference.json", "shared/include/ee_config.h",
                                        "proj_cm0p/ee_model_stage0.c", "proj_cm4/ee_model_stage1.c")


def normalised_digests(project: Path, bundle_hash: str) -> dict[str, str]:
    out = {}
    for path in sorted(p for p in project.rglob("*") if p.is_file()):
        data = path.read_bytes().replace(bundle_hash.encode(), b"<bundle>")
        out[path.relative_to(project).as_posix()] = hashlib.sha256(data).hexdigest()
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from eenn.codegen.generate import generate
    from tests.bundles import fixed_weights_bundle

    root = tmp_path_factory.mktemp("golden")
    bundle_hash = fixed_weights_bundle(root / "bundle")
    generate(root / "bundle", "CY8CKIT-062S2-43012", root / "project")
    return normalised_digests(root / "project", bundle_hash)


def test_the_same_bundle_generates_the_golden_project(generated):
    if os.environ.get("EENN_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(generated, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert sorted(generated) == sorted(golden), "the project's file list changed"
    own = [f for f in golden if f not in CONVERTER_DERIVED]
    changed = [f for f in own if generated[f] != golden[f]]
    assert not changed, f"eenn's own output changed: {changed}"
    if any(generated[f] != golden[f] for f in CONVERTER_MODELS):
        pytest.skip("the TFLite converter wrote other models on this machine; the files derived from them "
                    f"were not compared ({', '.join(CONVERTER_DERIVED)})")
    derived = [f for f in CONVERTER_DERIVED if generated[f] != golden[f]]
    assert not derived, f"files derived from the same models changed: {derived}"


def test_the_digest_sees_a_one_byte_change(tmp_path):
    """The comparison is not blind: one byte changed in a file changes its digest, and the
    placeholder replaces only the bundle hash."""
    (tmp_path / "a.c").write_bytes(b"/* bundle abc */ int x = 1;")
    before = normalised_digests(tmp_path, "abc")
    (tmp_path / "a.c").write_bytes(b"/* bundle def */ int x = 1;")
    assert normalised_digests(tmp_path, "def") == before
    (tmp_path / "a.c").write_bytes(b"/* bundle def */ int x = 2;")
    assert normalised_digests(tmp_path, "def") != before
