"""The pytest plugin as users run it: `pytest --eenn-port virtual --eenn-bundle DIR` on the example
HIL tests (docs/ci/test_hil_example.py), and a plain pytest run that the plugin leaves alone."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from tests.hil_fixture import hil_pair, project_of_another_bundle

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "ci" / "test_hil_example.py"
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")


def _pytest(tmp_path, *args):
    junit = tmp_path / "report.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
                           f"--junitxml={junit}", *map(str, args)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    cases = {tc.get("name"): tc for tc in etree.parse(str(junit)).iter("testcase")} if junit.exists() else {}
    return proc, cases


def test_example_hil_tests_pass_on_the_virtual_board(tmp_path_factory, tmp_path):
    pair = hil_pair(tmp_path_factory)
    proc, cases = _pytest(tmp_path, EXAMPLE, "--eenn-port", "virtual", "--eenn-bundle", pair.bundle)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(cases) == 4
    assert all(tc.find("skipped") is None and tc.find("failure") is None for tc in cases.values())
    assert "eenn HIL: port virtual" in proc.stdout or "4 passed" in proc.stdout


def test_a_board_from_another_bundle_fails_the_fixture(tmp_path_factory, tmp_path):
    pair = hil_pair(tmp_path_factory)
    proj = project_of_another_bundle(pair.project, tmp_path / "wrong_project", "12" * 32)
    # the virtual board of another solution behind the port: identification must refuse it
    proc, cases = _pytest(tmp_path, EXAMPLE, "--eenn-port", f"virtual:{proj}", "--eenn-project", pair.project, "-k",
                          "runs_the_bundle")
    assert proc.returncode == 1, proc.stdout
    assert "eenn_board:" in proc.stdout and "expected" in proc.stdout


def test_without_options_the_hil_tests_skip_and_others_run(tmp_path):
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
    proc, cases = _pytest(tmp_path, EXAMPLE, tmp_path / "test_plain.py", "-rs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert cases["test_plain"].find("skipped") is None
    skipped = [n for n, tc in cases.items() if tc.find("skipped") is not None]
    assert len(skipped) == 4
    assert "pass --eenn-port" in proc.stdout
