"""Per-processor Keras sub-models from a solution bundle, converted to full-integer int8 TFLite.

Stage k (processor k) runs `segment_k` and, except on the last processor, `exit_k` on the
segment's output:

    stage 0:      model input   → [feature map 0, exit 0 softmax]
    stage k:      feature map k−1 → [feature map k, exit k softmax]
    last stage:   feature map k−1 → final softmax

Every sub-model is built with `batch_size=1` inputs (no SHAPE/STRIDED_SLICE/PACK ops from a
dynamic batch) and converted with `TFLITE_BUILTINS_INT8`, int8 input and outputs. Stage 0's
representative set is the bundle's calibration data; stage k's is the float feature map that
segments 0..k−1 produce from it, so each tensor's range is calibrated on the same samples as in
the whole network.

The feature map crossing processors. The producer's output and the consumer's input are
calibrated separately on the same values (once inside TFLite's float kernels, once from Keras),
so their scales agree to a few float rounding steps, not always bit for bit. When they agree to
`ALIGN_RTOL` and the zero points are equal, the consumer's input tensor is given the producer's
exact (scale, zero point): its kernels then compute with the scale the data really has, and the
firmware copies the feature map as it is. Otherwise the consumer requantizes with constants
computed here (`codegen/quant.py`, docs/interfaces.md "Integer rules").

The whole EENN as one int8 model (input → [exit 0 … exit n−2, final]) and the base model alone
are converted the same way: the first is the oracle the per-processor chain is checked against,
the second is the comparison point.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eenn.augment.bundle import Bundle
from eenn.codegen.quant import quantize_multiplier
from eenn.codegen.tflite_model import TfliteModel, TensorInfo, set_input_quantization
from eenn.errors import EennError
from eenn.quiet_tf import captured_output, quiet_log_level

ALIGN_RTOL = 2.0**-16  # relative scale difference below which the consumer adopts the producer's scale


@dataclass(frozen=True)
class KerasParts:
    segments: list[Any]
    exits: list[Any]
    base: Any


@dataclass(frozen=True)
class StageSubgraph:
    index: int
    tflite: bytes
    input: TensorInfo
    scores: TensorInfo
    scores_index: int
    feature_map: TensorInfo | None
    feature_map_index: int | None
    requant: dict[str, int] | None  # on this stage's input; None: plain copy
    aligned: bool  # the input's scale was set to the producer's (see the module doc)
    calibrated_scale: float  # the input scale the converter chose before alignment


@contextlib.contextmanager
def _quiet_tf():
    quiet_log_level("3")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def load_parts(bundle: Bundle) -> KerasParts:
    """The bundle's Keras models (hash-verified by `load_bundle` before)."""
    with _quiet_tf():
        import keras

        def load(name: str):
            path = bundle.file(name)
            try:
                return keras.models.load_model(path, compile=False)
            except Exception as exc:  # noqa: BLE001 - any loader failure is a bad bundle
                raise EennError(f"{path}: cannot load the Keras model ({type(exc).__name__}: {exc})") from exc

        sol = bundle.solution
        return KerasParts(segments=[load(s.file) for s in sol.segments], exits=[load(e.file) for e in sol.exits],
                          base=load(sol.base_model.file))


def _input_shape(model) -> tuple[int, ...]:
    shapes = [tuple(t.shape) for t in model.inputs]
    if len(shapes) != 1:
        raise EennError(f"Keras model '{model.name}' has {len(shapes)} inputs; a segment or exit takes one tensor")
    return tuple(int(d) for d in shapes[0][1:])


def stage_keras_models(parts: KerasParts) -> list[Any]:
    """The per-processor sub-models, batch size 1."""
    import keras

    n = len(parts.segments)
    models = []
    for k, seg in enumerate(parts.segments):
        inp = keras.Input(_input_shape(seg), batch_size=1, name=f"stage{k}_input")
        fm = seg(inp)
        if k < n - 1:
            models.append(keras.Model(inp, [fm, parts.exits[k](fm)], name=f"stage{k}"))
        else:
            models.append(keras.Model(inp, fm, name=f"stage{k}"))
    return models


def _unique_names(models: list[Any]) -> None:
    """One graph cannot hold two sub-models of one name; every trained exit is called `exit`, so
    the second and later get their index appended (names only: weights and graphs are untouched)."""
    seen: set[str] = set()
    for k, m in enumerate(models):
        if m.name in seen:
            m.name = f"{m.name}_{k}"
        seen.add(m.name)


def whole_keras_model(parts: KerasParts):
    """The whole EENN in one graph: input → [exit 0, …, exit n−2, final]."""
    import keras

    _unique_names([*parts.segments, *parts.exits])
    inp = keras.Input(_input_shape(parts.segments[0]), batch_size=1, name="eenn_input")
    x, outs = inp, []
    for k, seg in enumerate(parts.segments):
        x = seg(x)
        if k < len(parts.exits):
            outs.append(parts.exits[k](x))
    return keras.Model(inp, [*outs, x], name="eenn_whole")


def base_keras_model(parts: KerasParts):
    import keras

    inp = keras.Input(_input_shape(parts.base), batch_size=1, name="base_input")
    return keras.Model(inp, parts.base(inp), name="base")


