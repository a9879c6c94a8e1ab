"""Exit training on the frozen backbone.

Each exit is trained once, on cached feature maps (or, for the benchmark's baseline, through
the frozen backbone), and reused by every architecture that contains it. What is kept per
exit is its Keras model and its per-sample softmax on the calibration and test splits: all
later steps work from those.

Training, in short: the feature map is standardised per channel (statistics from the
training split; folded into the exit's first weighted layer afterwards, so the exported exit
is the plain planned model); the loss mixes cross-entropy on the labels with distillation
from the base model's softmax (temperature `temperature`, weight `distill`); Adam with a
cosine-decayed learning rate. After the first epoch (with small data: the first that ends after
`abort_min_steps` optimizer steps) an exit whose calibration accuracy is not above chance (the
majority-class share) by `abort_margin` is abandoned. The softmax temperature is then fitted
on the calibration split and folded into the last layer, so that a confidence threshold means
the same for every exit however over-confident its training made it.

An exit's input comes from one of two sources behind one interface: `CachedMaps` (the feature
cache's maps: everything before the exit's first weighted layer is the same every epoch and is
computed once, the leading pooling by the cache, the int8 rounding and the standardisation by
`_ExitInput` once per phase) or `ThroughBackbone` (model inputs through the frozen backbone in
every step, those steps layers of the training graph: the benchmark's baseline). `ExitRun` is
one code path for both. Each epoch's steps run as one graph (`_train_epoch`).

Beside it: the exit cache (`exit_store.py`: trained exits kept on disk, so that a killed search
resumes) and what is folded into the exported exit (`export_fold.py`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from eenn.augment.exit_store import TrainedExit
from eenn.augment.exits import ExitPlan, build_exit, leading_pooling, split_plan
from eenn.augment.export_fold import (channel_stats, fit_temperature, fold_into_export, foldable_layer, scalable,
                                      scale_last_layer)
from eenn.augment.fake_quant import calibrate, fake_quant_layer, round_int8, set_active
from eenn.augment.features import release_pages


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 25
    batch_size: int = 128
    learning_rate: float = 3e-3
    temperature: float = 2.0
    distill: float = 0.5  # weight of the distillation term (0: labels only)
    abort_margin: float = 0.05  # after epoch 1: abandon when calibration accuracy < chance + margin
    temperature_scaling: bool = True  # fit a softmax temperature on the calibration split (folded in)
    abort_min_steps: int = 50  # the abort check waits for the first epoch that ends after this many steps
    quant_aware: float = 0.4  # share of the last epochs trained through simulated int8 rounding (0: float only)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def exit_seed(seed: int, location: str) -> int:
    """A per-exit seed, so that an exit's result does not depend on what was trained before it."""
    return (seed * 1_000_003 + int(hashlib.sha256(location.encode()).hexdigest()[:8], 16)) % (2**31 - 1)


# ---------------------------------------------------------------------------------------------
# Training


class _Batches:
    """Shuffled mini-batch indices; the shuffle is per epoch and seeded, each batch a sorted index
    run (so that memory-mapped maps are read sequentially)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.bs = n, batch_size
        self.rng = np.random.default_rng(seed)

    def epoch(self):
        order = self.rng.permutation(self.n)
        for lo in range(0, len(order), self.bs):
            yield np.sort(order[lo:lo + self.bs])


def _targets(y: np.ndarray, teacher: np.ndarray, num_classes: int, temperature: float) -> np.ndarray:
    onehot = np.eye(num_classes, dtype=np.float32)[y]
    logt = np.log(np.clip(teacher.astype(np.float64), 1e-8, 1.0)) / temperature
    soft = np.exp(logt - logt.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    return np.concatenate([onehot, soft.astype(np.float32)], axis=1)


def _predict(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Batched inference by calling the model eagerly: `predict_on_batch` would trace a predict
    function for every model (three per exit, seconds each), which costs more than the few
    hundred evaluation samples take to run op by op."""
    out = [np.asarray(model(np.asarray(x[lo:lo + batch_size], dtype=np.float32), training=False))
           for lo in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32)


IN_MEMORY_BYTES = 1 << 31  # training inputs up to this size are held as one tensor; larger ones are read per batch


