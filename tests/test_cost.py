"""Cost model: latency, energy and memory follow from MACs and the profile."""
import json

import pytest

from eenn.augment.analysis import analyze_model
from eenn.augment.block_graph import build_block_graph
from eenn.augment.cost import CostModel, Measured, StageLoad
from eenn.augment.hardware import load_profile
from eenn.augment.layer_graph import build_layer_graph
from eenn.errors import EennError
from tests import models


@pytest.fixture(scope="module")
def psoc6():
    return load_profile("psoc6")


def test_whole_model_latency_is_macs_over_rate(ds_cnn_path, psoc6):
    a = analyze_model(ds_cnn_path, psoc6)
    total = a.block_graph.total_macs
    for i, p in enumerate(psoc6.processors):
        latency, energy = a.whole_model_on(i)
        assert latency == pytest.approx(total / p.macs_per_s)
        other_sleep = sum(q.sleep_w for j, q in enumerate(psoc6.processors) if j != i)
        assert energy == pytest.approx(latency * (p.active_w + other_sleep))
    # the default plan runs the CM4F at 100 MHz: its MAC rate is the 150 MHz figure scaled by 100/150
    cm4_150 = load_profile("psoc6", "cm4-150")
    assert psoc6.processors[1].macs_per_s == pytest.approx(cm4_150.processors[1].macs_per_s * 100 / 150, rel=1e-12)
    # the paper's own arithmetic (~28.3 M MACs at 75 MMAC/s on a 150 MHz CM4F) holds under cm4-150 only
    assert analyze_model(ds_cnn_path, cm4_150).whole_model_on(1)[0] == pytest.approx(0.3777, abs=1e-3)


def test_cascade_latency_and_energy_accumulate(psoc6):
    bg = build_block_graph(build_layer_graph(models.cnn2d()))
    cm = CostModel(psoc6)
    cut = bg.candidates[0]
    first = tuple(bg.blocks[: cut.block + 1])
    rest = tuple(bg.blocks[cut.block + 1:]) + (bg.head,)
    stages = [StageLoad(0, first, exit_macs=1000, exit_layers=3, out_bytes=cut.activation_bytes),
              StageLoad(1, rest)]
    cost = cm.mapping(stages)
    r0, r1 = (p.macs_per_s for p in psoc6.processors)
    s0 = sum(b.macs for b in first) / r0 + 1000 / r0
    s1 = sum(b.macs for b in rest) / r1
    link = psoc6.links[0]
    handoff = link.latency_s + cut.activation_bytes / link.bytes_per_s + psoc6.processors[1].wakeup_s
    assert cost.stage_s == pytest.approx([s0, s1])
    assert cost.latency_s == pytest.approx([s0, s0 + handoff + s1])
    assert cost.worst_latency_s == cost.latency_s[-1]
    assert cost.energy_j[0] == pytest.approx(s0 * cm.active_power_w(0))
    assert cost.energy_j[1] > cost.energy_j[0] + s1 * cm.active_power_w(1)
    mean_t, _ = cost.mean([0.75, 0.25])
    assert mean_t == pytest.approx(0.75 * cost.latency_s[0] + 0.25 * cost.latency_s[1])
    assert cost.fits_memory


def test_memory_violation_is_explained(psoc6):
    bg = build_block_graph(build_layer_graph(models.cnn2d()))
    huge = bg.blocks[0].__class__(**{**bg.blocks[0].__dict__, "param_bytes": 3 << 20})
    cost = CostModel(psoc6).mapping([StageLoad(0, (huge,))])
    assert not cost.fits_memory
    assert "shared flash" in cost.violations[0]


def test_measured_numbers_replace_estimates(tmp_path, psoc6):
    bg = build_block_graph(build_layer_graph(models.cnn2d()))
    path = tmp_path / "measured.json"
    path.write_text(json.dumps({"processors": {"cm0p": {"macs_per_s": 5e6, "block_s": {bg.blocks[0].name: 0.5}}}}))
    cm = CostModel(psoc6, Measured.load(path))
    assert cm.block_s(bg.blocks[0], 0) == 0.5
    assert cm.block_s(bg.blocks[1], 0) == pytest.approx(bg.blocks[1].macs / 5e6)
    assert cm.block_s(bg.blocks[1], 1) == pytest.approx(bg.blocks[1].macs / psoc6.processors[1].macs_per_s)


@pytest.mark.parametrize("body,message", [
    ("not json", "not a readable JSON measurement file"),
    ({"cm0p": {"macs_per_s": 1e6}}, "expected an object with 'processors'"),
    ({"processors": {"cm0p": {"macs_per_s": -5}}}, "processors.cm0p.macs_per_s = -5: expected a positive number"),
    ({"processors": {"cm0p": {"macs_per_s": "fast"}}}, "processors.cm0p.macs_per_s = 'fast': expected a number"),
    ({"processors": {"cm0p": {"layer_overhead_s": -1e-5}}}, "layer_overhead_s = -1e-05: expected a non-negative"),
    ({"processors": {"cm0p": {"block_s": {"conv": -0.1}}}}, "block_s.conv = -0.1: expected a non-negative"),
    ({"processors": {"cm0p": {"block_s": [0.1]}}}, "processors.cm0p.block_s: expected an object"),
    ({"processors": {"cm0p": {"mac_per_s": 1e6}}}, "unknown field(s) mac_per_s"),
    ({"processors": {"cm0": {"macs_per_s": 1e6}}}, "processors.cm0: no such processor in profile 'psoc6' "
                                                   "(expected one of cm0p, cm4)"),
])
def test_bad_measurement_files_name_the_file_and_field(tmp_path, psoc6, body, message):
    path = tmp_path / "measured.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    with pytest.raises(EennError) as e:
        CostModel(psoc6, Measured.load(path))
    assert str(path) in str(e.value) and message in str(e.value)


def test_a_measured_block_the_model_lacks_is_refused(tmp_path, psoc6):
    from click.testing import CliRunner

    from eenn.cli import main

    model = tmp_path / "m.keras"
    models.cnn2d().save(model)
    path = tmp_path / "measured.json"
    path.write_text(json.dumps({"processors": {"cm4": {"block_s": {"no_such_block": 0.1}}}}))
    r = CliRunner().invoke(main, ["analyze", str(model), "--measured", str(path)])
    assert r.exit_code == 2 and "processors.cm4.block_s: no block(s) no_such_block in this model" in r.output
