"""Int8-true scoring (augment/int8_scoring.py): the scores the search chooses on are the integers
codegen's reference chain (and so the board) computes, sample by sample; `--scoring float`
keeps the float behaviour; converted exits are cached."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eenn.augment import int8_scoring as I8
from eenn.augment.features import AugmentConfig
from eenn.augment.search import _predictions, run_search
from eenn.augment.search_config import SearchConfig
from eenn.augment.training import TrainConfig

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")

PROJECTS = {"digits_project": "digits_bundle", "ecg_project": "ecg_bundle"}


def _chain_scores(project: Path, x: np.ndarray) -> list[np.ndarray]:
    """Every stage's int8 scores on every sample, run as the firmware runs the stages (stage 1
    on stage 0's feature map, requantized where the manifest says), whatever the exit decision."""
    from eenn.augment.quant import requantize
    from eenn.codegen.reference import Int8Chain

    chain = Int8Chain(project)
    out = [[] for _ in chain.manifest.stages]
    for xi in x:
        data = chain.quantize_input(xi).reshape(-1)
        for k, stage in enumerate(chain.manifest.stages):
            if stage.requant is not None:
                r = stage.requant
                data = requantize(data, r.multiplier, r.shift, r.in_zero_point, r.out_zero_point)
            scores, fm = chain._invoke(k, data)
            out[k].append(scores)
            data = fm
    return [np.stack(o) for o in out]


def _micro_scores(tflite: bytes, x: np.ndarray) -> list[np.ndarray]:
    """The scoring model's outputs on the TFLite Micro runtime (the virtual board's kernels)."""
    from tflite_micro.python.tflite_micro import runtime

    from eenn.augment.quant import quantize
    from eenn.augment.tflite_model import TfliteModel

    tm = TfliteModel(tflite)
    order = tm.output_order()
    micro = runtime.Interpreter.from_bytes(tflite)
    q = tm.inputs[0]
    out = [[] for _ in order]
    for xi in x:
        micro.set_input(quantize(xi.reshape(q.shape), q.scale, q.zero_point), 0)
        micro.invoke()
        for k in range(len(order)):
            out[k].append(np.asarray(micro.get_output(order[k])).reshape(-1).astype(np.int8))
    return [np.stack(o) for o in out]


@pytest.mark.parametrize("project_fixture", list(PROJECTS))
def test_int8_scores_are_the_reference_chains(request, project_fixture):
    """2-D (digits CNN) and 1-D (Conv1D) bundles. The search's one int8 model of backbone + exit,
    calibrated on the bundle's calibration.npz, run on TFLite Micro, gives every stage's int8
    scores of the generated project exactly: the graph and its quantization are the chain's.
    On tf.lite's builtin kernels (what the search runs: 10-20x faster than the reference kernels) FULLY_CONNECTED rounds a
    requantized value the other way now and then (1 LSB, seen on ~1 % of the 1-D samples), which
    moves a few softmax scores by a few 1/256: stated tolerance 1 % of the scores, 8/256 each, and
    every sample's class and exit identical."""
    import keras

    from eenn.augment.bundle import load_bundle
    from eenn.augment.layer_graph import build_layer_graph
    from eenn.codegen.subgraphs import load_calibration

    res = request.getfixturevalue(project_fixture)
    info = request.getfixturevalue(PROJECTS[project_fixture])
    bundle = info["path"]
    sol = json.loads((bundle / "solution.json").read_text())
    base = keras.models.load_model(bundle / "base.keras", compile=False)
    exit0 = keras.models.load_model(bundle / "exit_0.keras", compile=False)
    loc = sol["exits"][0]["after_layer"]
    x = info["x_test"]

    tflite = I8.convert(I8.scoring_model(base, build_layer_graph(base), {loc: exit0}, logits=False),
                        load_calibration(load_bundle(bundle)))
    chain = _chain_scores(res.out, x)
    micro = _micro_scores(tflite, x)
    ours = I8.run_int8(tflite, x)
    for k in range(2):
        np.testing.assert_array_equal(micro[k], chain[k], err_msg=f"stage {k}: graph or quantization differs")
        diff = np.abs(ours[k].astype(int) - chain[k].astype(int))
        assert np.mean(diff > 0) <= 0.01 and diff.max() <= 8, f"stage {k}: {int(np.sum(diff > 0))} scores differ"

    # the decisions: the bundle's threshold on the dequantized scores = reference.json, per sample
    probs = I8.dequantized(tflite, ours)
    t = sol["exits"][0]["threshold"]
    here = probs[0].max(1) >= t
    cls = np.where(here, probs[0].argmax(1), probs[1].argmax(1))
    ref = json.loads((res.out / "eenn" / "reference.json").read_text())["samples"]
    np.testing.assert_array_equal(cls, [s["class"] for s in ref])
    np.testing.assert_array_equal(np.where(here, 0, 1), [s["exit"] for s in ref])