class _Source:
    """The training inputs of `_train_epoch`.

    In memory (the usual case) the array becomes one tensor once per exit (once per phase, when
    a `transform` is given) and every batch of an epoch is a gather from it inside the epoch's
    graph: no per-batch numpy fancy indexing, no float16 → float32 conversion in numpy (slow)
    and no copy of every batch into a new tensor. Memory-mapped arrays too large for that are
    read, and transformed, per batch.

    `transform(x, rounding)` is the cached path's `_ExitInput`: what the exit's first layer
    sees, computed here once per phase instead of inside every step."""

    def __init__(self, x: np.ndarray, targets: np.ndarray, transform: Callable[[Any, bool], Any] | None = None):
        import tensorflow as tf

        self.raw, self.transform = x, transform
        self.t = tf.constant(targets, dtype=tf.float32)
        # (no samples: a streamed source, whose batches come from the backbone one at a time)
        self.in_memory = len(x) > 0 and (not isinstance(x, np.memmap) or x.nbytes <= IN_MEMORY_BYTES)
        # Transformed maps are float32 when that still fits (no cast in the step), else they keep x's type.
        wide = transform is not None and x.size * 4 <= IN_MEMORY_BYTES
        self.dtype = tf.float32 if wide or x.dtype != np.float16 else tf.float16
        self.rounding = False
        self.x = self._tensor() if self.in_memory else None

    def _tensor(self):
        import tensorflow as tf

        if self.transform is None:
            return tf.constant(np.asarray(self.raw, dtype=self.dtype.as_numpy_dtype))
        return tf.concat([tf.cast(self.transform(self.raw[lo:lo + 4096], self.rounding), self.dtype)
                          for lo in range(0, len(self.raw), 4096)], axis=0)

    def set_phase(self, rounding: bool) -> None:
        """Switch to the inputs of the float (False) or the int8-rounding (True) epochs."""
        if rounding == self.rounding:
            return
        self.rounding = rounding
        if self.transform is not None and self.in_memory:
            self.x = None  # the previous phase's tensor goes before the next is built
            self.x = self._tensor()

    def run(self, run_epoch: Callable[[Any, Any, Any], Any], batches: Any) -> int:
        """One epoch of `_train_epoch` over `batches` (index arrays); returns the steps taken."""
        import tensorflow as tf

        batches = list(batches)
        if self.x is not None:  # the whole epoch in one call: batch k is the k-th run of the order
            run_epoch(self.x, self.t, tf.constant(np.concatenate(batches), dtype=tf.int32))
            return len(batches)
        for idx in batches:
            xb = np.asarray(self.raw[idx])
            xb = self.transform(xb, self.rounding) if self.transform is not None else xb
            run_epoch(tf.cast(xb, self.dtype), tf.gather(self.t, tf.constant(idx, dtype=tf.int32)),
                      tf.range(len(idx), dtype=tf.int32))
        return len(batches)


class _ExitInput:
    """On the cached path, what the exit's first layer sees: the backbone's map rounded to int8
    (in the rounding epochs) and standardised. Through the backbone the same is computed in the graph
    (`exit_input` fake-quant and `exit_norm` layers); on cached maps it is the same every epoch,
    so it is computed once per phase. The int8 range is the calibration split's min/max, 0
    included: what the converter finds for the exit's input, measured on the backbone's own map
    (before the exit's leading pooling: the board pools int8 values on that map's grid)."""

    def __init__(self, value_range: tuple[float, float], stats: tuple[np.ndarray, np.ndarray] | None,
                 grid: Any = None):
        self.lo, self.hi = float(min(0.0, value_range[0])), float(max(0.0, value_range[1]))
        self.grid = grid  # an Int8Grid: the maps given are int8 codes on it (the int8 cache)
        self.mean = self.var = None
        if stats is not None:  # as the through-the-backbone Normalization holds them
            self.mean, self.var = np.float32(stats[0]), np.float32(stats[1] ** 2)

    def __call__(self, x: Any, rounding: bool) -> Any:
        import keras
        import tensorflow as tf

        t = tf.cast(x, tf.float32) if self.grid is None else self.grid.dequantize(x)
        if rounding:
            t = round_int8(t, self.lo, self.hi)
        if self.mean is not None:  # keras Normalization's arithmetic, to the last bit
            t = (t - self.mean) / tf.maximum(tf.sqrt(self.var), keras.backend.epsilon())
        return t

    def numpy(self, x: np.ndarray, rounding: bool) -> np.ndarray:
        return np.concatenate([np.asarray(self(x[lo:lo + 1024], rounding)) for lo in range(0, len(x), 1024)])


