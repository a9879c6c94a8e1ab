"""Where the feature maps live, and the streaming mode for when they fit nowhere.

Why: the cache grows as samples × locations × map size; a 74-location ResNet on 10,000 samples
(five shifted copies each) needs tens of GB as float. The ladder, chosen automatically and
printed with the bytes and backbone passes it implies (`choose_storage`):

1. float maps in memory (float16 training, float32 evaluation maps: the default so far);
2. int8 maps (the board's own codes, `features.Int8Grid`) in memory: a quarter of float32;
3. int8 maps memory-mapped on disk, up to the disk budget;
4. streaming: only the calibration and test maps are cached (int8); the training split is run
   through the backbone once for the teacher's softmax and the standardisation statistics and
   then once per epoch, every pending exit taking its step from the same batch (many heads,
   one pass). Every exit then sees the same mini-batch order (the search seed's, not its own).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from eenn.augment.exits import ExitPlan, split_plan
from eenn.augment.features import FeatureCache, feature_extractor, map_bytes, softmax, _traced_once
from eenn.augment.exit_store import TrainedExit
from eenn.augment.export_fold import foldable_layer
from eenn.augment.training import CachedMaps, ExitRun, Labels, TrainConfig, _Batches

MODES = ("auto", "float", "int8", "stream")


@dataclass(frozen=True)
class StoragePlan:
    mode: str  # float | int8 | stream
    on_disk: bool  # the cached maps are memory-mapped (float / int8), or the cal/test maps are (stream)
    nbytes: int  # bytes of cached maps
    float_bytes: int  # what float maps would have taken
    passes: int  # backbone passes over the training split
    int8_all: int = 0  # int8 bytes of every split (stream: what did not fit)
    over_disk: bool = False  # stream: even the calibration and test maps exceed the disk budget (kept anyway)

    @property
    def int8(self) -> bool:
        return self.mode != "float"

    def describe(self) -> str:
        mib = 2 ** 20
        where = "memory-mapped on disk" if self.on_disk else "in memory"
        if self.mode == "stream":
            return (f"features: streaming (float maps would take {self.float_bytes / mib:.0f} MiB, int8 "
                    f"{self.int8_all / mib:.0f} MiB, over both limits): calibration and test maps cached as int8 "
                    f"({self.nbytes / mib:.0f} MiB {where}), the training split through the backbone "
                    f"{self.passes} times (once, then once per epoch)"
                    + ("; the calibration and test maps alone exceed --disk-limit" if self.over_disk else ""))
        extra = "" if self.mode == "float" else f" (float: {self.float_bytes / mib:.0f} MiB)"
        return (f"features: {self.nbytes / mib:.0f} MiB of {self.mode} maps {where}{extra}; "
                f"the training split through the backbone once")


def map_shapes(plans: list[ExitPlan], heads: dict[str, ExitPlan]) -> dict[str, tuple[int, ...]]:
    """The cached map's shape per location: the exit's input, after its leading pooling if any."""
    out = {}
    for p in plans:
        head = heads.get(p.location)
        out[p.location] = tuple(split_plan(p, len(head.layers))[1].input_shape) if head is not None and head.layers \
            else tuple(p.input_shape)
    return out


def choose_storage(shapes: dict[str, tuple[int, ...]], counts: dict[str, int], memory_limit: int,
                   disk_limit: int | None, epochs: int, mode: str = "auto") -> StoragePlan:
    """The first rung of the ladder (module doc) that fits; `mode` forces one ("float" and
    "int8" then go to disk when over the memory limit, whatever the disk budget)."""
    if mode not in MODES:
        raise ValueError(f"feature storage '{mode}': expected one of {', '.join(MODES)}")
    as_float = map_bytes(shapes, counts, int8=False)
    as_int8 = map_bytes(shapes, counts, int8=True)
    evaluation = map_bytes(shapes, {s: n for s, n in counts.items() if s != "train"}, int8=True)
    fits_disk = disk_limit is None or as_int8 <= disk_limit
    if mode == "float" or (mode == "auto" and as_float <= memory_limit):
        return StoragePlan("float", as_float > memory_limit, as_float, as_float, 1, as_int8)
    if mode == "int8" or (mode == "auto" and (as_int8 <= memory_limit or fits_disk)):
        return StoragePlan("int8", as_int8 > memory_limit, as_int8, as_float, 1, as_int8)
    over = evaluation > memory_limit and disk_limit is not None and evaluation > disk_limit
    return StoragePlan("stream", evaluation > memory_limit, evaluation, as_float, 1 + epochs, as_int8, over)


class _Sums:
    """Per-channel sums for `export_fold.channel_stats`' mean and deviation, fed batch by batch."""

    def __init__(self, channels: int):
        self.s, self.s2, self.n = np.zeros(channels), np.zeros(channels), 0

    def add(self, a: np.ndarray) -> None:
        a = np.asarray(a, dtype=np.float64).reshape(-1, len(self.s))
        self.s += a.sum(0)
        self.s2 += (a * a).sum(0)
        self.n += len(a)

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.s / max(self.n, 1)
        std = np.sqrt(np.maximum(self.s2 / max(self.n, 1) - mean * mean, 0.0))
        return mean, np.maximum(std, 1e-3 * max(float(std.max(initial=0.0)), 1e-6))


