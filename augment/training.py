"""Exit training on the frozen backbone, with a disk cache that makes a killed search resumable.

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

On cached maps, everything before the exit's first weighted layer is the same every epoch and
is computed once: the leading pooling (by the feature cache), the int8 rounding of the input
and the standardisation (`_ExitInput`, once per phase). Through the backbone the same steps are
layers of the training graph. Each epoch's steps run as one graph (`_train_epoch`).

The disk cache: one directory per exit under `<cache>/exits/<key>/`, the key a SHA-256 of
(base-model hash, location, exit structure, data hash, seed, training and augmentation
settings). Each entry is written to a temporary directory and renamed into place, so an entry
either exists whole or not at all; a search killed at any point and started again loads every
finished exit and trains only the rest. An entry damaged afterwards (truncated, files lost) no
longer matches its manifest and is trained again (`ExitStore`).
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from eenn.atomic import staged_directory
from eenn.augment.exits import ExitPlan, build_exit, leading_pooling, split_plan
from eenn.augment.fake_quant import calibrate, fake_quant_layer, is_fake_quant, round_int8, set_active
from eenn.errors import EennError

CACHE_FORMAT = 4  # bumped whenever training changes what an exit learns (2: quantization-aware epochs;
#                  3: the input is rounded on the grid of the backbone's map before pooling;
#                  4: entries carry a manifest; older ones, without, would all read as damaged)


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


@dataclass
class TrainedExit:
    location: str
    plan: ExitPlan
    probs: dict[str, np.ndarray]  # split → (N, C) softmax of the exported exit
    aborted: bool
    cal_accuracy: float
    epochs: int
    path: Path | None  # the exit's .keras file (None when aborted)
    from_cache: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def load_model(self):
        import keras

        if self.path is None:
            raise EennError(f"the exit at '{self.location}' was abandoned after its first epoch; it has no model")
        return keras.models.load_model(self.path, compile=False)


def exit_key(model_sha: str, plan: ExitPlan, data_sha: str, seed: int, train: TrainConfig,
             augment: dict[str, Any], mode_extra: dict[str, Any] | None = None) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, "model": model_sha, "location": plan.location, "exit": plan.digest,
                       "data": data_sha, "seed": seed, "train": train.to_dict(), "augment": augment,
                       **(mode_extra or {})}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def exit_seed(seed: int, location: str) -> int:
    """A per-exit seed, so that an exit's result does not depend on what was trained before it."""
    return (seed * 1_000_003 + int(hashlib.sha256(location.encode()).hexdigest()[:8], 16)) % (2**31 - 1)


MANIFEST = "manifest.json"  # written last in an entry: the size and SHA-256 of every other file


def _file_digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


