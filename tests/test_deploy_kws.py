"""`eenn deploy` on the KWS example (DS-CNN-L, examples/kws.py's split of the 1,000 Speech
Commands clips): the virtual board's accuracy and termination rates equal the int8 prediction
exactly, and the deploy output and report say so. Exits train briefly (the agreement does not
depend on how good they are)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from eenn.augment.commands import search_config
from eenn.deploy import DeployOptions, agreement_lines, deploy

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kws_deploy(shared_data, ds_cnn_path, tmp_path_factory):
    sys.path.insert(0, str(REPO / "examples"))
    import kws

    root = tmp_path_factory.mktemp("kws_deploy")
    data = kws.make_dataset(shared_data / "kws", root / "kws_split.npz")
    lines: list[str] = []
    # eenn's defaults: exits anywhere (here, stages on one core), energy within 1 point
    search = search_config(latency=2.5, exit_budget=kws.EXIT_BUDGET, epochs=4, copies=1, cache_dir=root / "cache")
    res = deploy(DeployOptions(out=root / "deploy", model=ds_cnn_path, data=data, search=search),
                 say=lines.append)
    return res, lines


def test_kws_board_equals_the_int8_prediction_exactly(kws_deploy):
    res, lines = kws_deploy
    m = res.summary.document["metrics"]
    assert res.summary.n == 300
    assert m["accuracy"]["measured"] == m["accuracy"]["reference"]
    assert m["early_termination"]["measured"] == m["early_termination"]["reference"]
    assert m["termination_rates"]["measured"] == m["termination_rates"]["reference"]
    assert m["reference_agreement"]["measured"] == 1.0
    sol = json.loads((res.bundle / "solution.json").read_text())
    assert sol["exits"], "the KWS search keeps an exit at the 2.5 s bound"
    # what the user reads: the deploy's closing lines and the report's validation table
    acc = f"{100 * m['accuracy']['measured']:.2f} %"
    said = agreement_lines(res.summary)  # what `eenn deploy` prints last
    assert said[0].startswith(f"accuracy: board {acc}, int8 prediction {acc}")
    assert said[-1] == "board and int8 prediction agree (class and exit) on 100.00 % of the samples"
    assert any(ln.startswith("[3/4] HIL") for ln in lines)
    md = res.report_md.read_text()
    row = next(ln for ln in md.split("## Predicted vs measured")[1].splitlines() if ln.startswith("| Accuracy |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == cells[3] == acc
