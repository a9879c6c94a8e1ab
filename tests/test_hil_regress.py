"""`eenn hil regress`: fails on a degraded comparison, passes on an equal one, JUnit XML that validates."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from eenn.cli import main
from eenn.errors import EennError
from eenn.hil.regress import compare, load_tolerances, parse_tol_option
from eenn.hil.summary import Summary, read_summary
from tests.hil_fixture import hil_session

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
XSD = etree.XMLSchema(etree.parse(str(Path(__file__).parent / "data" / "junit.xsd")))


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return hil_session(tmp_path_factory)


def _summary(session) -> dict:
    return json.loads((session / "summary.json").read_text())


def _typed(d: dict) -> Summary:
    return Summary.from_document(d, "summary.json")


def _junit(path: Path):
    doc = etree.parse(str(path))
    XSD.assertValid(doc)
    return doc


def _regress(*args):
    return CliRunner().invoke(main, ["hil", "regress", *map(str, args)])


def test_equal_baseline_passes_and_junit_validates(session, tmp_path):
    base = tmp_path / "baseline.json"
    res = _regress(session, "--baseline", base, "--update-baseline")
    assert res.exit_code == 0, res.output
    assert json.loads(base.read_text()) == _summary(session)
    res = _regress(session, "--baseline", base, "--junit", tmp_path / "j.xml")
    assert res.exit_code == 0, res.output
    assert "REGRESSION" not in res.output and "within tolerance" in res.output
    assert res.output.splitlines()[0].split() == ["metric", "baseline", "now", "tolerance", "status"]
    doc = _junit(tmp_path / "j.xml")
    suite = doc.getroot().find("testsuite")
    assert suite.get("failures") == "0" and int(suite.get("tests")) >= 15
    names = [tc.get("name") for tc in suite.iter("testcase")]
    assert "accuracy" in names and "exit1.p99_latency_s" in names and "termination_rates[0]" in names


def test_degraded_comparison_fails_with_table_and_junit_failures(session, tmp_path):
    base = _summary(session)
    m = base["metrics"]
    m["accuracy"]["measured"] += 0.05  # the baseline was better: accuracy dropped by 0.05
    m["p99_latency_s"]["measured"] *= 0.8  # and was faster: p99 rose by 25 %
    m["termination_rates"]["measured"] = [m["termination_rates"]["measured"][0] + 0.01,
                                          m["termination_rates"]["measured"][1] - 0.01]  # within 0.02
    (tmp_path / "b.json").write_text(json.dumps(base))
    res = _regress(session, "--baseline", tmp_path / "b.json", "--junit", tmp_path / "j.xml")
    assert res.exit_code == 1, res.output
    rows = {line.split()[0]: line for line in res.output.splitlines() if line and not line.startswith("-")}
    assert rows["accuracy"].endswith("REGRESSION") and rows["p99_latency_s"].endswith("REGRESSION")
    assert rows["termination_rates[0]"].endswith("ok") and rows["mean_latency_s"].endswith("ok")
    assert "accuracy dropped from" in res.output
    doc = _junit(tmp_path / "j.xml")
    failed = {tc.get("name"): tc.find("failure") for tc in doc.iter("testcase") if tc.find("failure") is not None}
    assert set(failed) == {"accuracy", "p99_latency_s"}
    assert "dropped" in failed["accuracy"].get("message")
    assert doc.getroot().find("testsuite").get("failures") == "2"
    # a wider tolerance from the command line or a file accepts the same numbers
    assert _regress(session, "--baseline", tmp_path / "b.json", "--tol", "accuracy=0.06",
                    "--tol", "p99_latency_s=30%").exit_code == 0
    (tmp_path / "tol.toml").write_text('[default]\nlatency_rel = 0.3\n[metrics.accuracy]\nabs = 0.06\n')
    assert _regress(session, "--baseline", tmp_path / "b.json", "--tolerances", tmp_path / "tol.toml").exit_code == 0


def test_improvement_is_not_a_regression_but_a_changed_rate_is(session):
    now = _summary(session)
    better = json.loads(json.dumps(now))
    better["metrics"]["accuracy"]["measured"] -= 0.1  # baseline worse: now improved
    rows = {r.metric: r for r in compare(_typed(better), _typed(now))}
    assert rows["accuracy"].status == "improved" and not rows["accuracy"].failed
    moved = json.loads(json.dumps(now))
    moved["metrics"]["termination_rates"]["measured"][0] += 0.1  # either direction counts for rates
    assert compare(_typed(moved), _typed(now))[[r.metric for r in compare(_typed(moved), _typed(now))].index("termination_rates[0]")].failed


def test_missing_metric_and_incomplete_session_fail(session, tmp_path):
    now = _summary(session)
    base = json.loads(json.dumps(now))
    base["metrics"]["custom_metric"] = {"measured": 1.0}
    rows = {r.metric: r for r in compare(_typed(base), _typed(now))}
    assert rows["custom_metric"].status == "missing" and rows["custom_metric"].failed
    partial = {**now, "complete": False, "n": 3}
    assert any(r.metric == "complete" and r.failed for r in compare(_typed(now), _typed(partial)))
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    res = _regress(tmp_path / "partial.json", "--baseline", tmp_path / "new.json", "--update-baseline")
    assert res.exit_code == 2 and "incomplete" in res.output


def test_tolerance_inputs_are_checked(tmp_path):
    assert parse_tol_option("accuracy=5%") == ("accuracy", {"rel": 0.05, "abs": 0.0})
    assert parse_tol_option("mean_energy_j=skip") == ("mean_energy_j", {"skip": True})
    for bad in ("accuracy", "accuracy=fast", "accuracy=-1"):
        with pytest.raises(EennError, match="--tol"):
            parse_tol_option(bad)
    p = tmp_path / "t.toml"
    p.write_text("[metrics.accuracy]\nabsolute = 0.1\n")
    with pytest.raises(EennError, match="metrics.accuracy.absolute: unknown"):
        load_tolerances(p)
    p.write_text("[defaults]\n")
    with pytest.raises(EennError, match="unknown table"):
        load_tolerances(p)


def test_missing_baseline_says_how_to_create_it(session, tmp_path):
    res = _regress(session, "--baseline", tmp_path / "none.json")
    assert res.exit_code == 2 and "--update-baseline" in res.output


def test_a_baseline_of_another_model_is_refused_unless_allowed(session, tmp_path):
    base = _summary(session)
    base["bundle_hash"] = "f" * 64  # the accepted numbers of another solution
    p = tmp_path / "baseline.json"
    p.write_text(json.dumps(base))
    now_hash = _summary(session)["bundle_hash"]
    res = _regress(session, "--baseline", p)
    assert res.exit_code == 2, res.output
    assert f"baseline bundle {'f' * 64}, this session's bundle {now_hash}" in res.output
    assert "--allow-other-model" in res.output and "within tolerance" not in res.output
    res = _regress(session, "--baseline", p, "--allow-other-model")
    assert res.exit_code == 0, res.output
    assert "comparing different solutions on purpose" in res.output and "within tolerance" in res.output


def test_summary_reader_ignores_new_keys_and_names_a_missing_field(session, tmp_path):
    doc = _summary(session)
    s = read_summary(session)
    assert s.n == doc["n"] and s.bundle_hash == doc["bundle_hash"] and s.document == doc
    assert s.metric("accuracy").measured == doc["metrics"]["accuracy"]["measured"]
    assert [p.latency_s.p99 for p in s.paths] == [p["latency_s"]["p99"] for p in doc["paths"]]
    assert s.metric("no_such_metric").measured is None
    newer = json.loads(json.dumps(doc))  # a newer eenn adds keys at every level: still read
    newer["board_temperature_c"] = 31.5
    newer["metrics"]["board_temperature_c"] = 31.5  # a metric of another shape: not ours, skipped
    newer["metrics"]["accuracy"]["confidence_interval"] = [0.9, 0.95]
    newer["paths"][0]["latency_s"]["p999"] = 1.0
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    assert read_summary(tmp_path / "newer.json") == s
    broken = json.loads(json.dumps(doc))
    del broken["paths"][1]["energy_j"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(EennError, match=r"broken.json: paths\[1\] lacks the field 'energy_j'"):
        read_summary(tmp_path / "broken.json")
    (tmp_path / "future.json").write_text(json.dumps({**doc, "schema_version": 2}))
    with pytest.raises(EennError, match="future.json: schema_version 2"):
        read_summary(tmp_path / "future.json")
