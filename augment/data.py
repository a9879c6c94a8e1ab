"""The search's data: load an `.npz`, check it against the model, and fix the three splits.

Why a module of its own: every later step (feature cache keys, exit training, thresholds,
metrics) trusts these arrays, so shape, label and split problems must surface here, once, as
an `EennError` naming the array and what was expected, before anything is trained or written.

Splits (documented in the README, "Search"):
- `x_train, y_train` (required) train the early exits.
- `x_test, y_test`: the split every reported figure is measured on. Absent: a stratified 20 %
  of the training data, chosen with the search seed.
- `x_val, y_val`: the calibration split (thresholds, architecture choice, early abort). Absent,
  `calibration="auto"` takes a stratified 20 % of the remaining training data ("split");
  `calibration="train"` calibrates on the exits' own training data (the paper's fallback,
  over-confident: thresholds are then scaled by the correction factor).
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eenn.errors import EennError

CALIBRATION_MODES = ("auto", "val", "split", "train")
HELD_OUT_FRACTION = 0.2


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_cal: np.ndarray
    y_cal: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    calibration: str  # "val" (given), "split" (held out of train) or "train" (the training data itself)
    test_source: str  # "given" or "split"
    notes: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        """Hash of every array, in a fixed order: part of the key of each cached exit."""
        h = hashlib.sha256()
        for name in ("x_train", "y_train", "x_cal", "y_cal", "x_test", "y_test"):
            a = np.ascontiguousarray(getattr(self, name))
            h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
        h.update(self.calibration.encode())
        return h.hexdigest()

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "calibration": len(self.y_cal), "test": len(self.y_test)}


def _labels(name: str, y: np.ndarray, n: int, num_classes: int) -> np.ndarray:
    """Integer labels from integer or one-hot arrays, all in [0, num_classes)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if y.shape[1] != num_classes:
            raise EennError(f"{name}: one-hot labels with {y.shape[1]} columns, but the model has "
                            f"{num_classes} classes")
        if not np.all(np.isfinite(y)) or np.any(y < 0):
            raise EennError(f"{name}: one-hot labels must be finite and non-negative")
        y = np.argmax(y, axis=1)
    elif y.ndim != 1:
        raise EennError(f"{name}: labels of shape {y.shape}: expected ({n},) integers or ({n}, {num_classes}) one-hot")
    if len(y) != n:
        raise EennError(f"{name}: {len(y)} labels for {n} samples")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise EennError(f"{name}: labels must be integers (class indices), got non-integer values")
    elif y.dtype.kind not in "iu":
        raise EennError(f"{name}: labels of type {y.dtype}: expected integers or one-hot")
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        raise EennError(f"{name}: {int(bad.sum())} label(s) out of range (e.g. {int(y[bad][0])}): the model has "
                        f"{num_classes} classes, labels must be 0 … {num_classes - 1}")
    return y


