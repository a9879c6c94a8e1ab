"""The feature cache: every needed feature map, computed in one pass over the data.

Why: the backbone is frozen, so its output at a location never changes; running it once and
training every exit on the stored maps is what makes the search cheap (the paper's reuse,
section 3; `benchmarks/search_cache.py` measures it). The same pass gives the final classifier's softmax,
which is both the last stage of every cascade and the teacher the exits are distilled from.

Where an exit starts with weightless pooling, the cache stores the pooled map (`heads`): the
same every epoch, a fraction of the size, and computed in the same pass.

The training split is enlarged with shifted copies (`AugmentConfig`): exits learn from a few
hundred labelled samples only, and the base model labels each shifted copy for free (its
softmax is the distillation target). Arrays live in memory up to `memory_limit` bytes and in
`numpy.memmap` files past it; training features are float16 (half the space; exits do not
need more), calibration and test features float32 (their softmax is what gets reported).

With `int8=True` every split is stored as the int8 codes the board will see (`Int8Grid`: the
calibration split's min/max of the backbone's map, 0 included, nudged as TFLite does): a
quarter of float32's bytes. The grid must be known before the first map is stored, so the
calibration split is run once more beforehand for its range alone. Exit training dequantizes
on the fly (`Int8Grid.dequantize`); quantization-aware epochs round to this grid anyway.
"""
from __future__ import annotations

import mmap
import shutil
import tempfile
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eenn.augment.exits import ExitPlan, build_exit
from eenn.augment.progress import Progress


RELEASE_EVERY_BYTES = 256 << 20  # memory-mapped maps written between two `release_pages` of the store


def release_pages(a: np.ndarray | None) -> None:
    """Unmap a memory-mapped array's pages from this process; the kernel's page cache keeps them
    (written pages included: a shared file mapping) and a later read maps them back.

    Why: a mapped page stays in the process's resident set until unmapped, so without this the
    RSS of a search on a memory-mapped store grows to the whole store (every map written, every
    exit's maps read), over any memory budget, although none of it is memory the search needs.
    A no-op for arrays in memory and where `madvise` is missing."""
    mm = getattr(a, "_mmap", None)  # numpy.memmap and its views keep the mmap.mmap here
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


@dataclass(frozen=True)
class AugmentConfig:
    copies: int = 4  # shifted copies of the training split, besides the original
    shift: float = 0.1  # largest shift along the first (time / row) axis, as a share of its length

    def to_dict(self) -> dict[str, Any]:
        return {"copies": self.copies, "shift": self.shift}


