"""The exit cache: trained exits on disk, so that a killed search resumes where it stopped.

One directory per exit under `<cache>/exits/<key>/`, the key a SHA-256 of (base-model hash,
location, exit structure, data hash, seed, training and augmentation settings). Each entry is
written to a temporary directory and renamed into place, so an entry either exists whole or not
at all; a search killed at any point and started again loads every finished exit and trains
only the rest. An entry damaged afterwards (truncated, files lost) no longer matches its
manifest and is trained again (`ExitStore`).
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from eenn.atomic import staged_directory
from eenn.augment.exits import ExitPlan
from eenn.errors import EennError

if TYPE_CHECKING:
    from eenn.augment.training import TrainConfig

CACHE_FORMAT = 4  # bumped whenever training changes what an exit learns (2: quantization-aware epochs;
#                  3: the input is rounded on the grid of the backbone's map before pooling;
#                  4: entries carry a manifest; older ones, without, would all read as damaged)


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
