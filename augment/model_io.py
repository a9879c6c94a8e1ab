"""Loading the user's base model (`.keras`, `.h5`, SavedModel directory) with clear errors."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from eenn.errors import EennError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, or of a directory's files in sorted path order."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _load_saved_model(path: Path) -> Any:
    """A SavedModel written by Keras 2 (tf.keras): reload it there, hand it to Keras 3 via HDF5."""
    if not (path / "keras_metadata.pb").is_file():
        raise EennError(f"{path}: a SavedModel without Keras metadata (exported for serving only) has no layer "
                        "graph to analyze: save the model with model.save('model.keras') instead")
    try:
        import tf_keras
    except ImportError as exc:  # pragma: no cover - dependency of eenn
        raise EennError("reading a SavedModel directory needs the tf-keras package") from exc
    import keras

    legacy = tf_keras.models.load_model(str(path), compile=False)
    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "model.h5"
        legacy.save(str(h5))
        return keras.models.load_model(str(h5), compile=False)


def load_model(path: str | Path) -> Any:
    """The Keras 3 model at `path`; an EennError (exit code 2) says what is wrong otherwise."""
    p = Path(path)
    if not p.exists():
        raise EennError(f"model file '{p}' not found")
    import keras

    if p.is_dir():
        if not (p / "saved_model.pb").is_file():
            raise EennError(f"{p}: a directory without saved_model.pb: expected a .keras file, an .h5 file "
                            "or a SavedModel directory")
        model = _load_saved_model(p)
    else:
        if p.suffix not in (".keras", ".h5", ".hdf5"):
            raise EennError(f"{p}: unknown model format '{p.suffix}': expected .keras, .h5 or a SavedModel directory")
        try:
            model = keras.models.load_model(str(p), compile=False)
        except Exception as exc:  # Keras raises many types for a bad file
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EennError(f"{p}: not a readable Keras model ({reason})") from exc
    if not isinstance(model, keras.Model):
        raise EennError(f"{p}: loaded a {type(model).__name__}, expected a Keras Model")
    return model
