"""Int8-true scores: every candidate exit and the final classifier as the board computes them.

Why: the board runs full-integer int8 subgraphs, and a threshold chosen on float softmax
outputs is chosen for a network that is never flashed (KWS after `conv_1`: 79.7 % predicted,
73.3 % on the board). The search therefore scores on the int8 outputs of the subgraphs that
`eenn generate` will build, and keeps the float figures beside them.

How `eenn generate` converts (codegen/subgraphs.py), and what is reproduced here:
- each stage is `segment → [feature map, exit softmax]`, batch size 1, converted by
  `augment.int8_convert.convert_int8` with the bundle's `calibration.npz` as representative set
  (`calibration_pick`: at most 1000 samples of the calibration split, the search's seed);
- every tensor's (scale, zero point) comes from its min/max over that set; inside a stage the
  exit reads the backbone's int8 map as it is; between stages the consumer adopts the
  producer's quantization (or requantizes, where the two calibrations disagree).

Here the whole backbone and every exit to score are one Keras graph, `input → [exit softmax at
each location …, final softmax]`, converted once with the same function and set: the per-tensor
ranges are those each stage model gets (the same tensors over the same samples), and each exit
reads the backbone's int8 map at its location, as inside a stage. It runs once over the
calibration and test splits on `tf.lite.Interpreter` with TFLite's builtin kernels and no
delegate: 10–20× faster than the reference kernels (TFLite's `BUILTIN_REF`, or TFLite Micro's,
which the virtual board runs). XNNPACK, the default delegate, rounds differently (on DS-CNN-L
up to 50 LSB apart from TFLite Micro); the builtin kernels give TFLite Micro's integers except
that FULLY_CONNECTED now and then rounds a requantized value the other way (1 LSB: 7 of 800
scores on the 1-D test model, none on DS-CNN-L's or the digits CNN's test splits), which can
move a softmax score by a few 1/256. The tests check that the same graph on TFLite Micro gives
the reference chain's scores exactly, and that these scores give the chain's class and exit on
every sample. What could differ beyond that: a later stage's tensors are calibrated on the
float map Keras computes instead of the one TFLite's float kernels compute, a float rounding
step apart (`codegen.subgraphs.ALIGN_RTOL`, where generate aligns them); the same tests compare sample by sample.

Scores are the dequantized int8 softmax, `(q − zero point) · scale` (scale 1/256: exact in
float32), so `p >= t` is the firmware's integer compare `q >= threshold_q`, and argmax ties go
to the lowest index on both sides.

Caching: an exit's int8 scores are kept in its entry of the exit store (`int8.npz` beside
`exit.keras`), the final classifier's under `<cache>/int8/`; both are keyed by content (the
exit's key covers model, data, seed, structure and training; `SCORING_FORMAT` and the
TensorFlow version are checked on load). A search whose exits all have scores converts nothing.

The converter (`augment/int8_convert.py`) and the integer rules (`augment/quant.py`) are the
ones `eenn generate` uses: the search must calibrate and quantize exactly as it does.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eenn.augment.int8_convert import KerasParts, convert_int8, whole_keras_model
from eenn.augment.quant import quantize
from eenn.augment.tflite_model import TfliteModel

SCORING_FORMAT = 1  # bumped whenever what the int8 scores mean changes
MAX_CALIBRATION = 1000  # samples of the calibration split in the bundle's calibration.npz
SCORINGS = ("int8", "float")


def calibration_pick(n: int, seed: int) -> np.ndarray:
    """Indices into the calibration split of the bundle's representative set (sorted)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[:MAX_CALIBRATION])