class ExitStore:
    """Trained exits on disk, keyed by `exit_key`; `None` as root disables it.

    An entry is trusted only when its manifest (written last, inside the staged directory that
    is renamed into place) lists every file with the size and SHA-256 it has now: a truncated
    `exit.keras`, a missing or garbled `outputs.npz` or `meta.json` (a full disk, a partial copy
    of the cache) make the entry a miss, said in one line through `warn`, and the exit is
    trained again (its entry replaced)."""

    def __init__(self, root: str | Path | None, warn: Callable[[str], None] | None = None):
        self.root = Path(root) / "exits" if root is not None else None
        self.warn = warn

    def _damaged(self, d: Path, plan: ExitPlan, why: str) -> None:
        if self.warn is not None:
            self.warn(f"exit cache: the entry of the exit at '{plan.location}' ({d}) is damaged ({why}); "
                      "training it again")

    def _verified(self, d: Path, plan: ExitPlan) -> dict[str, Any] | None:
        """The entry's meta.json when every file matches the manifest; None (and a warning) otherwise."""
        try:
            manifest = json.loads((d / MANIFEST).read_text())
            files = manifest["files"]
            if not isinstance(files, dict) or "meta.json" not in files or "outputs.npz" not in files:
                raise ValueError("incomplete file list")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._damaged(d, plan, f"no readable {MANIFEST}: {type(exc).__name__}")
            return None
        for name, want in sorted(files.items()):
            f = d / name
            if not f.is_file():
                self._damaged(d, plan, f"{name} is missing")
                return None
            try:
                got = _file_digest(f)
            except OSError as exc:
                self._damaged(d, plan, f"{name} unreadable: {exc}")
                return None
            if got != want:
                what = "truncated" if got["size"] < want.get("size", 0) else "altered"
                self._damaged(d, plan, f"{name} {what}: {got['size']} bytes, the manifest says {want.get('size')}")
                return None
        try:
            meta = json.loads((d / "meta.json").read_text())
            if not isinstance(meta, dict) or not isinstance(meta["aborted"], bool):
                raise ValueError("not an exit description")
            if not meta["aborted"] and "exit.keras" not in files:
                raise ValueError("a trained exit without exit.keras")
        except (OSError, ValueError, KeyError) as exc:
            self._damaged(d, plan, f"meta.json: {exc}")
            return None
        return meta

    def load(self, key: str, plan: ExitPlan) -> TrainedExit | None:
        if self.root is None:
            return None
        d = self.root / key
        if not d.is_dir():
            return None
        meta = self._verified(d, plan)
        if meta is None:
            return None
        try:
            with np.load(d / "outputs.npz", allow_pickle=False) as npz:
                probs = {k: npz[k] for k in npz.files}
            trained = TrainedExit(location=plan.location, plan=plan, probs=probs, aborted=meta["aborted"],
                                  cal_accuracy=float(meta["cal_accuracy"]), epochs=int(meta["epochs"]),
                                  path=None if meta["aborted"] else d / "exit.keras", from_cache=True,
                                  seconds=float(meta.get("seconds", 0.0)), notes=list(meta.get("notes", [])))
        except Exception as exc:  # whatever a file that passed its hash still holds wrongly: a miss
            self._damaged(d, plan, f"{type(exc).__name__}: {exc}")
            return None
        return trained

    def save(self, key: str, trained: TrainedExit, model: Any | None) -> TrainedExit:
        if self.root is None:
            if model is not None:  # keep the model somewhere readable for the bundle
                tmp = Path(tempfile.mkdtemp(prefix="eenn-exit-"))
                model.save(tmp / "exit.keras")
                trained.path = tmp / "exit.keras"
            return trained
        final = self.root / key
        with staged_directory(final, prefix=f".{key[:12]}-") as tmp:
            if model is not None:
                model.save(tmp / "exit.keras")
            np.savez(tmp / "outputs.npz", **trained.probs)
            (tmp / "meta.json").write_text(json.dumps({"location": trained.location, "aborted": trained.aborted,
                                                       "cal_accuracy": trained.cal_accuracy, "epochs": trained.epochs,
                                                       "seconds": trained.seconds, "exit": trained.plan.describe(),
                                                       "notes": trained.notes}))
            files = {f.name: _file_digest(f) for f in sorted(tmp.iterdir()) if f.is_file()}
            (tmp / MANIFEST).write_text(json.dumps({"format": CACHE_FORMAT, "files": files}, sort_keys=True))
        trained.path = None if trained.aborted else final / "exit.keras"
        return trained


# ---------------------------------------------------------------------------------------------
# Standardisation, folded into the exit's first weighted layer


