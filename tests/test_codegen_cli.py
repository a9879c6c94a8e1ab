"""`eenn generate` on the command line: determinism, what it prints, --force, and bad inputs
(missing or altered bundle files, unknown kit, wrong processors, a stage 0 too large for the
CM0+) failing with exit code 2 and nothing written."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from eenn.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")


def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run(*args: str):
    return CliRunner().invoke(main, ["generate", *args], catch_exceptions=False)


def assert_nothing_written(parent: Path, out: Path, before: set[str]) -> None:
    assert not out.exists()
    assert {p.name for p in parent.iterdir()} == before, "no partial directory may be left behind"


def test_generating_twice_gives_identical_trees_and_force_rules(ecg_bundle, ecg_project, tmp_path):
    reference = tree_hashes(ecg_project.out)
    assert len(reference) > 40
    out = tmp_path / "proj"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    # a non-empty directory eenn did not write: refused, untouched
    r = run(str(ecg_bundle["path"]), "--kit", "CY8CPROTO-062-4343W", "--out", str(out))
    assert r.exit_code == 2 and "--force" in r.output and "was not written by eenn" in r.output
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    # --force replaces it, with the same bytes as the first generation
    r = run(str(ecg_bundle["path"]), "--kit", "CY8CPROTO-062-4343W", "--out", str(out), "--force")
    assert r.exit_code == 0, r.output
    assert tree_hashes(out) == reference
    # what it prints: the memory map per core and the operators of each subgraph
    assert "cm0p flash" in r.output and "cm4 ram" in r.output and "shared" in r.output
    assert "stage 0 on cm0p:" in r.output and "CONV_2D" in r.output and "MicroMutableOpResolver<" in r.output
    # a directory eenn generated is replaced without --force, again identically
    r = run(str(ecg_bundle["path"]), "--kit", "CY8CPROTO-062-4343W", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert tree_hashes(out) == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]


@pytest.fixture
def bundle_copy(ecg_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(ecg_bundle["path"], dst)
    return dst


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_damaged_bundle_fails_and_writes_nothing(bundle_copy, tmp_path, damage):
    victim = bundle_copy / ("exit_0.keras" if damage == "missing" else "test.npz")
    if damage == "missing":
        victim.unlink()
    else:
        data = bytearray(victim.read_bytes())
        data[-1] ^= 0xFF
        victim.write_bytes(bytes(data))
    before = {p.name for p in tmp_path.iterdir()}
    out = tmp_path / "out"
    r = run(str(bundle_copy), "--kit", "CY8CKIT-062S2-43012", "--out", str(out))
    assert r.exit_code == 2
    want = "'exit_0.keras' is missing" if damage == "missing" else "'test.npz' was altered"
    assert want in r.output and r.output.startswith("error: ")
    assert_nothing_written(tmp_path, out, before)


def test_unknown_kit_fails_and_writes_nothing(bundle_copy, tmp_path):
    before = {p.name for p in tmp_path.iterdir()}
    out = tmp_path / "out"
    r = run(str(bundle_copy), "--kit", "CY8CKIT-999", "--out", str(out))
    assert r.exit_code == 2
    assert "unknown kit 'CY8CKIT-999'" in r.output and "CY8CKIT-062S2-43012" in r.output
    assert_nothing_written(tmp_path, out, before)


def test_not_a_bundle_and_wrong_processors(bundle_copy, tmp_path):
    r = run(str(tmp_path), "--kit", "CY8CKIT-062S2-43012", "--out", str(tmp_path / "o1"))
    assert r.exit_code == 2 and "not a solution bundle" in r.output
    # a solution mapped onto another platform's processors
    from eenn.augment.bundle import accept_edit
    from eenn.augment.hardware import load_profile

    sol_path = bundle_copy / "solution.json"
    sol = json.loads(sol_path.read_text())
    sol["hardware"] = load_profile("rk3588-cloud").to_dict()
    names = [p["name"] for p in sol["hardware"]["processors"]]
    for part in sol["segments"] + sol["exits"]:
        part["processor"] = names[min(part["index"], len(names) - 1)]
    sol_path.write_text(json.dumps(sol))
    accept_edit(bundle_copy)  # on purpose: past the edit check, to the mapping check
    before = {p.name for p in tmp_path.iterdir()}
    out = tmp_path / "out"
    r = run(str(bundle_copy), "--kit", "CY8CKIT-062S2-43012", "--out", str(out))
    assert r.exit_code == 2 and "a PSoC 6 project runs exactly two" in r.output
    assert_nothing_written(tmp_path, out, before)


def _big_bundle(path: Path) -> None:
    """Stage 0 with a 96x96x32 feature map (295 KB): more than the CY8CKIT-062-BLE's SRAM."""
    import keras

    from tests.bundles import write_test_bundle

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((96, 96, 1), name="img")
    fm = L.Conv2D(32, 3, padding="same", activation="relu", name="c1")(inp)
    h = L.GlobalAveragePooling2D(name="gap")(fm)
    out = L.Dense(3, activation="softmax", name="fc")(h)
    base = keras.Model(inp, out)
    seg0 = keras.Model(inp, fm)
    fin = keras.Input((96, 96, 32))
    seg1 = keras.Model(fin, base.get_layer("fc")(base.get_layer("gap")(fin)))
    ein = keras.Input((96, 96, 32))
    ex = keras.Model(ein, L.Dense(3, activation="softmax")(L.GlobalMaxPooling2D()(ein)))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (6, 96, 96, 1)).astype(np.float32)
    write_test_bundle(path, base, [seg0, seg1], [ex], [0.5], x, x[:3], np.array([0, 1, 2]), cuts=["c1"])