def final_key(model_sha: str, data_sha: str, seed: int, logits: bool) -> str:
    blob = json.dumps({"format": SCORING_FORMAT, "model": model_sha, "data": data_sha, "seed": seed,
                       "logits": logits}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Int8Scores:
    """Dequantized int8 softmax per split: `exits[split][location]`, `final[split]`."""

    exits: dict[str, dict[str, np.ndarray]]
    final: dict[str, np.ndarray]
    conversions: int = 0  # int8 conversions this call ran (0: everything from the cache)
    from_cache: int = 0  # exits (and the final classifier) whose scores were read from the cache
    seconds: float = 0.0
    convert_s: float = 0.0  # of which converting
    run_s: float = 0.0  # and running the int8 model


# ---------------------------------------------------------------------------------- the graph
def scoring_model(model: Any, lg: Any, exit_models: dict[str, Any], logits: bool) -> Any:
    """`input (batch 1) → [exit softmax at each location (in dict order) …, final softmax]`."""
    import keras

    from eenn.augment.segments import _clone, rebuild

    inp, tensors = rebuild(_clone(model), lg, None, lg.output_name, name="int8_scoring")
    # Exits share one model name ("exit"): each is wrapped under a name of its own.
    outs = [keras.Model(e.inputs[0], e.outputs[0], name=f"int8_scoring_exit_{i}")(tensors[loc])
            for i, (loc, e) in enumerate(exit_models.items())]
    final = tensors[lg.output_name]
    if logits:
        final = keras.layers.Softmax(name="int8_scoring_softmax")(final)
    whole = keras.Model(inp, [*outs, final], name="int8_scoring_graph")
    inp1 = keras.Input(tuple(int(d) for d in lg.input_shape), batch_size=1, name="int8_scoring_input")
    return keras.Model(inp1, whole(inp1), name="int8_scoring")


def chain_model(segments: list[Any], exits: list[Any]) -> Any:
    """The same for an architecture's own parts (fine-tuned segments and exits): input →
    [exit 0, …, final], as `codegen.subgraphs.whole_keras_model` composes a bundle."""
    return whole_keras_model(KerasParts(segments=list(segments), exits=list(exits), base=None))


def convert(keras_model: Any, calibration: np.ndarray) -> bytes:
    """Full-integer int8 TFLite as `eenn generate` converts a stage (its converter settings and
    representative set; the model traced once rather than exported, see `convert_int8`)."""
    return convert_int8(keras_model, calibration, traced=True)


def interpreter(tflite: bytes) -> Any:
    """tf.lite.Interpreter on TFLite's builtin kernels without the default (XNNPACK) delegate, one
    thread (measured: `num_threads=2` on 2 cores made a 74-exit scoring pass 2.1x slower)."""
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the interpreter's deprecation notice
        it = tf.lite.Interpreter(
            model_content=tflite,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def run_int8(tflite: bytes, xs: np.ndarray) -> list[np.ndarray]:
    """Per Keras output of the converted model: (N, C) int8 scores on float samples `xs`."""
    tm = TfliteModel(tflite)
    q = tm.inputs[0]
    order = tm.output_order()
    tensors = [tm.outputs[order[k]].index for k in range(len(order))]
    it = interpreter(tflite)
    x_index = it.get_input_details()[0]["index"]
    out = [np.empty((len(xs), int(np.prod(tm.outputs[order[k]].shape))), dtype=np.int8) for k in range(len(order))]
    for i, x in enumerate(xs):
        it.set_tensor(x_index, quantize(np.asarray(x).reshape(q.shape), q.scale, q.zero_point))
        it.invoke()
        for k, t in enumerate(tensors):
            out[k][i] = it.get_tensor(t).reshape(-1)
    return out


def dequantized(tflite: bytes, scores_q: list[np.ndarray]) -> list[np.ndarray]:
    tm = TfliteModel(tflite)
    order = tm.output_order()
    res = []
    for k, q in enumerate(scores_q):
        t = tm.outputs[order[k]]
        res.append(((q.astype(np.float32) - np.float32(t.zero_point)) * np.float32(t.scale)).astype(np.float32))
    return res


def score(keras_model: Any, calibration: np.ndarray, splits: dict[str, np.ndarray],
          times: dict[str, float] | None = None) -> list[dict[str, np.ndarray]]:
    """Convert once, run on every split: per Keras output, {split: dequantized int8 softmax}
    (`times`, if given, receives convert_s and run_s)."""
    t0 = time.monotonic()
    tflite = convert(keras_model, calibration)
    t1 = time.monotonic()
    per_split = {s: dequantized(tflite, run_int8(tflite, x)) for s, x in splits.items()}
    if times is not None:
        times.update(convert_s=t1 - t0, run_s=time.monotonic() - t1)
    n_out = len(next(iter(per_split.values())))
    return [{s: per_split[s][k] for s in splits} for k in range(n_out)]


# ---------------------------------------------------------------------------------- the cache
def _stamp() -> dict[str, Any]:
    import tensorflow as tf

    return {"format": SCORING_FORMAT, "tensorflow": tf.__version__}


def _load(path: Path | None, splits: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if json.loads(str(z["meta"])) != _stamp():
                return None
            return {s: np.asarray(z[s]) for s in splits}
    except (OSError, ValueError, KeyError):
        return None  # unreadable: score again (the file is replaced)


def _save(path: Path | None, arrays: dict[str, np.ndarray]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(_stamp())), **arrays)
    os.replace(tmp, path)  # an entry exists whole or not at all


def exit_scores_path(exit_dir: Path | None) -> Path | None:
    return exit_dir / "int8.npz" if exit_dir is not None else None


# ---------------------------------------------------------------------------------- the search's hook
def score_search(model: Any, lg: Any, logits: bool, exit_paths: dict[str, Path], x_cal: np.ndarray,
                 splits: dict[str, np.ndarray], seed: int, cache_dir: Path | None, final_cache_key: str,
                 cached_exits: set[str] | frozenset[str] = frozenset()) -> Int8Scores:
    """Int8 scores of the exits at `exit_paths` (location → the trained exit's .keras file) and
    of the final classifier on `splits`, converting once for whatever the cache lacks.

    An exit's scores are cached beside its .keras file when the location is in `cached_exits`
    (an entry of the exit store; otherwise the file is a temporary one); the final classifier's
    under `cache_dir`/int8 (None: no cache)."""
    import keras

    t0 = time.monotonic()
    names = tuple(splits)
    final_path = cache_dir / "int8" / f"final-{final_cache_key}.npz" if cache_dir is not None else None
    exits: dict[str, dict[str, np.ndarray]] = {s: {} for s in names}
    paths = {loc: exit_scores_path(p.parent) if loc in cached_exits else None for loc, p in exit_paths.items()}
    missing = []
    for loc in exit_paths:
        hit = _load(paths[loc], names)
        if hit is None:
            missing.append(loc)
        else:
            for s in names:
                exits[s][loc] = hit[s]
    final = _load(final_path, names)
    res = Int8Scores(exits=exits, final={}, from_cache=len(exit_paths) - len(missing) + (final is not None))
    if missing or final is None:
        exit_models = {loc: keras.models.load_model(exit_paths[loc], compile=False) for loc in missing}
        calibration = np.asarray(x_cal, dtype=np.float32)[calibration_pick(len(x_cal), seed)]
        times: dict[str, float] = {}
        outs = score(scoring_model(model, lg, exit_models, logits), calibration, splits, times)
        res.conversions += 1
        res.convert_s, res.run_s = times["convert_s"], times["run_s"]
        for loc, o in zip(missing, outs):
            for s in names:
                exits[s][loc] = o[s]
            _save(paths[loc], o)
        if final is None:
            final = outs[-1]
            _save(final_path, final)
    res.final = final
    res.seconds = time.monotonic() - t0
    return res


def score_parts(segments: list[Any], exit_models: list[Any], locations: list[str], x_cal: np.ndarray,
                splits: dict[str, np.ndarray], seed: int) -> Int8Scores:
    """Int8 scores of one architecture's own parts (after joint fine-tuning: nothing to cache)."""
    t0 = time.monotonic()
    calibration = np.asarray(x_cal, dtype=np.float32)[calibration_pick(len(x_cal), seed)]
    outs = score(chain_model(segments, exit_models), calibration, splits)
    names = tuple(splits)
    return Int8Scores(exits={s: {loc: o[s] for loc, o in zip(locations, outs)} for s in names},
                      final=outs[-1], conversions=1, seconds=time.monotonic() - t0)
