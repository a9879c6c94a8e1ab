"""`eenn deploy`: model + data → bundle → project → virtual-board HIL run → report, in one
directory that a second run continues instead of redoing."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from eenn.cli import main
from eenn.augment.commands import search_config
from eenn.deploy import DeployOptions, deploy
from eenn.errors import EennError

# The paper's space: codegen runs stage 0 on the CM0+ and stage 1 on the CM4 until bundles with
# several stages on one core are generated too (placement any, the search's default).
FAST = dict(epochs=3, copies=1)  # search options, by their parameter names


@pytest.fixture(scope="module")
def digits(trained_digits):
    return trained_digits


@pytest.fixture(scope="module")
def deployed(digits, tmp_path_factory):
    model, data = digits
    root = tmp_path_factory.mktemp("deploy")
    opts = DeployOptions(out=root / "run", model=model, data=data, search=search_config(cache_dir=root / "cache", **FAST))
    lines: list[str] = []
    res = deploy(opts, say=lines.append)
    return opts, res, lines


def md_table(md: str, heading: str) -> list[list[str]]:
    """The body rows of the first table under `## heading` in the Markdown report."""
    lines = md.split(f"## {heading}", 1)[1].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines[start + 2:end]]


def test_deploy_writes_every_stage_and_a_complete_report(deployed):
    opts, res, lines = deployed
    out = opts.out
    for p in ("bundle/solution.json", "project/eenn/project.json", "project/Makefile", "hil/summary.json",
              "report.html", "report.md", "deploy.json"):
        assert (out / p).is_file(), p
    assert [ln[:5] for ln in lines if ln.startswith("[")] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    state = json.loads((out / "deploy.json").read_text())
    assert {k: v["status"] for k, v in state["stages"].items()} == {
        "search": "ran", "generate": "ran", "hil": "ran", "report": "ran"}
    md = res.report_md.read_text()
    paper = md_table(md, "Base model vs early-exit network")
    assert [r[0] for r in paper] == ["Accuracy", "Precision", "Recall", "Accuracy, int8 on the board", "Mean MACs",
                                     "Mean latency", "Worst-case latency", "Mean energy", "Early termination"]
    for row in paper:  # no empty cell, nothing unknown
        assert len(row) == 4 and all(c and c not in ("n/a", "—") for c in row), row
    # the int8 row: the base model converted alone vs the EENN as the board answered
    reference = json.loads((res.project / "eenn" / "reference.json").read_text())
    int8 = next(r for r in paper if r[0] == "Accuracy, int8 on the board")
    assert int8[1:3] == [f"{100 * reference['base_accuracy']:.2f} %",
                         f"{100 * res.summary.metric('accuracy').measured:.2f} %"]
    html = res.report_html.read_text()
    assert html.count("data:image/png;base64,") >= 4  # Pareto, termination, MACs per exit, latency per path
    assert "make getlibs" in html and str(out / "project") in html


def test_board_agrees_with_the_int8_reference_exactly(deployed):
    _, res, _ = deployed
    m = res.summary.document["metrics"]
    assert res.summary.n == len(np.load(res.bundle / "test.npz")["y"])
    assert m["accuracy"]["measured"] == m["accuracy"]["reference"]
    assert m["early_termination"]["measured"] == m["early_termination"]["reference"]
    assert m["termination_rates"]["measured"] == m["termination_rates"]["reference"]
    assert m["reference_agreement"]["measured"] == 1.0
    # and the search, which scores the int8 outputs, predicted the board within half a point
    # (the TFLite kernels it runs may round a score 1 LSB apart from TFLite Micro's)
    assert abs(m["accuracy"]["measured"] - m["accuracy"]["predicted"]) <= 0.005


def test_second_run_keeps_every_stage(deployed, digits):
    opts, res, _ = deployed
    before = {p: p.stat().st_mtime_ns for p in (res.bundle / "solution.json", res.project / "eenn" / "project.json")}
    lines: list[str] = []
    again = deploy(opts, say=lines.append)
    assert again.stages["search"].status == "kept" and again.stages["generate"].status == "kept"
    assert again.stages["hil"].ran == 0 and again.stages["hil"].skipped == res.summary.n
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert again.summary.metric("accuracy") == res.summary.metric("accuracy")


def test_another_kit_regenerates_and_reruns_but_keeps_the_search(deployed, tmp_path):
    opts, res, _ = deployed
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(opts.out, out)
    state = json.loads((out / "deploy.json").read_text())
    again = deploy(DeployOptions(**{**opts.__dict__, "out": out, "kit": "CY8CPROTO-062-4343W"}), say=lambda s: None)
    assert again.stages["search"].status == "kept"
    assert again.stages["search"].bundle_hash == state["stages"]["search"]["bundle_hash"]
    assert again.stages["generate"].status == "ran"
    assert json.loads((out / "project/eenn/project.json").read_text())["kit"] == "CY8CPROTO-062-4343W"
    assert again.stages["hil"].ran == again.summary.n  # the project changed: the board runs again


def test_changed_search_options_are_not_served_from_the_old_bundle(deployed):
    from eenn.deploy import _search_config, _search_key, key_of

    opts, _, _ = deployed
    model, data = opts.model, opts.data

    def key(**change):
        config = search_config(**{"cache_dir": opts.search.cache_dir, **FAST, **change})
        return key_of(_search_key(model, data, _search_config(DeployOptions(out=opts.out, search=config))))

    base = key()
    for change in ({"w": 0.5}, {"latency": 1.0}, {"max_drop": 2.0}, {"seed": 1}, {"epochs": 4},
                   {"qat": 0.0}, {"exit_budget": 0.1}, {"hw": "rk3588-cloud"}, {"efficiency": "macs"},
                   {"clock_plan": "cm4-150"}, {"placement": "boundary"}, {"max_exits": 1}, {"feature_store": "int8"},
                   {"memory_limit": 1}, {"exit_width": 32}):
        assert key(**change) != base, change
    assert key(max_drop=1.0) == base  # the default, spelled out: the same search
    for same in ({"cache_dir": Path("/elsewhere")}, {"ray": "local:2"}):
        assert key(**same) == base, same


def test_refuses_a_directory_it_did_not_make(digits, tmp_path):
    model, data = digits
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(EennError, match="not made by `eenn deploy`.*--force"):
        deploy(DeployOptions(out=out, model=model, data=data, search=search_config(**FAST)), say=lambda s: None)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("kw, message", [
    ({"kit": "CY8CKIT-999"}, "unknown kit 'CY8CKIT-999'"),
    ({"example": "digits"}, "--example replaces MODEL and --data"),
    ({"data": None}, "--data DATA.npz is needed"),
    ({"port": "virtual:/tmp/x"}, "use --port virtual"),
])
def test_bad_inputs_fail_before_any_work(digits, tmp_path, kw, message):
    model, data = digits
    out = tmp_path / "run"
    with pytest.raises(EennError, match=re.escape(message)):
        deploy(DeployOptions(**{"out": out, "model": model, "data": data, "search": search_config(**FAST), **kw}),
               say=lambda s: None)
    assert not (out / "bundle").exists()


def test_cli_reports_errors_with_exit_code_2(tmp_path):
    r = CliRunner().invoke(main, ["deploy", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "give MODEL" in r.output
    r = CliRunner().invoke(main, ["deploy", "--help"])
    assert r.exit_code == 0 and "--example" in r.output and "--port" in r.output


def test_report_command_rebuilds_the_report(deployed, tmp_path):
    _, res, _ = deployed
    out = tmp_path / "r.html"
    r = CliRunner().invoke(main, ["report", str(res.bundle), "--project", str(res.project), "--session",
                                  str(res.session), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text() == res.report_html.read_text()  # plots embedded: the same file wherever it lies
    assert md_table(out.with_suffix(".md").read_text(), "Base model vs early-exit network") == \
        md_table(res.report_md.read_text(), "Base model vs early-exit network")