# ------------------------------------------------------------------ the search with int8 scores
def _config(cache: Path, **kw) -> SearchConfig:
    return SearchConfig(latency_bound_s=2.5, seed=0, cache_dir=cache, train=TrainConfig(epochs=3),
                        augment=AugmentConfig(copies=1), **kw)


@pytest.fixture(scope="module")
def searches(trained_digits, tmp_path_factory):
    """The digits search scored on int8 (twice, one cache) and on float, with conversions counted."""
    model, data = trained_digits
    cache = tmp_path_factory.mktemp("int8cache")
    calls = []
    real = I8.convert

    def counting(m, calibration):
        calls.append(m.name)
        return real(m, calibration)

    mp = pytest.MonkeyPatch()
    mp.setattr(I8, "convert", counting)
    try:
        first = run_search(model, data, _config(cache))
        n_first = len(calls)
        second = run_search(model, data, _config(cache))
        n_second = len(calls) - n_first
        flt = run_search(model, data, _config(cache, scoring="float"))
        n_float = len(calls) - n_first - n_second
    finally:
        mp.undo()
    return {"first": first, "second": second, "float": flt, "conversions": (n_first, n_second, n_float),
            "cache": cache}


def test_second_search_converts_nothing(searches):
    first, second = searches["first"], searches["second"]
    assert searches["conversions"] == (1, 0, 0)
    assert first.stats["int8_conversions"] == 1 and second.stats["int8_conversions"] == 0
    live = [c for c in first.exits if not first.exits[c].aborted]
    assert second.stats["int8_from_cache"] == len(live) + 1  # every exit and the final classifier
    for s in ("cal", "test"):
        for k, p in first.probs[s].items():
            np.testing.assert_array_equal(second.probs[s][k], p)
    assert second.solution.metrics == first.solution.metrics


def test_int8_scores_sit_on_the_int8_grid_and_float_scoring_keeps_the_float_ones(searches):
    first, flt = searches["first"], searches["float"]
    for s in ("cal", "test"):
        for c, ex in flt.exits.items():
            if ex.aborted:
                continue
            np.testing.assert_array_equal(flt.probs[s][ex.location], ex.probs[s])  # float: the trained softmax
            q = first.probs[s][ex.location] * 256
            np.testing.assert_array_equal(q, np.round(q))  # int8: k/256
    assert flt.solution.metrics["scoring"] == "float" and first.solution.metrics["scoring"] == "int8"
    assert "int8_conversions" not in flt.stats
    m = flt.solution.metrics
    assert m["eenn"]["accuracy"] == m["float"]["eenn"]["accuracy"] == m["eenn"]["float_accuracy"]
    assert m["base"]["accuracy"] == m["float"]["base_accuracy"]


def test_predicted_int8_accuracy_is_the_written_bundles_reference_accuracy(searches, tmp_path):
    """The search's int8 prediction per sample = `eenn generate`'s reference chain on the bundle it
    writes: same class and same exit on every test sample, so the same accuracy exactly."""
    from eenn.augment.solution import write_result
    from eenn.codegen.generate import generate

    r = searches["first"]
    write_result(r, tmp_path / "bundle")
    res = generate(tmp_path / "bundle", "CY8CKIT-062S2-43012", tmp_path / "project")
    ref = res.reference
    thresholds = tuple(e.threshold for e in r.solution.exits)
    pred, stage = _predictions(r.chosen.arch, r.block_graph, r.probs["test"], r.probs["test"]["final"], thresholds,
                               "max")
    np.testing.assert_array_equal(pred, [s.cls for s in ref.samples])
    np.testing.assert_array_equal(stage, [s.exit for s in ref.samples])
    assert r.solution.metrics["eenn"]["accuracy"] == ref.accuracy
    assert r.solution.metrics["eenn"]["termination_rates"] == ref.termination_rates
    assert r.solution.metrics["base"]["accuracy"] == ref.base_accuracy
    # the float figure is the one generate reports as float_accuracy
    assert r.solution.metrics["float"]["eenn"]["accuracy"] == pytest.approx(ref.float_accuracy, abs=1e-9)


def test_scoring_is_an_option_of_search_and_deploy(tmp_path):
    from click.testing import CliRunner

    from eenn.cli import main
    from eenn.augment.commands import search_config
    from eenn.deploy import DeployOptions, _search_config, _search_key
    from eenn.errors import EennError

    with pytest.raises(EennError, match="scoring 'bogus'"):
        SearchConfig(scoring="bogus").checked()
    for cmd in ("search", "deploy"):
        r = CliRunner().invoke(main, [cmd, "--help"])
        assert "--scoring [int8|float]" in r.output
    model, data = tmp_path / "m.keras", tmp_path / "d.npz"
    model.write_bytes(b"m")
    data.write_bytes(b"d")
    configs = [_search_config(DeployOptions(out=tmp_path, search=search_config(scoring=s))) for s in ("int8", "float")]
    assert _search_key(model, data, configs[0]) != _search_key(model, data, configs[1])  # the other scoring: searched again
    assert configs[1].scoring == "float"