def _inputs(name: str, x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    if x.dtype.kind not in "fiub":
        raise EennError(f"{name}: array of type {x.dtype}: expected numbers")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise EennError(f"{name}: samples of shape {tuple(x.shape[1:])} do not match the model input "
                        f"{tuple(input_shape)} (array shape {x.shape}, expected (n, {', '.join(map(str, input_shape))}))")
    x = np.asarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise EennError(f"{name}: contains NaN or infinite values")
    return x


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out): `fraction` of every class held out, at least one where a class has two."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        held.append(idx[:k])
        kept.append(idx[k:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def _enough_classes(where: str, got: dict[str, tuple[np.ndarray, np.ndarray]], splits: tuple[np.ndarray, ...],
                    sources: tuple[str, str], notes: list[str]) -> None:
    """A classifier search needs at least 2 classes in the training labels, and in the calibration
    and test splits (one class scores 100 % on anything); a class missing from a split is noted."""
    given = np.unique(got["train"][1])
    if len(given) < 2:
        raise EennError(f"{where}: y_train holds only class {int(given[0])}: a classifier search needs at least "
                        "2 classes present in the training labels")
    y_tr, y_ca, y_te = splits
    mode, test_source = sources
    names = {"calibration": "y_val" if mode == "val" else ("y_train (calibrating on train)" if mode == "train"
                                                           else "the calibration split held out of y_train"),
             "test": "y_test" if test_source == "given" else "the test split held out of y_train"}
    train_classes = set(np.unique(y_tr).tolist())
    for split, y in (("calibration", y_ca), ("test", y_te)):
        present = np.unique(y)
        if len(present) < 2:
            raise EennError(f"{where}: {names[split]} holds only class {int(present[0])}: the {split} split needs "
                            "at least 2 classes (accuracy on one class says nothing about a classifier)")
        lacking = sorted(train_classes - set(present.tolist()))
        if lacking:
            notes.append(f"the {split} split lacks class(es) {', '.join(map(str, lacking[:10]))}"
                         f"{' …' if len(lacking) > 10 else ''} of the training data")


def load_dataset(path: str | Path, input_shape: tuple[int, ...], num_classes: int, seed: int = 0,
                 calibration: str = "auto") -> Dataset:
    """Read and check DATA.npz against the model; make the splits that are missing."""
    p = Path(path)
    if not p.is_file():
        raise EennError(f"data file '{p}' not found")
    if not zipfile.is_zipfile(p):  # np.load would speak of "pickled data" for a text file
        from eenn.augment.model_io import describe_file

        raise EennError(f"{p}: not an .npz archive: expected named arrays written by np.savez(path, x_train=..., "
                        f"y_train=...), this is {describe_file(p)}")
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zip, pickle and format errors all mean the same to the user
        raise EennError(f"{p}: not a readable .npz file ({exc})") from exc
    return dataset_from_arrays(arrays, input_shape, num_classes, seed=seed, calibration=calibration, where=str(p))


def dataset_from_arrays(arrays: dict[str, np.ndarray], input_shape: tuple[int, ...], num_classes: int,
                        seed: int = 0, calibration: str = "auto", where: str = "data") -> Dataset:
    if calibration not in CALIBRATION_MODES:
        raise EennError(f"calibration '{calibration}': expected one of {', '.join(CALIBRATION_MODES)}")
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise EennError(f"{where}: missing array '{key}' (found: {', '.join(sorted(arrays)) or 'none'}); "
                            "expected x_train, y_train and optionally x_val, y_val, x_test, y_test")
    for part in ("val", "test"):
        if (f"x_{part}" in arrays) != (f"y_{part}" in arrays):
            raise EennError(f"{where}: x_{part} and y_{part} must be given together")
    got: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for part in ("train", "val", "test"):
        if f"x_{part}" not in arrays:
            continue
        x = _inputs(f"{where}: x_{part}", arrays[f"x_{part}"], input_shape)
        y = _labels(f"{where}: y_{part}", np.asarray(arrays[f"y_{part}"]), len(x), num_classes)
        if len(x) == 0:
            what = "calibration split" if part == "val" else f"{part} split"
            raise EennError(f"{where}: the {what} (x_{part}) is empty")
        got[part] = (x, y)
    notes: list[str] = []
    x_tr, y_tr = got["train"]
    if "test" in got:
        x_te, y_te = got["test"]
        test_source = "given"
    else:
        keep, held = stratified_split(y_tr, HELD_OUT_FRACTION, seed)
        x_te, y_te, x_tr, y_tr = x_tr[held], y_tr[held], x_tr[keep], y_tr[keep]
        test_source = "split"
        notes.append(f"no x_test: held out {len(held)} training samples (stratified 20 %, seed {seed}) as the test split")
    mode = calibration
    if mode == "auto":
        mode = "val" if "val" in got else "split"
    if mode == "val":
        if "val" not in got:
            raise EennError(f"{where}: calibration 'val' needs x_val, y_val")
        x_ca, y_ca = got["val"]
    elif mode == "split":
        keep, held = stratified_split(y_tr, HELD_OUT_FRACTION, seed + 1)
        x_ca, y_ca, x_tr, y_tr = x_tr[held], y_tr[held], x_tr[keep], y_tr[keep]
        notes.append(f"no x_val: held out {len(held)} training samples (stratified 20 %, seed {seed + 1}) "
                     "as the calibration split")
    else:  # train
        x_ca, y_ca = x_tr, y_tr
        notes.append("calibrating on the training data (over-confident): thresholds are scaled by the correction factor")
    for name, arr in (("training", y_tr), ("calibration", y_ca), ("test", y_te)):
        if len(arr) == 0:
            raise EennError(f"{where}: the {name} split is empty")
    _enough_classes(where, got, (y_tr, y_ca, y_te), (mode, test_source), notes)
    return Dataset(x_train=x_tr, y_train=y_tr, x_cal=x_ca, y_cal=y_ca, x_test=x_te, y_test=y_te,
                   num_classes=num_classes, calibration=mode, test_source=test_source, notes=notes)
