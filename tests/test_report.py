"""The end-to-end report from a bundle, its generated project and a HIL session."""
import json
import re

import pytest

from eenn.errors import EennError
from eenn.report import ReportSources, paper_table, write_report
from tests.hil_fixture import HilPair, project_of_another_bundle
from tests.hil_fixture import hil_pair as build_hil_pair


@pytest.fixture(scope="module")
def hil_pair(tmp_path_factory) -> HilPair:
    return build_hil_pair(tmp_path_factory)


@pytest.fixture(scope="module")
def hil_session(hil_pair, tmp_path_factory):
    """A virtual-board run of the pair, with its plots."""
    from eenn.hil.run import RunOptions, run

    out = tmp_path_factory.mktemp("report_session") / "session"
    run(RunOptions(port="virtual", out=out, bundle=hil_pair.bundle, project=hil_pair.project, progress=False))
    return out


def test_paper_table_has_every_cell_and_signed_deltas():
    m = {"base": {"accuracy": 0.9, "precision": 0.8, "recall": 0.85, "mean_macs": 1e6, "mean_latency_s": 0.1,
                  "worst_latency_s": 0.1, "mean_energy_j": 0.002},
         "eenn": {"accuracy": 0.88, "precision": 0.81, "recall": 0.8, "mean_macs": 4e5, "mean_latency_s": 0.06,
                  "worst_latency_s": 0.12, "mean_energy_j": 0.001, "early_termination": 0.7}}
    rows = paper_table(m)
    assert [r["metric"] for r in rows] == ["Accuracy", "Precision", "Recall", "Mean MACs", "Mean latency",
                                           "Worst-case latency", "Mean energy", "Early termination"]
    for r in rows:
        assert all(r[k] and r[k] != "n/a" for k in ("base", "eenn", "delta")), r
    assert rows[0]["delta"] == "-2.00 pts"
    assert rows[3]["delta"] == "-60.00 %" and rows[3]["eenn"] == "400 k"
    assert rows[-1] == {"metric": "Early termination", "base": "0.00 %", "eenn": "70.00 %", "delta": "+70.00 pts"}


def test_report_from_bundle_project_and_session(hil_pair, hil_session, tmp_path):
    html, md = tmp_path / "report.html", tmp_path / "report.md"
    ctx = write_report(ReportSources(hil_pair.bundle, hil_pair.project, hil_session), html, md)
    text = html.read_text()
    assert text.startswith("<!DOCTYPE html>") and hil_pair.bundle_hash in text
    # the paper-style table: no empty cell
    table = text.split("Base model vs early-exit network")[1].split("</table>")[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", table)
    # (this hand-made project has no int8 base model: no int8 row, rather than a guessed one)
    assert len(cells) == 8 * 4 and all(c.strip() for c in cells)
    assert not any(r["metric"].startswith("Accuracy, int8") for r in ctx["paper"])
    # search (float) vs int8 prediction vs board: the board agrees with the int8 chain
    summary = json.loads((hil_session / "summary.json").read_text())
    acc = summary["metrics"]["accuracy"]
    row = next(r for r in ctx["validation"] if r["metric"] == "Accuracy")
    assert row["measured"] == row["reference"] == f"{100 * acc['measured']:.2f} %"
    assert "not a hardware" in text  # the virtual board's timing is labelled as such
    # plots are embedded, not linked
    assert text.count("data:image/png;base64,") >= 2
    assert "make program" in text and str(hil_pair.project) in text
    md_text = md.read_text()
    assert "| Accuracy |" in md_text and "](" in md_text


def test_report_refuses_a_project_of_another_bundle(hil_pair, tmp_path):
    other = project_of_another_bundle(hil_pair.project, tmp_path / "project", "f" * 64)
    with pytest.raises(EennError, match="was generated from bundle ffffffffffff, not from .*eenn generate"):
        write_report(ReportSources(hil_pair.bundle, other), tmp_path / "r.html")
