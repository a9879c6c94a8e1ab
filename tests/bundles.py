"""Small solution bundles for code generation tests, built by hand until the search lands.

A trained chain model is cut after one layer into `segment_0` (input → feature map) and
`segment_1` (feature map → final softmax); a small exit (global pooling + dense softmax) is
trained on the frozen feature map; the bundle is written with `augment.bundle.write_bundle`
exactly as docs/interfaces.md §2 describes (base.keras, calibration.npz `x`, test.npz `x`, `y`).
`float_eenn` gives the float EENN's classes and exits, the reference for int8 accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eenn.augment.bundle import BaseModelInfo, ExitSpec, SegmentSpec, Solution, write_bundle
from eenn.augment.hardware import load_profile
from eenn.quiet_tf import quiet_log_level

METRIC_KEYS = ("accuracy", "precision", "recall", "mean_macs", "mean_latency_s", "worst_latency_s", "mean_energy_j")


@dataclass
class Split:
    base: object
    segments: list
    exits: list


def split_chain(base, cuts: list[str]):
    """Segments of a chain (single-path) functional model, cut after each layer in `cuts`."""
    import keras

    layers = base.layers
    names = [layer.name for layer in layers]
    bounds = [names.index(c) for c in cuts]
    segments = [keras.Model(base.inputs, base.get_layer(cuts[0]).output, name="segment_0")]
    for i, b in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else len(layers) - 1
        inp = keras.Input(tuple(base.get_layer(cuts[i]).output.shape[1:]), name=f"fm{i}")
        x = inp
        for layer in layers[b + 1:end + 1]:
            x = layer(x)
        segments.append(keras.Model(inp, x, name=f"segment_{i + 1}"))
    return segments


def train_exit(fm_model, x, y, num_classes: int, name: str, epochs: int = 20, seed: int = 0):
    """An average-pooling + flatten + dense softmax exit trained on the frozen feature map."""
    import keras

    keras.utils.set_random_seed(seed)
    feats = np.asarray(fm_model.predict(x, verbose=0, batch_size=256))
    inp = keras.Input(feats.shape[1:], name=f"{name}_in")
    pool = keras.layers.AveragePooling2D if feats.ndim == 4 else keras.layers.AveragePooling1D
    h = pool(2, name=f"{name}_pool")(inp)
    h = keras.layers.Flatten(name=f"{name}_flat")(h)
    out = keras.layers.Dense(num_classes, activation="softmax", name=f"{name}_fc")(h)
    ex = keras.Model(inp, out, name=name)
    ex.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    ex.fit(feats, y, epochs=epochs, batch_size=64, verbose=0)
    return ex


def float_eenn(segments, exits, thresholds, x):
    """Float EENN: per sample (class, exit) with the max-softmax rule."""
    n = len(x)
    cls = np.full(n, -1)
    ex = np.full(n, -1)
    h = np.asarray(x, dtype=np.float32)
    for k, seg in enumerate(segments):
        h = np.asarray(seg.predict(h, verbose=0, batch_size=256))
        if k < len(exits):
            p = np.asarray(exits[k].predict(h, verbose=0, batch_size=256))
            take = (ex < 0) & (p.max(axis=1) >= thresholds[k])
        else:
            p, take = h, ex < 0
        cls[take], ex[take] = p.argmax(axis=1)[take], k
    return cls, ex


def write_test_bundle(out: Path, base, segments, exits, thresholds, x_calib, x_test, y_test, *,
                      processors=("cm0p", "cm4"), cuts: list[str], source: str = "test-model.keras",
                      confidence: str = "max", placement: str | None = None, hardware: dict | None = None) -> str:
    """Write a schema-1 bundle; return its hash. `processors[k]` is segment k's processor (its exit's
    too); `placement` ("any" / "boundary") is written as search.placement when given."""
    quiet_log_level("3")
    num_classes = int(base.outputs[0].shape[-1])
    cls, ex = float_eenn(segments, exits, thresholds, x_test)
    acc = float(np.mean(cls == y_test))
    base_acc = float(np.mean(np.argmax(base.predict(x_test, verbose=0), axis=1) == y_test))
    rates = [float(np.mean(ex == k)) for k in range(len(segments))]
    metrics = {"split": "test", "n": len(y_test),
               "base": {**{k: 0.0 for k in METRIC_KEYS}, "accuracy": base_acc},
               "eenn": {**{k: 0.0 for k in METRIC_KEYS}, "accuracy": acc, "early_termination": 1.0 - rates[-1],
                        "termination_rates": rates}}
    hw = hardware if hardware is not None else load_profile("psoc6").to_dict()
    sol = Solution(
        base_model=BaseModelInfo(source=source, sha256="0" * 64, file="base.keras",
                                 input_shape=[int(d) for d in base.inputs[0].shape[1:]], num_classes=num_classes,
                                 total_macs=0),
        hardware=hw,
        search={"objective": "weighted", "w": 0.9, "max_accuracy_drop": None, "latency_bound_s": None,
                "confidence": confidence, "threshold_grid": [], "calibration": "val", "correction": 1.0, "seed": 0,
                "fine_tuned": False, **({} if placement is None else {"placement": placement})},
        segments=[SegmentSpec(index=k, processor=processors[k], first_layer="?", last_layer=(cuts + ["output"])[k],
                              file=f"segment_{k}.keras", macs=1000 * (k + 1),
                              output_shape=[int(d) for d in seg.outputs[0].shape[1:]])
                  for k, seg in enumerate(segments)],
        exits=[ExitSpec(index=k, after_layer=cuts[k], processor=processors[k], threshold=float(thresholds[k]),
                        file=f"exit_{k}.keras", macs=100) for k in range(len(exits))],
        metrics=metrics,
        generator="tests/bundles.py",
    )

    def populate(tmp: Path) -> None:
        base.save(tmp / "base.keras")
        for k, seg in enumerate(segments):
            seg.save(tmp / f"segment_{k}.keras")
        for k, e in enumerate(exits):
            e.save(tmp / f"exit_{k}.keras")
        np.savez(tmp / "calibration.npz", x=np.asarray(x_calib, dtype=np.float32))
        np.savez(tmp / "test.npz", x=np.asarray(x_test, dtype=np.float32), y=np.asarray(y_test, dtype=np.int64))

    return write_bundle(out, sol, populate)


def median_threshold(exit_model, fm_model, x, quantile: float = 0.5) -> float:
    """A threshold at a quantile of the max-softmax (median: about half of the samples exit early)."""
    p = exit_model.predict(fm_model.predict(x, verbose=0), verbose=0)
    return round(float(np.quantile(p.max(axis=1), quantile)), 3)


# ---------------------------------------------------------------------------------- models
def _digits_cnn(d: dict, seed: int):
    """The small digits CNN (conv block, depthwise-separable block, conv, pooling), trained 20 epochs."""
    import keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((8, 8, 1), name="pixels")
    x = L.Conv2D(8, 3, padding="same", name="conv1")(inp)
    x = L.BatchNormalization(name="conv1_bn")(x)
    x = L.ReLU(name="conv1_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw2")(x)
    x = L.ReLU(name="dw2_relu")(x)
    x = L.Conv2D(16, 1, name="pw2")(x)
    x = L.ReLU(name="pw2_relu")(x)
    x = L.MaxPooling2D(name="pool2")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outp = L.Dense(10, activation="softmax", name="classifier")(x)
    base = keras.Model(inp, outp, name="digits_small")
    base.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    base.fit(d["x_train"], d["y_train"], epochs=20, batch_size=32, verbose=0)
    return base


def digits_bundle(out: Path, seed: int = 0) -> dict:
    """2-D: the built-in digits data, a small CNN cut after its first conv block."""
    from eenn.examples import digits_dataset

    d = digits_dataset(seed)
    base = _digits_cnn(d, seed)
    cuts = ["conv1_relu"]
    segments = split_chain(base, cuts)
    ex = train_exit(segments[0], d["x_train"], d["y_train"], 10, "exit_0", seed=seed)
    thr = [median_threshold(ex, segments[0], d["x_val"])]
    h = write_test_bundle(out, base, segments, [ex], thr, d["x_val"][:200], d["x_test"], d["y_test"], cuts=cuts,
                          source="digits_small")
    return {"path": out, "hash": h, "segments": segments, "exits": [ex], "thresholds": thr, "base": base,
            "x_test": d["x_test"], "y_test": d["y_test"]}


_placed_parts: dict = {}


def _digits_three_stages(seed: int) -> dict:
    """The digits CNN cut after conv1_relu and pool2 (three segments, two exits), trained once."""
    if seed in _placed_parts:
        return _placed_parts[seed]
    import keras

    from eenn.examples import digits_dataset

    d = digits_dataset(seed)
    base = _digits_cnn(d, seed)
    cuts = ["conv1_relu", "pool2"]
    segments = split_chain(base, cuts)
    fm0 = segments[0]
    fm1 = keras.Sequential([fm0, segments[1]])
    ex0 = train_exit(fm0, d["x_train"], d["y_train"], 10, "exit_0", seed=seed)
    ex1 = train_exit(fm1, d["x_train"], d["y_train"], 10, "exit_1", seed=seed)
    # about a third of the samples at each exit: exit 0 takes its most confident third, exit 1 half of the rest
    thr = [median_threshold(ex0, fm0, d["x_val"], 2 / 3), median_threshold(ex1, fm1, d["x_val"], 0.5)]
    _placed_parts[seed] = {"base": base, "segments": segments, "exits": [ex0, ex1], "thresholds": thr, "cuts": cuts,
                           "data": d}
    return _placed_parts[seed]


def placed_digits_bundle(out: Path, processors: tuple[str, str, str], seed: int = 0,
                         hardware: dict | None = None) -> dict:
    """Three stages of the digits CNN placed on `processors` (one per segment, e.g. ("cm4", "cm4",
    "cm4"): both exits on the CM4, or ("cm0p", "cm0p", "cm4")), search.placement "any"."""
    p = _digits_three_stages(seed)
    d = p["data"]
    h = write_test_bundle(out, p["base"], p["segments"], p["exits"], p["thresholds"], d["x_val"][:200], d["x_test"],
                          d["y_test"], processors=processors, cuts=p["cuts"], source="digits_small", placement="any",
                          hardware=hardware)
    return {"path": out, "hash": h, **{k: p[k] for k in ("segments", "exits", "thresholds", "base")},
            "x_test": d["x_test"], "y_test": d["y_test"], "processors": processors}


def ecg_bundle(out: Path, seed: int = 0) -> dict:
    """1-D: synthetic 4-class waveforms (sine / square / saw / noise bursts), a Conv1D net."""
    import keras

    rng = np.random.default_rng(seed)
    n, length = 900, 64
    y = rng.integers(0, 4, n)
    t = np.linspace(0, 1, length, dtype=np.float32)
    f = rng.uniform(2, 6, n).astype(np.float32)[:, None]
    ph = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None]
    s = np.sin(2 * np.pi * f * t + ph)
    waves = np.stack([s, np.sign(s), 2 * ((f * t + ph / 6.28) % 1.0) - 1, rng.normal(0, 1, (n, length))], axis=0)
    x = waves[y, np.arange(n)] + rng.normal(0, 0.6, (n, length))
    x = x.astype(np.float32)[..., None]
    x_train, y_train, x_val, x_test, y_test = x[:600], y[:600], x[600:700], x[700:], y[700:]
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((length, 1), name="beat")
    h = L.Conv1D(8, 7, padding="same", name="conv0")(inp)
    h = L.BatchNormalization(name="bn0")(h)
    h = L.ReLU(name="relu0")(h)
    h = L.MaxPooling1D(2, name="pool0")(h)
    h = L.Conv1D(16, 5, padding="same", name="conv1")(h)
    h = L.ReLU(name="relu1")(h)
    h = L.MaxPooling1D(2, name="pool1")(h)
    h = L.Conv1D(16, 3, padding="same", activation="relu", name="conv2")(h)
    h = L.GlobalAveragePooling1D(name="gap")(h)
    outp = L.Dense(4, activation="softmax", name="fc")(h)
    base = keras.Model(inp, outp, name="ecg_small")
    base.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    base.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
    cuts = ["pool0"]
    segments = split_chain(base, cuts)
    ex = train_exit(segments[0], x_train, y_train, 4, "exit_0", seed=seed)
    thr = [median_threshold(ex, segments[0], x_val)]
    hsh = write_test_bundle(out, base, segments, [ex], thr, x_val, x_test, y_test, cuts=cuts, source="ecg_small")
    return {"path": out, "hash": hsh, "segments": segments, "exits": [ex], "thresholds": thr, "base": base,
            "x_test": x_test, "y_test": y_test}


def with_hardware(src: Path, out: Path, hardware: dict) -> str:
    """A copy of bundle `src` whose solution.json carries `hardware` (as if searched on it); its hash."""
    import dataclasses
    import shutil

    from eenn.augment.bundle import load_bundle

    b = load_bundle(src)
    sol = dataclasses.replace(b.solution, hardware=hardware)

    def populate(tmp: Path) -> None:
        for name in b.solution.files:
            shutil.copy2(b.file(name), tmp / name)

    return write_bundle(out, sol, populate)


def fixed_weights_bundle(out: Path, seed: int = 7) -> str:
    """A two-stage bundle whose weights come from a seeded numpy generator, not from training, so
    the same seed writes the same models on every machine (the golden-project test's input)."""
    import keras

    rng = np.random.default_rng(seed)
    L = keras.layers
    inp = keras.Input((8, 8, 1), name="pixels")
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inp)
    x = L.MaxPooling2D(name="pool1")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    base = keras.Model(inp, L.Dense(3, activation="softmax", name="classifier")(x), name="fixed")
    ex_in = keras.Input((4, 4, 4), name="exit_0_in")
    ex = keras.Model(ex_in, L.Dense(3, activation="softmax", name="exit_0_fc")(L.Flatten(name="exit_0_flat")(ex_in)),
                     name="exit_0")
    for model in (base, ex):
        model.set_weights([rng.normal(0.0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    segments = split_chain(base, ["pool1"])
    x_calib = rng.uniform(0.0, 1.0, (32, 8, 8, 1)).astype(np.float32)
    x_test = rng.uniform(0.0, 1.0, (16, 8, 8, 1)).astype(np.float32)
    y_test = rng.integers(0, 3, 16)
    return write_test_bundle(out, base, segments, [ex], [0.5], x_calib, x_test, y_test, cuts=["pool1"],
                             source="fixed-weights")