def _train_epoch(model: Any, optimizer: Any, loss_fn: Callable[[Any, Any], Any], x_shape: tuple[int, ...],
                 x_dtype: Any, n_targets: int, batch_size: int):
    """An epoch's optimizer steps as one `tf.function`, traced once per exit: `run(x, t, order)`
    takes a step on each `batch_size` run of `order` (rows of x and t), in turn.

    Each step is what `Model.train_on_batch` does (mean loss over the batch plus the layers' own
    losses, gradients, `apply_gradients`). The loop runs inside the graph: a Python loop pays
    a function call per step, a fifth of a small exit's step. The lengths stay open, so the same
    trace takes a whole epoch of an in-memory source or one batch read from a memory-mapped one."""
    import tensorflow as tf

    from eenn.quiet_tf import drop_retracing_advice

    drop_retracing_advice()
    trainable = model.trainable_variables
    optimizer.build(trainable)

    def one_step(xb, tb):
        with tf.GradientTape() as tape:
            logits = model(tf.cast(xb, tf.float32), training=True)
            loss = tf.reduce_mean(loss_fn(tb, logits))
            if model.losses:
                loss = loss + tf.add_n(model.losses)
        grads = tape.gradient(loss, trainable)
        optimizer.apply_gradients(zip(grads, trainable))
        return loss

    # A plain while_loop, not autograph: it traces in about half the time.
    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(x_shape), x_dtype),
                                  tf.TensorSpec((None, n_targets), tf.float32),
                                  tf.TensorSpec((None,), tf.int32)], jit_compile=False, autograph=False)
    def run(x, t, order):
        n = tf.shape(order)[0]

        def body(lo, _):
            idx = order[lo:lo + batch_size]
            return lo + batch_size, one_step(tf.gather(x, idx), tf.gather(t, idx))

        return tf.while_loop(lambda lo, _: lo < n, body, (tf.constant(0), tf.constant(0.0)))[1]

    return run


def _as_float32(a: np.ndarray) -> Any:
    """float16 arrays widened by TensorFlow (exact, like numpy's conversion, but many times faster)."""
    if a.dtype != np.float16:
        return np.asarray(a, dtype=np.float32)
    import tensorflow as tf

    return tf.cast(tf.constant(np.asarray(a)), tf.float32)


def _apply(model: Any, x: np.ndarray, dtype: Any, batch_size: int = 512) -> np.ndarray:
    """`model` (weightless pooling) over `x` in batches, called eagerly (no predict function to
    trace); conversions to and from float16 run in TensorFlow (same rounding, faster than numpy)."""
    import tensorflow as tf

    out = None
    for lo in range(0, len(x), batch_size):
        y = np.asarray(tf.cast(model(_as_float32(x[lo:lo + batch_size]), training=False), tf.as_dtype(dtype)))
        if out is None:
            out = np.empty((len(x),) + y.shape[1:], dtype=dtype)
        out[lo:lo + len(y)] = y
    assert out is not None
    return out


class ExitGraphs:
    """Training graphs of cached-path exits, lent to later exits of the same structure.

    Why: tracing an exit's epoch graph and running it the first time cost about a second, a
    fifth of a small exit's whole training, and repeated backbone blocks give exits of one
    structure (DS-CNN-L's four depthwise-separable blocks: four identical exits). On cached maps
    the graph does not depend on the location. A later exit takes the first one's Keras model,
    optimizer and traced graph, with its own fresh initial values (weights, BatchNorm statistics,
    fake-quant ranges, optimizer state) assigned in place: it trains exactly as its own would."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[Any, Any, Any, Any]] = {}

    def keep(self, key: str, train_model: Any, logits_model: Any, optimizer: Any, run_epoch: Any) -> None:
        self._kept[key] = (train_model, logits_model, optimizer, run_epoch)

    def reuse(self, key: str, fresh_model: Any, fresh_optimizer: Any) -> tuple[Any, Any, Any] | None:
        """(train model, logits model, epoch graph) kept under `key`, reset to `fresh_model`'s and
        a new `fresh_optimizer`'s initial values; None when nothing is kept there."""
        hit = self._kept.get(key)
        if hit is None:
            return None
        train_model, logits_model, optimizer, run_epoch = hit
        for dst, src in zip(train_model.variables, fresh_model.variables, strict=True):
            dst.assign(src)
        fresh_optimizer.build(fresh_model.trainable_variables)
        for dst, src in zip(optimizer.variables, fresh_optimizer.variables, strict=True):
            dst.assign(src)
        return train_model, logits_model, run_epoch


