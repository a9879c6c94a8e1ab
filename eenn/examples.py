"""The built-in example: a real dataset that ships inside a PyPI package, and a small CNN.

scikit-learn carries the UCI handwritten digits (1,797 8×8 images, 10 classes) in its wheel, so
the example runs on a fresh machine with no download. The split is fixed by a seed and
stratified, so every figure derived from it is reproducible.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from eenn.quiet_tf import quiet_log_level

quiet_log_level()

EXAMPLES = ("digits",)


def digits_dataset(seed: int = 0) -> dict[str, np.ndarray]:
    """Train / validation (calibration) / test split, 60 / 20 / 20 %, stratified by class."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[..., None]  # (n, 8, 8, 1) in [0, 1]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = n_test = round(0.2 * len(idx))
        parts["val"] += idx[:n_val].tolist()
        parts["test"] += idx[n_val:n_val + n_test].tolist()
        parts["train"] += idx[n_val + n_test:].tolist()
    out = {}
    for name, idx in parts.items():
        idx = np.array(sorted(idx))
        out[f"x_{name}"], out[f"y_{name}"] = x[idx], y[idx]
    return out


def digits_cnn(num_classes: int = 10):
    """Three conv blocks and a GAP + Dense head: ~30 k MACs, trains in seconds on a CPU."""
    import keras

    L = keras.layers
    inp = keras.Input((8, 8, 1), name="pixels")
    x = L.Conv2D(16, 3, padding="same", name="conv1")(inp)
    x = L.BatchNormalization(name="conv1_bn")(x)
    x = L.ReLU(name="conv1_relu")(x)
    x = L.Conv2D(32, 3, padding="same", name="conv2")(x)
    x = L.BatchNormalization(name="conv2_bn")(x)
    x = L.ReLU(name="conv2_relu")(x)
    x = L.MaxPooling2D(name="pool2")(x)
    x = L.Conv2D(64, 3, padding="same", name="conv3")(x)
    x = L.BatchNormalization(name="conv3_bn")(x)
    x = L.ReLU(name="conv3_relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inp, out, name="digits_cnn")


def make_example(name: str, out_dir: str | Path, seed: int = 0, epochs: int = 30) -> tuple[Path, Path]:
    """Write `model.keras` (trained) and `data.npz` for example `name`; return their paths."""
    if name not in EXAMPLES:
        from eenn.errors import EennError

        raise EennError(f"unknown example '{name}': expected one of {', '.join(EXAMPLES)}")
    import keras

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = digits_dataset(seed)
    keras.utils.set_random_seed(seed)
    model = digits_cnn()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data["x_train"], data["y_train"], validation_data=(data["x_val"], data["y_val"]),
              epochs=epochs, batch_size=64, verbose=0)
    model_path, data_path = out / "model.keras", out / "data.npz"
    model.save(model_path)
    np.savez_compressed(data_path, **data)
    return model_path, data_path