def augment(x: np.ndarray, y: np.ndarray, config: AugmentConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The original samples followed by `copies` copies, each shifted along axis 1 by a random
    whole number of steps (edges repeated), up to `shift` of that axis."""
    if config.copies <= 0:
        return x, y
    rng = np.random.default_rng(seed)
    length = x.shape[1]
    most = max(1, int(round(config.shift * length)))
    parts, labels = [x], [y]
    base = np.arange(length)
    for _ in range(config.copies):
        s = rng.integers(-most, most + 1, size=len(x))
        idx = np.clip(base[None, :] - s[:, None], 0, length - 1)
        idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
        parts.append(np.take_along_axis(x, np.broadcast_to(idx, x.shape), axis=1))
        labels.append(y)
    return np.concatenate(parts), np.concatenate(labels)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _traced_once(model: Any):
    """`model` in inference mode as one `tf.function` with an open batch axis: traced once for
    every split and the odd last batches (`predict_on_batch` retraces for new batch sizes)."""
    import tensorflow as tf

    spec = tf.TensorSpec((None,) + tuple(int(d) for d in model.inputs[0].shape[1:]), tf.float32)

    @tf.function(input_signature=[spec])
    def run(x):
        outs = model(x, training=False)
        return list(outs) if isinstance(outs, (list, tuple)) else [outs]

    return run


@dataclass(frozen=True)
class Int8Grid:
    """The int8 grid of one feature map: value = (q + 128) * scale + low, q in [-128, 127].

    Spans [min(0, lo), max(0, hi)] with 0 exactly on the grid: the arithmetic of TensorFlow's
    `fake_quant_with_min_max_vars` (8 bits, not narrow), which `round_int8` and the converter use."""

    scale: float
    low: float

    @staticmethod
    def spanning(lo: float, hi: float) -> Int8Grid:
        lo, hi = min(0.0, float(lo)), max(0.0, float(hi))
        hi = max(hi, lo + 1e-6)
        scale = np.float32((hi - lo) / 255.0)
        zero = float(np.clip(-lo / scale, 0.0, 255.0))
        zero = float(np.floor(zero + 0.5))  # round half away from zero (zero >= 0)
        return Int8Grid(scale=float(scale), low=float(np.float32(-zero * scale)))

    def quantize(self, x: Any) -> Any:
        """int8 codes of `x` (a tensor or array), clamped to the grid."""
        import tensorflow as tf

        q = tf.round((tf.cast(x, tf.float32) - np.float32(self.low)) / np.float32(self.scale))
        return tf.cast(tf.clip_by_value(q, 0.0, 255.0) - 128.0, tf.int8)

    def dequantize(self, q: Any) -> Any:
        import tensorflow as tf

        return (tf.cast(q, tf.float32) + 128.0) * np.float32(self.scale) + np.float32(self.low)

    def dequantize_numpy(self, q: np.ndarray, chunk: int = 4096) -> np.ndarray:
        out = np.empty(q.shape, dtype=np.float32)
        for lo in range(0, len(q), chunk):
            out[lo:lo + chunk] = np.asarray(self.dequantize(np.asarray(q[lo:lo + chunk])))
        return out


def map_bytes(shapes: dict[str, tuple[int, ...]], counts: dict[str, int], int8: bool) -> int:
    """Bytes of the cache for maps of `shapes` (per location) and `counts` samples (per split)."""
    size = {s: (1 if int8 else (2 if s == "train" else 4)) for s in counts}
    return sum(n * prod(shp) * size[s] for s, n in counts.items() for shp in shapes.values())


def feature_extractor(model: Any, locations: Sequence[str], heads: dict[str, ExitPlan] | None = None,
                      maps_only: bool = False):
    """(Keras model x → maps + per-sample (min, max) of each map + final outputs, map shapes):
    the one graph of the feature pass; a location's map goes through its head, if any. With
    `maps_only`, x → the maps alone: Keras then builds only the layers up to the deepest location."""
    import keras

    maps, extremes = [], []
    for i, loc in enumerate(locations):
        out = model.get_layer(loc).output
        axes = tuple(range(1, len(out.shape)))
        extremes += [keras.ops.min(out, axis=axes), keras.ops.max(out, axis=axes)]
        head = (heads or {}).get(loc)
        if head is not None and head.layers:
            out = build_exit(head, name=f"head_{i}")(out)
        maps.append(out)
    shapes = {loc: tuple(int(d) for d in m.shape[1:]) for loc, m in zip(locations, maps)}
    return keras.Model(model.inputs, maps if maps_only else maps + extremes + list(model.outputs)), shapes


class FeatureCache:
    """features[split][location] and probs[split] (the base model's softmax) for each split.

    `heads` maps a location to weightless layers (an exit's leading pooling, as an `ExitPlan`)
    whose output is stored instead of the backbone's map there. ranges[split][location] is the
    (min, max) of the backbone's own map there (before any head): the int8 range the converter
    finds for the exit's input, which a pooled map alone no longer tells."""

    def __init__(self, model: Any, locations: Sequence[str], inputs: dict[str, np.ndarray], logits: bool = False,
                 batch_size: int = 64, memory_limit: int = 2 << 30, directory: str | Path | None = None,
                 progress: Progress | None = None, heads: dict[str, ExitPlan] | None = None,
                 int8: bool = False):
        import tensorflow as tf

        self.locations = list(locations)
        self.features: dict[str, dict[str, np.ndarray]] = {s: {} for s in inputs}
        self.probs: dict[str, np.ndarray] = {}
        self.ranges: dict[str, dict[str, tuple[float, float]]] = {s: {} for s in inputs}
        self.grids: dict[str, Int8Grid] = {}  # location → the int8 grid its maps are stored on (int8 only)
        self.int8 = int8
        self._tmp: Path | None = None
        extractor, shapes = feature_extractor(model, self.locations, heads)
        if int8:
            dtypes = {s: np.int8 for s in inputs}
        else:
            dtypes = {s: (np.float16 if s == "train" else np.float32) for s in inputs}
        total = map_bytes(shapes, {s: len(x) for s, x in inputs.items()}, int8) if self.locations else 0
        self.on_disk = total > memory_limit
        self.nbytes = total
        if self.on_disk:
            root = Path(directory) if directory is not None else None
            if root is not None:
                root.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(prefix="features-", dir=root))
        for s, x in inputs.items():
            for i, loc in enumerate(self.locations):
                shape = (len(x),) + shapes[loc]
                if self.on_disk:
                    assert self._tmp is not None
                    self.features[s][loc] = np.lib.format.open_memmap(
                        self._tmp / f"{s}-{i}.npy", mode="w+", dtype=dtypes[s], shape=shape)
                else:
                    self.features[s][loc] = np.empty(shape, dtype=dtypes[s])
        n_loc = len(self.locations)
        run = _traced_once(extractor)
        progress = progress or Progress(enabled=False)
        batches = sum(-(-len(x) // batch_size) for x in inputs.values())
        if int8 and n_loc:
            first = "cal" if "cal" in inputs else next(iter(inputs))
            x = inputs[first]
            lows, highs = np.full(n_loc, np.inf), np.full(n_loc, -np.inf)
            with progress.bar("int8 ranges of the feature maps", -(-len(x) // batch_size)) as step:
                for lo in range(0, len(x), batch_size):
                    outs = run(np.asarray(x[lo:lo + batch_size], dtype=np.float32))
                    for k in range(n_loc):
                        lows[k] = min(lows[k], float(np.min(outs[n_loc + 2 * k])))
                        highs[k] = max(highs[k], float(np.max(outs[n_loc + 2 * k + 1])))
                    step(1)
            self.grids = {loc: Int8Grid.spanning(lows[k], highs[k]) for k, loc in enumerate(self.locations)}
        row_bytes = {s: sum(prod(shapes[loc]) * np.dtype(dtypes[s]).itemsize for loc in self.locations) for s in inputs}
        with progress.bar(f"caching features at {len(self.locations)} location(s)", batches) as step:
            for s, x in inputs.items():
                written = 0
                out_probs = np.empty((len(x), int(model.outputs[0].shape[-1])), dtype=np.float32)
                half = dtypes[s] == np.float16
                lows, highs = np.full(n_loc, np.inf), np.full(n_loc, -np.inf)
                for lo in range(0, len(x), batch_size):
                    outs = run(np.asarray(x[lo:lo + batch_size], dtype=np.float32))
                    for k in range(n_loc):
                        lows[k] = min(lows[k], float(np.min(outs[n_loc + 2 * k])))
                        highs[k] = max(highs[k], float(np.max(outs[n_loc + 2 * k + 1])))
                    for loc, o in zip(self.locations, outs[:n_loc]):
                        # float16 rounding in TensorFlow: the same values as numpy's, many times faster.
                        if int8:
                            self.features[s][loc][lo:lo + batch_size] = np.asarray(self.grids[loc].quantize(o))
                        else:
                            self.features[s][loc][lo:lo + batch_size] = np.asarray(
                                tf.cast(o, tf.float16) if half else o)
                    final = np.asarray(outs[-1], dtype=np.float32)
                    out_probs[lo:lo + batch_size] = softmax(final) if logits else final
                    written += len(final) * row_bytes[s]
                    if self.on_disk and (written >= RELEASE_EVERY_BYTES or lo + batch_size >= len(x)):
                        self.release(s)
                        written = 0
                    step(1)
                self.probs[s] = out_probs
                self.ranges[s] = {loc: (float(lows[k]), float(highs[k])) for k, loc in enumerate(self.locations)}

    def release(self, split: str | None = None) -> None:
        """`release_pages` of every memory-mapped map (of `split`, or all)."""
        for s, maps in self.features.items():
            if split is None or s == split:
                for a in maps.values():
                    release_pages(a)

    def close(self) -> None:
        self.features = {}
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