def _after_leading(model: Any, n: int, shape: tuple[int, ...]) -> Any:
    """`model` (a chain built by `build_exit`) without its first `n` layers, reading maps of `shape`;
    the layers, and so the weights, are shared."""
    import keras

    inp = keras.Input(shape)
    h = inp
    for layer in model.layers[1 + n:]:
        h = layer(h)
    return keras.Model(inp, h)


# ---------------------------------------------------------------------------------------------
# Where an exit's input comes from: one interface, two sources


@dataclass(frozen=True)
class Labels:
    """What an exit learns from, besides its input."""
    num_classes: int
    y_train: np.ndarray
    teacher: np.ndarray  # the base model's softmax on the training split (distillation)
    y_cal: np.ndarray  # for the abort check and the temperature


@dataclass(frozen=True)
class CachedMaps:
    """Feature maps at the exit's location, from the feature cache (the search's way).

    `pooled`: they already went through the exit's leading pooling (the cache's `heads`); then
    `input_range` must be the calibration split's (min, max) of the map before it (the cache's
    `ranges`; without it, the range of the maps given). `grid` (an `Int8Grid`): the maps are int8
    codes on it (the int8 cache), dequantized on the fly. `train` None: streamed, the batches
    arrive through `ExitRun.step`."""
    train: np.ndarray | None
    evaluate: dict[str, np.ndarray]  # split → maps
    pooled: bool = False
    input_range: tuple[float, float] | None = None
    grid: Any = None

    @classmethod
    def of(cls, cache: Any, location: str, pooled: bool, streamed: bool = False) -> CachedMaps:
        """The maps of a `FeatureCache` at `location` (train, cal, test; no train when streamed)."""
        return cls(train=None if streamed else cache.features["train"][location],
                   evaluate={s: cache.features[s][location] for s in ("cal", "test")}, pooled=pooled,
                   input_range=cache.ranges["cal"][location], grid=cache.grids.get(location))

    def open(self, plan: ExitPlan) -> _FromCache:
        return _FromCache(self, plan)


@dataclass(frozen=True)
class ThroughBackbone:
    """Model inputs, and `prefix` (a frozen Keras model: input → the exit's feature map) run in
    every step: the benchmark's baseline, and the check that the cache trains the same exit."""
    prefix: Any
    train: np.ndarray
    evaluate: dict[str, np.ndarray]  # split → model inputs

    def open(self, plan: ExitPlan) -> _FromBackbone:
        return _FromBackbone(self, plan)


