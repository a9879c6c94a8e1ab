"""DS-CNN-L (MLPerf Tiny keyword spotting) cut after its first depthwise-separable block
(`conv_ds_1_pw_relu`) with a small exit trained on the frozen features: the generated project's
int8 chain equals the whole int8 EENN on every test sample, and int8 accuracy stays within one
point of the float EENN."""
from __future__ import annotations

import json

import numpy as np
import pytest

from eenn.augment.quant import dequantize, quantize
from tests.bundles import float_eenn, median_threshold, split_chain, train_exit, write_test_bundle

pytestmark = [pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")]

CUT = "conv_ds_1_pw_relu"


@pytest.fixture(scope="module")
def dscnn(ds_cnn_path, shared_data, tmp_path_factory):
    from eenn.augment.model_io import load_model

    data_path = shared_data / "kws" / "speech_commands_mfcc_1000.npz"
    if not data_path.is_file():
        pytest.skip(f"{data_path} not found")
    d = np.load(data_path)
    x, y = d["mfcc"].astype(np.float32), d["y_arm"].astype(np.int64)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))
    train, val, test = idx[:400], idx[400:500], idx[500:]
    base = load_model(ds_cnn_path)
    segments = split_chain(base, [CUT])
    ex = train_exit(segments[0], x[train], y[train], 12, "exit_0", epochs=30)
    thr = [median_threshold(ex, segments[0], x[val], 0.7)]  # about 30 % of unseen samples exit early
    root = tmp_path_factory.mktemp("dscnn")
    h = write_test_bundle(root / "bundle", base, segments, [ex], thr, x[train[:200]], x[test], y[test], cuts=[CUT],
                          source=str(ds_cnn_path))
    from eenn.codegen.generate import generate

    res = generate(root / "bundle", "CY8CKIT-062S2-43012", root / "project")
    return {"res": res, "segments": segments, "exits": [ex], "thresholds": thr, "x": x[test], "y": y[test],
            "hash": h}


def test_dscnn_chain_equals_whole_int8_eenn_and_accuracy(dscnn):
    res = dscnn["res"]
    ref = json.loads((res.out / "eenn/reference.json").read_text())
    n = len(dscnn["y"])
    assert ref["whole_eenn"] == {"n": n, "same_class": n, "same_exit": n}
    cls, _ = float_eenn(dscnn["segments"], dscnn["exits"], dscnn["thresholds"], dscnn["x"])
    float_acc = float(np.mean(cls == dscnn["y"]))
    assert float_acc > 0.8
    # The board receives int8 MFCCs (scale ~1.09: the first coefficient spans about -250..40), which
    # can cost DS-CNN-L points on its own, base model included. So two bounds: against the float
    # EENN fed the same int8 input (dequantized), which isolates what codegen's subgraphs control,
    # and against the float EENN itself, the one point.
    inp = res.manifest.input
    xq = dequantize(quantize(dscnn["x"], inp.scale, inp.zero_point), inp.scale, inp.zero_point)
    cls_q, _ = float_eenn(dscnn["segments"], dscnn["exits"], dscnn["thresholds"], xq)
    float_q_acc = float(np.mean(cls_q == dscnn["y"]))
    assert abs(ref["accuracy"] - float_q_acc) <= 0.01 + 1e-9, (ref["accuracy"], float_q_acc)
    assert abs(ref["accuracy"] - float_acc) <= 0.01 + 1e-9, (ref["accuracy"], float_acc)  # the bound
    assert 0.1 < ref["termination_rates"][0] < 0.6, ref["termination_rates"]
    m = res.manifest
    assert m.firmware.model_id == "kws01"
    assert m.stages[0].feature_map.shape == [1, 13, 5, 276]
    # what the CM0+ holds: stage 0 model + arena + stack inside its region
    lay = res.layout
    assert lay.cm0p.ram.size >= m.stages[0].arena_bytes + lay.cm0p.stack_bytes + m.input.size
    print("\nDS-CNN-L:", {"int8": ref["accuracy"], "float": float_acc, "float_int8_input": float_q_acc,
                          "base_int8": ref["base_accuracy"],
                          "termination": ref["termination_rates"], "arena": [s.arena_bytes for s in m.stages],
                          "measured": [s.arena_measured for s in res.sizes], "seconds": round(res.seconds, 1)})