def test_stage0_too_large_for_the_cm0p_fails_with_the_figures(tmp_path):
    bundle = tmp_path / "big"
    _big_bundle(bundle)
    before = {p.name for p in tmp_path.iterdir()}
    out = tmp_path / "out"
    r = run(str(bundle), "--kit", "CY8CKIT-062-BLE", "--out", str(out))
    assert r.exit_code == 2, r.output
    assert "does not fit CY8CKIT-062-BLE" in r.output and "stage 0 arena" in r.output
    assert "cm0p ram" in r.output  # the memory map it tried
    assert_nothing_written(tmp_path, out, before)


# ---------------------------------------------------------------- a file system that refuses the project
def test_a_read_only_directory_fails_with_the_path_and_reason_and_writes_nothing(bundle_copy, tmp_path):
    from tests.readonly import read_only_dir

    parent = tmp_path / "ro"
    out = parent / "proj"
    with read_only_dir(parent):
        r = run(str(bundle_copy), "--kit", "CY8CKIT-062S2-43012", "--out", str(out))
        assert list(parent.iterdir()) == []
    assert r.exit_code == 2, r.output
    assert f"\nerror: cannot write {out}: " in r.output
    assert "Permission denied" in r.output or "Operation not permitted" in r.output
    assert "Traceback" not in r.output


def test_a_full_disk_midway_fails_with_the_reason_and_leaves_no_half_project(bundle_copy, tmp_path, monkeypatch):
    import errno
    import os

    real = Path.write_bytes
    written = []

    def fills_up(self, data):
        if len(written) >= 12:  # the models and the manifest went in; the disk fills during the sources
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        written.append(self)
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", fills_up)
    before = {p.name for p in tmp_path.iterdir()}
    out = tmp_path / "out"
    r = run(str(bundle_copy), "--kit", "CY8CKIT-062S2-43012", "--out", str(out))
    assert len(written) == 12
    assert r.exit_code == 2, r.output
    assert f"\nerror: cannot write {out}: No space left on device; free some space" in r.output
    assert_nothing_written(tmp_path, out, before)


def test_a_hand_edited_threshold_is_refused_and_writes_nothing(bundle_copy, tmp_path):
    sol_path = bundle_copy / "solution.json"
    sol = json.loads(sol_path.read_text())
    sol["exits"][0]["threshold"] = round(sol["exits"][0]["threshold"] + 0.1, 4)  # e.g. 0.4 -> 0.5
    sol_path.write_text(json.dumps(sol, indent=2, sort_keys=True) + "\n")
    before = {p.name for p in tmp_path.iterdir()}
    out = tmp_path / "out"
    r = run(str(bundle_copy), "--kit", "CY8CKIT-062S2-43012", "--out", str(out))
    assert r.exit_code == 2, r.output
    assert r.output.startswith(f"error: {sol_path}: edited after the search")
    assert f"eenn accept-edit {bundle_copy}" in r.output
    assert_nothing_written(tmp_path, out, before)