class _FromCache:
    """CachedMaps prepared for one exit: everything before its first weighted layer is the same
    every epoch, so it is computed here once (the leading pooling, unless the cache did it) or
    once per phase (`_ExitInput`: int8 rounding and standardisation)."""

    shares_graphs = True  # the training graph depends on the exit's structure, not its location

    def __init__(self, maps: CachedMaps, plan: ExitPlan):
        self.maps, self.lead, self.splits = maps, leading_pooling(plan), list(maps.evaluate)
        self._pooled_eval: dict[str, np.ndarray] | None = None
        self.input_range = maps.input_range
        if self.input_range is None:
            if maps.pooled:
                raise ValueError(f"the exit at '{plan.location}': pooled maps need input_range, the (min, max) of the "
                                 "unpooled map on the calibration split (FeatureCache.ranges)")
            cal = np.asarray(_as_float32(self.evaluation("cal")))
            self.input_range = (float(cal.min(initial=0.0)), float(cal.max(initial=0.0)))
        self.tplan, self.train, self.grid = plan, maps.train, maps.grid  # the training inputs and their grid
        if self.lead:
            # weightless: applied to the cached maps once (by the cache itself when `pooled`), not in every step
            head, self.tplan = split_plan(plan, self.lead)
            if not maps.pooled:
                if self.train is None:
                    raise ValueError(f"the exit at '{plan.location}': streamed maps must come pooled")
                if self.grid is not None:
                    self.train, self.grid = self.grid.dequantize_numpy(self.train).astype(np.float16), None
                pool = build_exit(head, name="pool")
                self.train = _apply(pool, self.train, np.float16)
                self._pooled_eval = {k: _apply(pool, self.evaluation(k), np.float32) for k in maps.evaluate}
        elif maps.pooled:
            raise ValueError(f"the exit at '{plan.location}' has no leading pooling to have applied")
        self._plain: _ExitInput | None = None

    def evaluation(self, split: str) -> np.ndarray:
        """The evaluation maps of `split`, as floats (the int8 cache's dequantized: the streaming
        mode holds every pending exit's at once, float32 copies of all would not fit)."""
        a = self.maps.evaluate[split]
        return self.maps.grid.dequantize_numpy(a) if self.maps.grid is not None else a

    def channel_stats(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        if self.train is None:
            raise ValueError("stats must be given for streamed maps")
        feats, g = self.train, self.grid
        widen = (lambda a: g.dequantize_numpy(a)) if g is not None else (lambda a: np.asarray(_as_float32(a)))
        return channel_stats(lambda: (widen(feats[lo:lo + 512]) for lo in range(0, len(feats), 512)), channels)

    def training_model(self, logits_model: Any, quant_aware: bool, norm: Any) -> tuple[Any, Any]:
        """(the model trained, the transform of its inputs): the exit alone; rounding and
        standardisation are applied to the maps (`_ExitInput`)."""
        self._plain = _ExitInput(self.input_range, norm)  # for evaluation maps, dequantized by then
        return logits_model, _ExitInput(self.input_range, norm, self.grid)

    def empty_train(self) -> np.ndarray:
        """A streamed source's (no samples) array: the dtype the batches will have."""
        return np.zeros((0,) + tuple(self.tplan.input_shape), dtype=np.int8 if self.grid is not None else np.float16)

    def cal_in(self, rounding: bool) -> np.ndarray:
        x = self._pooled_eval["cal"] if self._pooled_eval is not None else self.evaluation("cal")
        assert self._plain is not None, "training_model first"
        return self._plain.numpy(x, rounding)

    def release(self) -> None:
        """The cached maps of this location leave the resident set (`features.release_pages`)."""
        for a in [self.maps.train, *self.maps.evaluate.values()]:
            release_pages(a)

    def runners(self, export: Any, export_logits: Any) -> tuple[Any, Any]:
        """The exported exit (softmax, logits) as it reads `evaluation` maps."""
        if self.maps.pooled:  # pooled maps: run the exported exit from after its pooling
            return tuple(_after_leading(m, self.lead, self.tplan.input_shape) for m in (export, export_logits))
        return export, export_logits


class _FromBackbone:
    """ThroughBackbone prepared for one exit: the frozen prefix, the int8 rounding of its map (a
    fake-quant layer) and the standardisation (a Normalization layer) are layers of the graph."""

    shares_graphs = False

    def __init__(self, inputs: ThroughBackbone, plan: ExitPlan):
        self.inputs, self.tplan, self.train, self.grid = inputs, plan, inputs.train, None
        self.splits = list(inputs.evaluate)

    def evaluation(self, split: str) -> np.ndarray:
        return self.inputs.evaluate[split]

    def channel_stats(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        raise ValueError("stats must be given when training through the backbone")

    def training_model(self, logits_model: Any, quant_aware: bool, norm: Any) -> tuple[Any, Any]:
        import keras

        prefix = self.inputs.prefix
        inp = keras.Input(prefix.input_shape[1:])
        h = prefix(inp, training=False)
        if quant_aware:  # the int8 feature map the exit receives on the board (fake_quant.py)
            h = fake_quant_layer("exit_input")(h)
        if norm is not None:
            mean, std = norm
            h = keras.layers.Normalization(axis=-1, mean=mean, variance=std ** 2, name="exit_norm")(h)
        prefix.trainable = False
        return keras.Model(inp, logits_model(h)), None

    def cal_in(self, rounding: bool) -> np.ndarray:
        return self.evaluation("cal")

    def release(self) -> None:
        """Nothing mapped (`_FromCache.release`)."""

    def runners(self, export: Any, export_logits: Any) -> tuple[Any, Any]:
        import keras

        prefix = self.inputs.prefix
        x_in = keras.Input(prefix.input_shape[1:])
        feats_in = prefix(x_in, training=False)
        return keras.Model(x_in, export(feats_in)), keras.Model(x_in, export_logits(feats_in))


# ---------------------------------------------------------------------------------------------
# One exit's training


def train_exit(plan: ExitPlan, inputs: CachedMaps | ThroughBackbone, labels: Labels, config: TrainConfig, seed: int,
               *, stats: tuple[np.ndarray, np.ndarray] | None = None, graphs: ExitGraphs | None = None,
               order_seed: int | None = None) -> tuple[TrainedExit, Any]:
    """Train one exit; return it with its exported (folded) Keras model, or None when aborted.

    `stats`: the per-channel (mean, std) of its input (computed from the cached maps when not
    given). `graphs` lends the training graph of an earlier exit of the same structure (cached
    maps only). `order_seed` seeds the mini-batch order (default: the exit's own seed; the
    streaming mode gives every exit the same order, the one batch the backbone computes)."""
    run = ExitRun(plan, inputs, labels, config, seed, stats=stats, graphs=graphs, order_seed=order_seed)
    for epoch in range(config.epochs):
        run.begin_epoch(epoch)
        run.steps_done += run.source.run(run.run_epoch, run.batches.epoch())
        if not run.end_epoch(epoch):
            break
    return run.finish()


class ExitRun:
    """One exit's training, epoch by epoch: `train_exit` drives it over its own inputs; the
    streaming mode (`streaming.py`) drives many at once, each taking its step (`step`) from the
    batch the backbone has just computed for all. Everything else (seeds, standardisation, abort
    check, int8 epochs, temperature, export) is the same code for both, and for both sources."""

    def __init__(self, plan: ExitPlan, inputs: CachedMaps | ThroughBackbone, labels: Labels, config: TrainConfig,
                 seed: int, *, stats: tuple[np.ndarray, np.ndarray] | None = None, graphs: ExitGraphs | None = None,
                 order_seed: int | None = None):
        import time

        import keras

        self.start = time.monotonic()
        num_classes = labels.num_classes
        self.plan, self.num_classes, self.config, self.y_cal = plan, num_classes, config, labels.y_cal
        s = exit_seed(seed, plan.location)
        keras.utils.set_random_seed(s)
        export, export_logits = build_exit(plan, name="exit", with_logits=True)
        fold_at = foldable_layer(plan)
        # A training-only BatchNormalization before each Dense, when every Dense has a bias to take it.
        bn_ok = all(l["config"].get("use_bias", True) for l in plan.layers if l["class_name"] == "Dense")
        self.input = inp = inputs.open(plan)
        tplan = inp.tplan
        if stats is None and fold_at is not None:
            stats = inp.channel_stats(plan.input_shape[-1])
        norm = stats if fold_at is not None else None
        keras.utils.set_random_seed(s)
        quant_aware = config.quant_aware > 0
        train_model, logits_model = build_exit(tplan, name="exit", with_logits=True, training_bn=bn_ok,
                                               fake_quant=quant_aware, pointwise_dense=True)
        model, entry = inp.training_model(logits_model, quant_aware, norm)
        steps = -(-len(labels.y_train) // config.batch_size)
        schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, max(1, steps * config.epochs))
        optimizer = keras.optimizers.Adam(schedule)
        temperature, alpha = config.temperature, config.distill

        def loss_fn(t, logits):
            hard = keras.losses.categorical_crossentropy(t[:, :num_classes], logits, from_logits=True)
            if alpha <= 0:
                return hard
            soft = keras.losses.categorical_crossentropy(t[:, num_classes:], logits / temperature, from_logits=True)
            return (1 - alpha) * hard + alpha * temperature ** 2 * soft

        targets = _targets(labels.y_train, labels.teacher, num_classes, temperature)
        source = _Source(inp.train if inp.train is not None else inp.empty_train(), targets, entry)
        key = None
        if inp.shares_graphs and graphs is not None:
            key = json.dumps({"input": list(tplan.input_shape), "layers": list(tplan.layers), "bn": bn_ok,
                              "quant": quant_aware, "classes": num_classes, "train": config.to_dict(),
                              "n": len(targets), "dtype": source.dtype.name}, sort_keys=True, default=str)
        kept = graphs.reuse(key, train_model, optimizer) if graphs is not None and key is not None else None
        if kept is not None:
            train_model, model, run_epoch = kept
        else:
            run_epoch = _train_epoch(model, optimizer, loss_fn, tuple(int(d) for d in model.input_shape[1:]),
                                     source.dtype, targets.shape[1], config.batch_size)
            if graphs is not None and key is not None:
                graphs.keep(key, train_model, model, optimizer, run_epoch)
        self.batches = _Batches(len(targets), config.batch_size, s if order_seed is None else order_seed)
        self.chance = float(np.bincount(labels.y_cal, minlength=num_classes).max() / len(labels.y_cal))
        self.source, self.run_epoch, self.model, self.train_model = source, run_epoch, model, train_model
        self.export, self.export_logits, self.norm = export, export_logits, norm
        self.aborted = False
        self.cal_acc = 0.0
        self.epochs = 0
        self.steps_done = 0
        self.checked = False
        self.rounding = False
        self.rounding_from = (config.epochs - int(round(config.quant_aware * config.epochs)) if quant_aware
                              else config.epochs)

    def cal_in(self, rounding: bool) -> np.ndarray:
        """What the training model reads for the calibration split (in the rounding epochs or not)."""
        return self.input.cal_in(rounding)

    def begin_epoch(self, epoch: int) -> None:
        if epoch >= self.rounding_from:  # ranges as the converter will calibrate them, then round
            model = self.model
            calibrate(model, lambda: _predict(model, self.cal_in(False)))
            set_active(model, True)
            self.rounding = True
            self.source.set_phase(True)

    def step(self, xb: Any, idx: np.ndarray) -> None:
        """One optimizer step on the maps `xb` of the training samples `idx` (as the source stores
        them: int8 codes on the int8 cache), for a driver that computes them itself."""
        import tensorflow as tf

        xb = self.source.transform(xb, self.rounding) if self.source.transform is not None else xb
        self.run_epoch(tf.cast(xb, self.source.dtype), tf.gather(self.source.t, tf.constant(idx, dtype=tf.int32)),
                       tf.range(len(idx), dtype=tf.int32))
        self.steps_done += 1

    def end_epoch(self, epoch: int) -> bool:
        """The abort check after the first epoch past `abort_min_steps`; False: stop (abandoned)."""
        self.epochs += 1
        config = self.config
        if not self.checked and (self.steps_done >= config.abort_min_steps or epoch == config.epochs - 1):
            self.checked = True
            cal_logits = _predict(self.model, self.cal_in(self.rounding))
            self.cal_acc = float(np.mean(cal_logits.argmax(1) == self.y_cal))
            if self.cal_acc < self.chance + config.abort_margin:
                self.aborted = True
                return False
        return True

    def finish(self) -> tuple[TrainedExit, Any]:
        import time

        plan, config, y_cal = self.plan, self.config, self.y_cal
        if self.aborted:
            trained = TrainedExit(location=plan.location, plan=plan, probs={}, aborted=True, cal_accuracy=self.cal_acc,
                                  epochs=self.epochs, path=None, seconds=time.monotonic() - self.start,
                                  notes=[f"abandoned after epoch {self.epochs}: calibration accuracy {self.cal_acc:.3f} "
                                         f"is not above chance ({self.chance:.3f}) by {config.abort_margin}"])
            self.input.release()
            return trained, None
        export = self.export
        fold_into_export(self.train_model, export, self.norm)
        runner, runner_logits = self.input.runners(export, self.export_logits)
        maps = {split: self.input.evaluation(split) for split in self.input.splits}  # dequantized once each
        temperature_fit = 1.0
        if config.temperature_scaling and scalable(plan):
            temperature_fit = fit_temperature(_predict(runner_logits, maps["cal"]), y_cal)
            scale_last_layer(export, 1.0 / temperature_fit)
        probs = {split: _predict(runner, x) for split, x in maps.items()}
        cal_acc = float(np.mean(probs["cal"].argmax(1) == y_cal))
        trained = TrainedExit(location=plan.location, plan=plan, probs=probs, aborted=False, cal_accuracy=cal_acc,
                              epochs=self.epochs, path=None, seconds=time.monotonic() - self.start,
                              notes=[f"softmax temperature {temperature_fit:.3f} (fitted on the calibration split)"])
        self.input.release()
        return trained, export