def convert_int8(model, calibration: np.ndarray, traced: bool = False) -> bytes:
    """Full-integer int8 TFLite (int8 input and outputs) with `calibration` as representative set.

    `traced`: convert the model's call traced once as a concrete function instead of through the
    Keras SavedModel export (the same ops and calibration; the export traces every nested layer
    and takes most of the time for a large graph; the search's int8 scoring uses it)."""
    with _quiet_tf():
        import tensorflow as tf

        if traced:
            spec = tf.TensorSpec(tuple(model.inputs[0].shape), model.inputs[0].dtype)
            from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

            def call(x):  # outputs named as the Keras export names them (TfliteModel.output_order)
                out = model(x, training=False)
                return {f"output_{i}": o for i, o in enumerate(out if isinstance(out, (list, tuple)) else [out])}

            fn = tf.function(call).get_concrete_function(spec)
            # frozen (weights as constants); an empty trackable keeps the named signature
            conv = tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(fn)], tf.Module())
        else:
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        samples = np.asarray(calibration, dtype=np.float32)
        conv.representative_dataset = lambda: ([s[None]] for s in samples)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        with captured_output() as output:
            try:
                data = conv.convert()
                failure = None
            except Exception as exc:  # noqa: BLE001 - converter errors are many and untyped
                failure = exc
                log = output()[-2000:]
        if failure is not None:
            raise EennError(f"int8 conversion of '{model.name}' failed: {type(failure).__name__}: {failure}\n"
                            f"converter output (tail):\n{log}") from failure
    tm = TfliteModel(data)
    for t in tm.inputs + tm.outputs:
        if t.dtype != "int8" or t.scale is None:
            raise EennError(f"int8 conversion of '{model.name}': tensor '{t.name}' is {t.dtype}, expected int8")
    return data


def feature_maps(parts: KerasParts, x: np.ndarray, upto: int, batch: int = 64) -> np.ndarray:
    """Float output of segments 0..upto−1 on `x` (the representative set of stage `upto`)."""
    out = np.asarray(x, dtype=np.float32)
    with _quiet_tf():
        for seg in parts.segments[:upto]:
            out = np.concatenate([np.asarray(seg(out[i:i + batch], training=False))
                                  for i in range(0, len(out), batch)])
    return out


def _requant_constants(prod: TensorInfo, cons_scale: float, cons_zp: int) -> dict[str, int]:
    m, s = quantize_multiplier(float(prod.scale) / float(cons_scale))
    return {"multiplier": m, "shift": s, "in_zero_point": int(prod.zero_point), "out_zero_point": int(cons_zp)}


def link_quantization(producer_fm: TensorInfo, consumer: bytes) -> tuple[bytes, dict[str, int] | None, bool]:
    """Make the consumer read the producer's feature map: (consumer bytes, requant or None, aligned)."""
    cin = TfliteModel(consumer).inputs[0]
    if (np.float32(cin.scale), cin.zero_point) == (np.float32(producer_fm.scale), producer_fm.zero_point):
        return consumer, None, False
    rel = abs(float(cin.scale) - float(producer_fm.scale)) / float(producer_fm.scale)
    if cin.zero_point == producer_fm.zero_point and rel <= ALIGN_RTOL:
        return set_input_quantization(consumer, float(producer_fm.scale), int(producer_fm.zero_point)), None, True
    return consumer, _requant_constants(producer_fm, float(cin.scale), int(cin.zero_point)), False


def build_stage_subgraphs(parts: KerasParts, calibration: np.ndarray) -> list[StageSubgraph]:
    """Convert every stage; link the feature-map quantization between consecutive stages."""
    models = stage_keras_models(parts)
    n = len(models)
    stages: list[StageSubgraph] = []
    prev_fm: TensorInfo | None = None
    for k, model in enumerate(models):
        calib = calibration if k == 0 else feature_maps(parts, calibration, k)
        data = convert_int8(model, calib)
        calibrated_scale = float(TfliteModel(data).inputs[0].scale)
        requant, aligned = None, False
        if prev_fm is not None:
            data, requant, aligned = link_quantization(prev_fm, data)
        tm = TfliteModel(data)
        order = tm.output_order()
        if k < n - 1:
            fm_i, sc_i = order[0], order[1]
            fm = tm.outputs[fm_i]
        else:
            fm_i, sc_i, fm = None, order[0], None
        scores = tm.outputs[sc_i]
        if len(scores.shape) != 2 or scores.shape[0] != 1:
            raise EennError(f"stage {k}: the classifier output has shape {list(scores.shape)}, expected [1, classes]")
        stages.append(StageSubgraph(index=k, tflite=data, input=tm.inputs[0], scores=scores, scores_index=sc_i,
                                    feature_map=fm, feature_map_index=fm_i, requant=requant, aligned=aligned,
                                    calibrated_scale=calibrated_scale))
        prev_fm = fm
    return stages


def build_whole_model(parts: KerasParts, calibration: np.ndarray) -> bytes:
    return convert_int8(whole_keras_model(parts), calibration)


def build_base_model(parts: KerasParts, calibration: np.ndarray) -> bytes:
    return convert_int8(base_keras_model(parts), calibration)


def load_calibration(bundle: Bundle) -> np.ndarray:
    return _load_npz(bundle.file("calibration.npz"), ("x",))["x"]


def load_test_split(bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    d = _load_npz(bundle.file("test.npz"), ("x", "y"))
    return d["x"], d["y"]


def _load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise EennError(f"{path}: missing from the bundle")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise EennError(f"{path}: lacks array(s) {', '.join(missing)} (docs/interfaces.md §2)")
            return {k: np.asarray(z[k]) for k in keys}
    except (OSError, ValueError) as exc:
        raise EennError(f"{path}: not a readable .npz ({exc})") from exc