def train_streaming(model: Any, plans: dict[int, ExitPlan], heads: dict[str, ExitPlan], x_train: np.ndarray,
                    y_train: np.ndarray, cache: FeatureCache, y_cal: np.ndarray, num_classes: int, logits: bool,
                    config: TrainConfig, seed: int, batch_size: int = 64) -> Iterator[tuple[int, TrainedExit, Any]]:
    """Train the exits `plans` (candidate index → plan) with one backbone pass per epoch over
    `x_train`; yields (candidate, trained exit, exported model or None) as each one finishes.

    `cache` holds the int8 calibration and test maps of the same locations (with `heads`) and
    their grids; the training maps are rounded to those grids batch by batch, as the int8 cache
    would have stored them."""
    locs = [p.location for p in plans.values()]
    extractor, _ = feature_extractor(model, locs, heads)
    run = _traced_once(extractor)
    grids = [cache.grids[loc] for loc in locs]
    # Pass 1: the teacher's softmax and each exit's standardisation statistics.
    teacher = np.empty((len(x_train), int(model.outputs[0].shape[-1])), dtype=np.float32)
    sums = {loc: _Sums(p.input_shape[-1]) for loc, p in zip(locs, plans.values()) if foldable_layer(p) is not None}
    for lo in range(0, len(x_train), batch_size):
        outs = run(np.asarray(x_train[lo:lo + batch_size], dtype=np.float32))
        for k, loc in enumerate(locs):
            if loc in sums:
                sums[loc].add(np.asarray(grids[k].dequantize(grids[k].quantize(outs[k]))))
        final = np.asarray(outs[-1], dtype=np.float32)
        teacher[lo:lo + batch_size] = softmax(final) if logits else final
    runs: dict[int, ExitRun] = {}
    labels = Labels(num_classes, y_train, teacher, y_cal)
    for c, p in plans.items():
        loc = p.location
        runs[c] = ExitRun(p, CachedMaps.of(cache, loc, pooled=loc in heads, streamed=True), labels, config, seed,
                          stats=sums[loc].stats() if loc in sums else None, order_seed=seed)
    order = _Batches(len(y_train), config.batch_size, seed)
    active = dict(runs)
    pass_locs: list[str] = []
    for epoch in range(config.epochs):
        if not active:
            break
        for r in active.values():
            r.begin_epoch(epoch)
        wanted = [loc for loc in locs if any(plans[c].location == loc for c in active)]
        if wanted != pass_locs:
            # The epochs need the maps of the exits still training and nothing after the deepest:
            # neither the teacher nor the ranges (pass 1 kept them), nor the layers of abandoned exits.
            pass_locs = wanted
            run = _traced_once(feature_extractor(model, pass_locs, heads, maps_only=True)[0])
            index = {c: pass_locs.index(plans[c].location) for c in active}
        for idx in order.epoch():
            outs = run(np.asarray(x_train[idx], dtype=np.float32))
            for c, r in active.items():
                k = index[c]
                r.step(cache.grids[pass_locs[k]].quantize(outs[k]), idx)
        for c in list(active):
            if not active[c].end_epoch(epoch):
                trained, exported = active.pop(c).finish()
                yield c, trained, exported
    for c, r in active.items():
        trained, exported = r.finish()
        yield c, trained, exported