def channel_stats(chunks: Callable[[], Any], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over an iterable of (n, ..., C) arrays."""
    s = np.zeros(channels)
    s2 = np.zeros(channels)
    n = 0
    for a in chunks():
        a = np.asarray(a, dtype=np.float64).reshape(-1, channels)
        s += a.sum(0)
        s2 += (a * a).sum(0)
        n += len(a)
    mean = s / max(n, 1)
    std = np.sqrt(np.maximum(s2 / max(n, 1) - mean * mean, 0.0))
    return mean, np.maximum(std, 1e-3 * max(float(std.max(initial=0.0)), 1e-6))


_COMMUTING = {"AveragePooling1D", "AveragePooling2D", "MaxPooling1D", "MaxPooling2D", "GlobalAveragePooling1D",
              "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten"}


def foldable_layer(plan: ExitPlan) -> int | None:
    """Index of the first weighted layer when a per-channel affine map before it can be folded into it."""
    for i, layer in enumerate(plan.layers):
        c, cfg = layer["class_name"], layer["config"]
        if c in _COMMUTING:
            continue
        if c == "Dense":
            return i if cfg.get("use_bias", True) else None
        if c in ("Conv1D", "Conv2D"):
            one = all(int(k) == 1 for k in cfg["kernel_size"])
            if not cfg.get("use_bias", True):
                return None
            return i if one or cfg.get("padding", "valid") == "valid" else None
        return None
    return None


def _fold_input_affine(layer: Any, scale: np.ndarray, shift: np.ndarray) -> None:
    """Make `layer` (Conv or Dense) compute on x what it computed on scale·x + shift, per input
    channel (a Dense after Flatten reads channel r mod C at row r)."""
    weights = layer.get_weights()
    kernel = weights[0].astype(np.float64)
    rows = kernel.shape[-2] if kernel.ndim > 2 else kernel.shape[0]
    ch = np.arange(rows) % len(scale)
    a, c = scale[ch], shift[ch]
    if kernel.ndim > 2:  # conv (k..., C_in, C_out)
        new_kernel = kernel * a.reshape((1,) * (kernel.ndim - 2) + (-1, 1))
        delta = np.einsum("kco,c->o", kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1]), c)
    else:  # dense (D, U)
        new_kernel = kernel * a[:, None]
        delta = c @ kernel
    weights[0] = new_kernel.astype(np.float32)
    weights[1] = (weights[1].astype(np.float64) + delta).astype(np.float32)
    layer.set_weights(weights)


def fold_into_export(train_exit: Any, export_exit: Any, stats: tuple[np.ndarray, np.ndarray] | None) -> None:
    """Copy the trained weights into the plain exit (which sees raw feature maps), folding the
    input standardisation (x − mean) / std into the first weighted layer and every training-only
    BatchNormalization into the Dense layer after it."""
    src = [l for l in train_exit.layers if l.weights and not is_fake_quant(l)]
    dst = [l for l in export_exit.layers if l.weights]
    pending_bn: tuple[np.ndarray, np.ndarray] | None = None
    first = True
    it = iter(dst)
    for layer in src:
        if layer.name.endswith("_bnfold"):
            gamma, beta, mean, var = (w.astype(np.float64) for w in layer.get_weights())
            a = gamma / np.sqrt(var + layer.epsilon)
            pending_bn = (a, beta - a * mean)
            continue
        target = next(it)
        # a Dense trained in place of a 1×1 convolution (build_exit's pointwise_dense): same numbers, reshaped
        target.set_weights([w.reshape(t.shape) for w, t in zip(layer.get_weights(), target.get_weights(), strict=True)])
        if pending_bn is not None:
            _fold_input_affine(target, *pending_bn)
            pending_bn = None
        if first and stats is not None:
            mean, std = stats
            _fold_input_affine(target, 1.0 / std, -mean / std)
        first = False


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
    (in the rounding epochs) and standardised. The prefix path computes the same in its graph
    (`exit_input` fake-quant and `exit_norm` layers); on cached maps it is the same every epoch,
    so it is computed once per phase. The int8 range is the calibration split's min/max, 0
    included: what the converter finds for the exit's input, measured on the backbone's own map
    (before the exit's leading pooling: the board pools int8 values on that map's grid)."""

    def __init__(self, value_range: tuple[float, float], stats: tuple[np.ndarray, np.ndarray] | None,
                 grid: Any = None):
        self.lo, self.hi = float(min(0.0, value_range[0])), float(max(0.0, value_range[1]))
        self.grid = grid  # an Int8Grid: the maps given are int8 codes on it (the int8 cache)
        self.mean = self.var = None
        if stats is not None:  # as the prefix path's keras Normalization holds them
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


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T minimising the calibration split's negative log-likelihood of softmax(z / T)
    (temperature scaling): over-confident exits get T > 1, so a threshold means what it says."""
    z = logits.astype(np.float64)
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        a = z / np.exp(log_t)
        a = a - a.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(a).sum(axis=1)) - a[rows, y]))

    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):  # golden-section search; NLL is convex in 1/T
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))


_HOMOGENEOUS = {"AveragePooling1D", "AveragePooling2D", "MaxPooling1D", "MaxPooling2D", "GlobalAveragePooling1D",
                "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten", "Dropout", "ReLU"}


def _scalable(plan: ExitPlan) -> bool:
    """Whether scaling the last weighted layer by 1/T scales the logits by 1/T (positively
    homogeneous layers in between)."""
    layers = [l for l in plan.layers if l["class_name"] != "Softmax"]
    for layer in reversed(layers):
        c = layer["class_name"]
        if c == "Dense" or c.startswith("Conv"):
            return layer["config"].get("activation", "linear") in ("linear", None, "relu")
        if c not in _HOMOGENEOUS:
            return False
    return False


def _scale_last_layer(model: Any, factor: float) -> None:
    layer = [l for l in model.layers if l.weights][-1]
    layer.set_weights([w * np.float32(factor) for w in layer.get_weights()])


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


def train_exit(plan: ExitPlan, num_classes: int, x_train: np.ndarray, teacher: np.ndarray, y_train: np.ndarray,
               evaluate: dict[str, np.ndarray], y_cal: np.ndarray, config: TrainConfig, seed: int,
               prefix: Any = None, stats: tuple[np.ndarray, np.ndarray] | None = None,
               pooled: bool = False, input_range: tuple[float, float] | None = None,
               graphs: ExitGraphs | None = None, grid: Any = None,
               order_seed: int | None = None) -> tuple[TrainedExit, Any]:
    """Train one exit; return it with its exported (folded) Keras model, or None when aborted.

    Without `prefix`, `x_train` and `evaluate[...]` are feature maps (the cache); `pooled` says
    they already went through the exit's leading pooling (`leading_pooling`, the cache's
    `heads`), and then `input_range` is the calibration split's (min, max) of the map before it
    (the cache's `ranges`; without it, the range of the maps given). `graphs` lends the training
    graph of an earlier exit of the same structure. With `prefix`, they are model inputs and
    `prefix` (a frozen Keras model: input → feature map) runs every step. `grid` (an
    `Int8Grid`): the maps are int8 codes on it (the int8 cache), dequantized on the fly.
    `order_seed` seeds the mini-batch order (default: the exit's own seed; the streaming mode
    gives every exit the same order, the one batch the backbone computes).
    """
    run = ExitRun(plan, num_classes, x_train, teacher, y_train, evaluate, y_cal, config, seed, prefix=prefix,
                  stats=stats, pooled=pooled, input_range=input_range, graphs=graphs, grid=grid,
                  order_seed=order_seed)
    for epoch in range(config.epochs):
        run.begin_epoch(epoch)
        run.steps_done += run.source.run(run.run_epoch, run.batches.epoch())
        if not run.end_epoch(epoch):
            break
    return run.finish()


class ExitRun:
    """One exit's training, epoch by epoch: `train_exit` drives it over its own cached maps; the
    streaming mode (`streaming.py`) drives many at once, each taking its step (`step`) from the
    batch the backbone has just computed for all. Everything else (seeds, standardisation, abort
    check, int8 epochs, temperature, export) is the same code for both."""

    def __init__(self, plan: ExitPlan, num_classes: int, x_train: np.ndarray | None, teacher: np.ndarray,
                 y_train: np.ndarray, evaluate: dict[str, np.ndarray], y_cal: np.ndarray, config: TrainConfig,
                 seed: int, prefix: Any = None, stats: tuple[np.ndarray, np.ndarray] | None = None,
                 pooled: bool = False, input_range: tuple[float, float] | None = None,
                 graphs: ExitGraphs | None = None, grid: Any = None, order_seed: int | None = None):
        import time

        import keras

        self.start = time.monotonic()
        self.plan, self.num_classes, self.config, self.y_cal, self.prefix = plan, num_classes, config, y_cal, prefix
        s = exit_seed(seed, plan.location)
        keras.utils.set_random_seed(s)
        export, export_logits = build_exit(plan, name="exit", with_logits=True)
        fold_at = foldable_layer(plan)
        # A training-only BatchNormalization before each Dense, when every Dense has a bias to take it.
        bn_ok = all(l["config"].get("use_bias", True) for l in plan.layers if l["class_name"] == "Dense")
        # int8 cache: the evaluation maps stay int8 and are dequantized where used (`_evaluation`):
        # the streaming mode holds every pending exit at once, float32 copies of all would not fit
        self._raw_eval, self._eval_grid, self._pooled_eval = evaluate, grid, None
        tplan = plan
        lead = leading_pooling(plan) if prefix is None else 0
        if prefix is None and input_range is None:
            if pooled:
                raise ValueError(f"the exit at '{plan.location}': pooled maps need input_range, the (min, max) of the "
                                 "unpooled map on the calibration split (FeatureCache.ranges)")
            cal = np.asarray(_as_float32(self._evaluation("cal")))
            input_range = (float(cal.min(initial=0.0)), float(cal.max(initial=0.0)))
        if lead:
            # The exit's leading pooling has no weights: it is applied to the cached maps once (by the
            # cache itself when `pooled`), not in every step.
            head, tplan = split_plan(plan, lead)
            if not pooled:
                if x_train is None:
                    raise ValueError(f"the exit at '{plan.location}': streamed maps must come pooled")
                if grid is not None:
                    x_train, grid = grid.dequantize_numpy(x_train).astype(np.float16), None
                pool = build_exit(head, name="pool")
                x_train = _apply(pool, x_train, np.float16)
                self._pooled_eval = {k: _apply(pool, self._evaluation(k), np.float32) for k in evaluate}
        elif pooled:
            raise ValueError(f"the exit at '{plan.location}' has no leading pooling to have applied")
        if stats is None and fold_at is not None:
            if prefix is not None or x_train is None:
                raise ValueError("stats must be given when training through a prefix or on streamed maps")
            feats, g = x_train, grid
            widen = (lambda a: g.dequantize_numpy(a)) if g is not None else (lambda a: np.asarray(_as_float32(a)))
            stats = channel_stats(lambda: (widen(feats[lo:lo + 512]) for lo in range(0, len(feats), 512)),
                                  plan.input_shape[-1])
        norm = stats if fold_at is not None else None
        keras.utils.set_random_seed(s)
        quant_aware = config.quant_aware > 0
        train_model, logits_model = build_exit(tplan, name="exit", with_logits=True, training_bn=bn_ok,
                                               fake_quant=quant_aware, pointwise_dense=True)
        entry = None
        if prefix is None:  # the exit's input rounding and standardisation are applied to the cache (_ExitInput)
            entry = _ExitInput(input_range, norm, grid)
            model = logits_model
            self._plain = _ExitInput(input_range, norm)  # for evaluation maps, dequantized by then
        else:
            inp = keras.Input(prefix.input_shape[1:])
            h = prefix(inp, training=False)
            if quant_aware:  # the int8 feature map the exit receives on the board (fake_quant.py)
                h = fake_quant_layer("exit_input")(h)
            if norm is not None:
                mean, std = norm
                h = keras.layers.Normalization(axis=-1, mean=mean, variance=std ** 2, name="exit_norm")(h)
            model = keras.Model(inp, logits_model(h))
            prefix.trainable = False
        steps = -(-len(y_train) // config.batch_size)
        schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, max(1, steps * config.epochs))
        optimizer = keras.optimizers.Adam(schedule)
        temperature, alpha = config.temperature, config.distill

        def loss_fn(t, logits):
            hard = keras.losses.categorical_crossentropy(t[:, :num_classes], logits, from_logits=True)
            if alpha <= 0:
                return hard
            soft = keras.losses.categorical_crossentropy(t[:, num_classes:], logits / temperature, from_logits=True)
            return (1 - alpha) * hard + alpha * temperature ** 2 * soft

        targets = _targets(y_train, teacher, num_classes, temperature)
        if x_train is None:  # streamed: batches arrive through `step`
            source = _Source(np.zeros((0,) + tuple(tplan.input_shape), dtype=np.int8 if grid is not None
                                      else np.float16), targets, entry)
        else:
            source = _Source(x_train, targets, entry)
        key = None
        if prefix is None and graphs is not None:  # the graph depends on the exit's structure, not its location
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
        self.chance = float(np.bincount(y_cal, minlength=num_classes).max() / len(y_cal))
        self.source, self.run_epoch, self.model, self.train_model = source, run_epoch, model, train_model
        self.export, self.export_logits, self.norm, self.lead, self.tplan = export, export_logits, norm, lead, tplan
        self.pooled = pooled
        self.aborted = False
        self.cal_acc = 0.0
        self.epochs = 0
        self.steps_done = 0
        self.checked = False
        self.rounding = False
        self.rounding_from = (config.epochs - int(round(config.quant_aware * config.epochs)) if quant_aware
                              else config.epochs)

    def _evaluation(self, split: str) -> np.ndarray:
        """The evaluation maps (or model inputs) of `split`, as floats."""
        a = self._raw_eval[split]
        return self._eval_grid.dequantize_numpy(a) if self._eval_grid is not None else a

    def cal_in(self, rounding: bool) -> np.ndarray:
        """What the training model reads for the calibration split (in the rounding epochs or not)."""
        x = self._pooled_eval["cal"] if self._pooled_eval is not None else self._evaluation("cal")
        return x if self.prefix is not None else self._plain.numpy(x, rounding)

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

        import keras

        plan, config, y_cal, prefix = self.plan, self.config, self.y_cal, self.prefix
        if self.aborted:
            trained = TrainedExit(location=plan.location, plan=plan, probs={}, aborted=True, cal_accuracy=self.cal_acc,
                                  epochs=self.epochs, path=None, seconds=time.monotonic() - self.start,
                                  notes=[f"abandoned after epoch {self.epochs}: calibration accuracy {self.cal_acc:.3f} "
                                         f"is not above chance ({self.chance:.3f}) by {config.abort_margin}"])
            return trained, None
        export, export_logits = self.export, self.export_logits
        fold_into_export(self.train_model, export, self.norm)
        runner, runner_logits = export, export_logits
        if prefix is not None:
            x_in = keras.Input(prefix.input_shape[1:])
            feats_in = prefix(x_in, training=False)
            runner = keras.Model(x_in, export(feats_in))
            runner_logits = keras.Model(x_in, export_logits(feats_in))
        elif self.pooled:  # `evaluate` holds pooled maps: run the exported exit from after its pooling
            runner, runner_logits = (_after_leading(m, self.lead, self.tplan.input_shape) for m in (export, export_logits))
        temperature_fit = 1.0
        if config.temperature_scaling and _scalable(plan):
            temperature_fit = fit_temperature(_predict(runner_logits, self._evaluation("cal")), y_cal)
            _scale_last_layer(export, 1.0 / temperature_fit)
        probs = {split: _predict(runner, self._evaluation(split)) for split in self._raw_eval}
        cal_acc = float(np.mean(probs["cal"].argmax(1) == y_cal))
        trained = TrainedExit(location=plan.location, plan=plan, probs=probs, aborted=False, cal_accuracy=cal_acc,
                              epochs=self.epochs, path=None, seconds=time.monotonic() - self.start,
                              notes=[f"softmax temperature {temperature_fit:.3f} (fitted on the calibration split)"])
        return trained, export
