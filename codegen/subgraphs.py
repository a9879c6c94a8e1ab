"""Per-processor Keras sub-models from a solution bundle, converted to full-integer int8 TFLite.

Stage k (processor k) runs `segment_k` and, except on the last processor, `exit_k` on the
segment's output:

    stage 0:      model input   → [feature map 0, exit 0 softmax]
    stage k:      feature map k−1 → [feature map k, exit k softmax]
    last stage:   feature map k−1 → final softmax

Every sub-model is built with `batch_size=1` inputs and converted by the one converter
(`augment/int8_convert.py`, which the search's int8 scoring uses too). Stage 0's
representative set is the bundle's calibration data; stage k's is the float feature map that
segments 0..k−1 produce from it, so each tensor's range is calibrated on the same samples as in
the whole network.

The feature map crossing processors. The producer's output and the consumer's input are
calibrated separately on the same values (once inside TFLite's float kernels, once from Keras),
so their scales agree to a few float rounding steps, not always bit for bit. When they agree to
`ALIGN_RTOL` and the zero points are equal, the consumer's input tensor is given the producer's
exact (scale, zero point): its kernels then compute with the scale the data really has, and the
firmware copies the feature map as it is. Otherwise the consumer requantizes with constants
computed here (`augment/quant.py`, docs/interfaces.md "Integer rules").

The whole EENN as one int8 model (input → [exit 0 … exit n−2, final]) and the base model alone
are converted the same way: the first is the oracle the per-processor chain is checked against,
the second is the comparison point.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eenn.augment.bundle import Bundle
from eenn.augment.int8_convert import KerasParts, convert_int8, input_shape, quiet_tf, whole_keras_model
from eenn.augment.quant import quantize_multiplier
from eenn.augment.tflite_model import TfliteModel, TensorInfo, set_input_quantization
from eenn.errors import EennError

ALIGN_RTOL = 2.0**-16  # relative scale difference below which the consumer adopts the producer's scale


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


def stage_keras_models(parts: KerasParts) -> list[Any]:
    """The per-processor sub-models, batch size 1."""
    import keras

    n = len(parts.segments)
    models = []
    for k, seg in enumerate(parts.segments):
        inp = keras.Input(input_shape(seg), batch_size=1, name=f"stage{k}_input")
        fm = seg(inp)
        if k < n - 1:
            models.append(keras.Model(inp, [fm, parts.exits[k](fm)], name=f"stage{k}"))
        else:
            models.append(keras.Model(inp, fm, name=f"stage{k}"))
    return models


def base_keras_model(parts: KerasParts):
    import keras

    inp = keras.Input(input_shape(parts.base), batch_size=1, name="base_input")
    return keras.Model(inp, parts.base(inp), name="base")


def feature_maps(parts: KerasParts, x: np.ndarray, upto: int, batch: int = 64) -> np.ndarray:
    """Float output of segments 0..upto−1 on `x` (the representative set of stage `upto`)."""
    out = np.asarray(x, dtype=np.float32)
    with quiet_tf():
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
