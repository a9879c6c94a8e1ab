"""TEST-ONLY stand-in for `eenn generate`: a tiny two-stage int8 project in seconds.

Trains a small Keras CNN on synthetic 8x8 images (3 classes), cuts it into stage 0
(input -> [feature map, exit softmax]) and stage 1 (feature map -> final softmax), converts
each to full-int8 TFLite (batch-1 inputs, so no SHAPE/STRIDED_SLICE/PACK ops) and writes
`eenn/models/stage<i>.tflite` + `eenn/project.json` per docs/interfaces.md §3, using
`augment/quant.py` for threshold_q and the requantization constants. Variants:

- "plain":   stage 1 calibrated on stage 0's feature maps (same quantization: requant null);
- "requant": stage 1 calibrated on feature maps x 0.6, so its input quantization differs and
             the consumer requantizes (ratio > 1: left shift and saturation are exercised);
- "margin":  "plain"'s models with confidence = margin.

To be replaced by real `eenn generate` output once code generation lands. Built once per test
session (module-level memo, so every test module shares it).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from eenn.augment.quant import quantize_multiplier, threshold_q
from eenn.quiet_tf import quiet_log_level

VARIANTS = ("plain", "requant", "margin")
N_CLASSES = 3
SHAPE = (8, 8, 1)
TICK_HZ = (100_000_000, 150_000_000)
PREDICTED_S = (0.0021, 0.0047)
HANDOFF = {"link_s": 0.0004, "wakeup_s": 0.0003}
BUNDLE_HASH = "f1c7e0000000000000000000000000000000000000000000000000000000beef"

_built: dict[str, Path] = {}


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    x = rng.normal(0.0, 1.0, (n, *SHAPE)).astype(np.float32)
    # class k shifts the mean brightness by 0.6 k; a per-sample offset makes the classes
    # overlap, so the early exit is unsure on a good part of the samples
    x += (0.6 * y + rng.normal(0.0, 0.25, n)).astype(np.float32)[:, None, None, None]
    return x, y


def _convert(model, calib: np.ndarray) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([c[None]] for c in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def _details(tflite: bytes, n_outputs: int) -> tuple[dict, list[dict]]:
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(tflite)

    def q(d, index=None):
        qp = d["quantization_parameters"]
        out = {"shape": [int(s) for s in d["shape"]], "scale": float(qp["scales"][0]),
               "zero_point": int(qp["zero_points"][0])}
        if index is not None:
            out["output_index"] = index
        return out

    inp = q(interp.get_input_details(0))
    return inp, [q(interp.get_output_details(i), i) for i in range(n_outputs)]


def _stage0_scores(tflite: bytes, xq: np.ndarray, scores_index: int) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(tflite)
    out = []
    for x in xq:
        interp.set_input(x[None], 0)
        interp.invoke()
        out.append(np.asarray(interp.get_output(scores_index)).reshape(-1))
    return np.stack(out).astype(np.int8)


def _build(root: Path, seed: int = 0) -> dict[str, Path]:
    quiet_log_level("3")
    import keras

    from eenn.augment.quant import quantize

    keras.utils.set_random_seed(seed)
    x, y = _data(700, seed)
    x_test, y_test = _data(120, seed + 1)

    inp = keras.Input(SHAPE, batch_size=1)
    c1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")
    e_pool = keras.layers.GlobalAveragePooling2D(name="exit_pool")
    e_dense = keras.layers.Dense(N_CLASSES, activation="softmax", name="exit0")
    c2 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")
    f_pool = keras.layers.GlobalAveragePooling2D(name="final_pool")
    f_dense = keras.layers.Dense(N_CLASSES, activation="softmax", name="final")
    fm = c1(inp)
    exit_out = e_dense(e_pool(fm))
    final_out = f_dense(f_pool(c2(fm)))
    train = keras.Model(inp, [exit_out, final_out])
    train.compile(keras.optimizers.Adam(0.01), ["sparse_categorical_crossentropy"] * 2)
    train.fit(x, [y, y], epochs=6, batch_size=32, verbose=0)

    stage0 = keras.Model(inp, [fm, exit_out])
    fm_in = keras.Input(tuple(int(d) for d in fm.shape[1:]), batch_size=1)
    stage1 = keras.Model(fm_in, f_dense(f_pool(c2(fm_in))))

    calib = x[:100]
    t0 = _convert(stage0, calib)
    fm_calib = np.concatenate([stage0(c[None])[0].numpy() for c in calib])
    t1 = {"plain": _convert(stage1, fm_calib), "requant": _convert(stage1, fm_calib * 0.6)}

    in0, outs0 = _details(t0, 2)
    fm_idx = next(o for o in outs0 if len(o["shape"]) == 4)
    sc_idx = next(o for o in outs0 if o["shape"] == [1, N_CLASSES])
    xq = quantize(x_test, in0["scale"], in0["zero_point"])
    conf = {"max": _stage0_scores(t0, xq, sc_idx["output_index"])}
    s_sorted = np.sort(conf["max"].astype(np.int32), axis=1)
    median = {"max": int(np.median(s_sorted[:, -1])), "margin": int(np.median(s_sorted[:, -1] - s_sorted[:, -2]))}

    built = {}
    for variant in VARIANTS:
        d = root / variant
        models = d / "eenn" / "models"
        models.mkdir(parents=True, exist_ok=True)
        t1v = t1["requant" if variant == "requant" else "plain"]
        (models / "stage0.tflite").write_bytes(t0)
        (models / "stage1.tflite").write_bytes(t1v)
        in1, outs1 = _details(t1v, 1)
        confidence = "margin" if variant == "margin" else "max"
        scale, zp = sc_idx["scale"], sc_idx["zero_point"]
        # a threshold at the median confidence: about half of the test set exits early
        t = (median[confidence] - (zp if confidence == "max" else 0)) * scale
        requant = None
        if (fm_idx["scale"], fm_idx["zero_point"]) != (in1["scale"], in1["zero_point"]):
            m, s = quantize_multiplier(fm_idx["scale"] / in1["scale"])
            requant = {"multiplier": m, "shift": s, "in_zero_point": fm_idx["zero_point"],
                       "out_zero_point": in1["zero_point"]}
        manifest = {
            "schema_version": 1, "generator": "eenn tests/int8_project.py (test fixture)",
            "bundle_hash": BUNDLE_HASH, "kit": "CY8CKIT-062S2-43012", "num_classes": N_CLASSES,
            "confidence": confidence, "input": {k: in0[k] for k in ("shape", "scale", "zero_point")},
            "stages": [
                {"index": 0, "processor": "cm0p", "core": "cortex-m0plus", "model": "models/stage0.tflite",
                 "input": {k: in0[k] for k in ("shape", "scale", "zero_point")}, "requant": None,
                 "feature_map": fm_idx, "scores": sc_idx, "threshold": t,
                 "threshold_q": threshold_q(t, scale, zp, confidence),
                 "macs": 8 * 8 * 4 * 9 + 4 * N_CLASSES, "predicted_s": PREDICTED_S[0], "tick_hz": TICK_HZ[0],
                 "arena_bytes": 0, "weights_bytes": 0, "ops": []},
                {"index": 1, "processor": "cm4", "core": "cortex-m4", "model": "models/stage1.tflite",
                 "input": {k: in1[k] for k in ("shape", "scale", "zero_point")}, "requant": requant,
                 "feature_map": None, "scores": outs1[0], "threshold": None, "threshold_q": None,
                 "macs": 8 * 8 * 8 * 36 + 8 * N_CLASSES, "predicted_s": PREDICTED_S[1], "tick_hz": TICK_HZ[1],
                 "arena_bytes": 0, "weights_bytes": 0, "ops": [], "handoff": dict(HANDOFF)},
            ],
            "energy": {"active_w": [0.019, 0.032], "sleep_w": [0.0005, 0.0005]},
            "base": None,
        }
        (d / "eenn" / "project.json").write_text(json.dumps(manifest, indent=2) + "\n")
        np.savez(d / "fixture_test.npz", x=x_test, y=y_test)  # test-only: the samples to send
        built[variant] = d
    return built


def int8_project(tmp_path_factory, variant: str = "plain") -> Path:
    """The project directory of `variant`, built once per session."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    if not _built:
        root = tmp_path_factory.mktemp("int8_project")
        _built.update(_build(root))
    return _built[variant]


def copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
