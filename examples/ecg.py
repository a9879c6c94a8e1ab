"""ECG example: a 1-D fully convolutional heartbeat classifier on MIT-BIH, then `eenn search` on psoc6.

    python examples/ecg.py [--data-dir ../shared/data] [--work runs/ecg] [--latency 2.5] [--w 0.9]

Data (read from `<data-dir>/ecg/mitdb`, never copied into the repository):
- every annotated beat of the six classes N, L, R, V, /, A (labels 0…5 in that order) in the
  records that have lead MLII (all but 102 and 104; in 114 it is the second channel);
- a window of 256 samples (0.71 s at 360 Hz) around the R peak, 96 before and 160 after it,
  standardised per beat (zero mean, unit variance);
- at most 4,000 beats per class, drawn with seed 0 (N alone has 75,052), so that the classes
  weigh comparably and the search stays short;
- split by beat with a fixed seed (seed 0), stratified: 60 % train (base model and exits),
  20 % validation (calibration), 20 % test. A beat-level split puts beats of one patient in
  several splits, so the absolute accuracies are optimistic next to a by-record split; the
  comparison base vs EENN, on the same test beats, is what this example reports.

The base model (trained here, cached in `--work`): five Conv1D-BN-ReLU blocks (16, 32, 64, 64,
128 filters; max pooling after the first three), global average pooling and a softmax Dense.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import parser, search_and_write  # noqa: E402  (examples/common.py)

CLASSES = ("N", "L", "R", "V", "/", "A")
WINDOW = (96, 160)
PER_CLASS = 4000
SEED = 0
EXIT_BUDGET = 0.05  # each exit's MACs under this share of the backbone's (eenn's default)


def load_beats(mitdb: Path) -> tuple[np.ndarray, np.ndarray]:
    """All beats of the six classes around MLII R peaks: (n, 256, 1) standardised, labels 0…5."""
    import wfdb

    xs, ys = [], []
    records = sorted(p.stem for p in mitdb.glob("*.hea"))
    if not records:
        raise SystemExit(f"no MIT-BIH records in {mitdb} (set --data-dir or $EENN_DATA_DIR)")
    before, after = WINDOW
    for rec in records:
        header = wfdb.rdheader(str(mitdb / rec))
        if "MLII" not in header.sig_name:
            continue
        ch = header.sig_name.index("MLII")
        sig = wfdb.rdrecord(str(mitdb / rec), channels=[ch]).p_signal[:, 0].astype(np.float32)
        ann = wfdb.rdann(str(mitdb / rec), "atr")
        for pos, sym in zip(ann.sample, ann.symbol):
            if sym not in CLASSES or pos - before < 0 or pos + after > len(sig):
                continue
            w = sig[pos - before:pos + after]
            xs.append((w - w.mean()) / (w.std() + 1e-6))
            ys.append(CLASSES.index(sym))
    return np.stack(xs)[..., None], np.array(ys, dtype=np.int64)


def make_dataset(mitdb: Path, out: Path) -> dict[str, np.ndarray]:
    if out.is_file():
        with np.load(out) as npz:
            return {k: npz[k] for k in npz.files}
    from eenn.augment.data import stratified_split

    x, y = load_beats(mitdb)
    rng = np.random.default_rng(SEED)
    keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:PER_CLASS] for c in range(len(CLASSES))])
    x, y = x[np.sort(keep)], y[np.sort(keep)]
    rest, test = stratified_split(y, 0.2, SEED)
    train, val = stratified_split(y[rest], 0.25, SEED + 1)
    train, val = rest[train], rest[val]
    data = {"x_train": x[train], "y_train": y[train], "x_val": x[val], "y_val": y[val],
            "x_test": x[test], "y_test": y[test]}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **data)
    return data


def ecg_fcn(length: int = sum(WINDOW), classes: int = len(CLASSES)):
    import keras

    L = keras.layers
    inp = keras.Input((length, 1), name="beat")
    x = inp
    for i, (filters, kernel, pool) in enumerate([(16, 7, True), (32, 5, True), (64, 5, True), (64, 3, False),
                                                  (128, 3, False)]):
        x = L.Conv1D(filters, kernel, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = L.BatchNormalization(name=f"bn{i}")(x)
        x = L.ReLU(name=f"relu{i}")(x)
        if pool:
            x = L.MaxPooling1D(2, name=f"pool{i}")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    out = L.Dense(classes, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name="ecg_fcn")


def train_base(data: dict[str, np.ndarray], path: Path, epochs: int = 12) -> Path:
    if path.is_file():
        return path
    import keras

    keras.utils.set_random_seed(SEED)
    model = ecg_fcn()
    steps = epochs * -(-len(data["y_train"]) // 64)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t = time.monotonic()
    model.fit(data["x_train"], data["y_train"], validation_data=(data["x_val"], data["y_val"]), epochs=epochs,
              batch_size=64, verbose=2)
    print(f"base model trained in {time.monotonic() - t:.0f} s")
    model.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0], "runs/ecg", epochs=10, augment=1, exit_budget=EXIT_BUDGET).parse_args(argv)
    mitdb = args.data_dir / "ecg" / "mitdb"
    data = make_dataset(mitdb, args.work / "beats.npz")
    print("splits: " + ", ".join(f"{k[2:]} {len(v)}" for k, v in data.items() if k.startswith("y_"))
          + " (per class in test: " + ", ".join(f"{c} {int((data['y_test'] == i).sum())}" for i, c in enumerate(CLASSES)) + ")")
    model = train_base(data, args.work / "ecg_fcn.keras")
    return search_and_write(model, args.work / "beats.npz", args, SEED)


if __name__ == "__main__":
    sys.exit(main())
