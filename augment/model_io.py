"""Loading the user's base model (`.keras`, `.h5`, SavedModel directory) with clear errors."""
from __future__ import annotations

import hashlib
import json
import zipfile
import tempfile
from pathlib import Path
from typing import Any

from eenn.errors import EennError
from eenn.quiet_tf import quiet_log_level

quiet_log_level()


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


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def describe_file(path: Path) -> str:
    """What a file that is not what its name says holds, in a few words, for an error message."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return "an empty file"
    if head.startswith(HDF5_SIGNATURE):
        return "an HDF5 file"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive"
    if head.startswith(b"\x93NUMPY"):
        return "a single NumPy array (.npy)"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return f"{path.stat().st_size} bytes of binary data"


def _check_format(p: Path) -> None:
    """A .keras file is a zip archive, an .h5 file HDF5: say so before Keras reports something
    misleading ("File not found" for a text file named .keras)."""
    what = describe_file(p)
    if p.suffix == ".keras" and not zipfile.is_zipfile(p):
        hint = ": rename it to .h5" if what == "an HDF5 file" else ""
        raise EennError(f"{p}: not a Keras model: a .keras file is a zip archive written by model.save(), "
                        f"this is {what}{hint}")
    if p.suffix in (".h5", ".hdf5") and what != "an HDF5 file":
        hint = ": rename it to .keras" if what == "a zip archive" else ""
        raise EennError(f"{p}: not a Keras model: an {p.suffix} file is HDF5 written by model.save(), this is {what}{hint}")


def _model_config(p: Path) -> Any:
    """The model's architecture as JSON, read without building it (None where it cannot be read)."""
    try:
        if p.suffix == ".keras":
            with zipfile.ZipFile(p) as z:
                return json.loads(z.read("config.json"))
        import h5py

        with h5py.File(p, "r") as f:
            raw = f.attrs.get("model_config")
            return json.loads(raw.decode() if isinstance(raw, bytes) else raw) if raw is not None else None
    except Exception:  # unreadable here: Keras' own loading reports it
        return None


def lambda_layers(config: Any) -> list[str]:
    """Names of the Lambda layers anywhere in a Keras model config (nested models included)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                cfg = node.get("config") or {}
                found.append(str(cfg.get("name", "?")) if isinstance(cfg, dict) else "?")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config)
    return found


def _no_lambda(p: Path, names: list[str]) -> None:
    if names:
        which = ", ".join(f"'{n}'" for n in names)
        raise EennError(f"{p}: layer{'s' if len(names) > 1 else ''} {which} "
                        f"{'are Lambda layers' if len(names) > 1 else 'is a Lambda layer'} (arbitrary Python "
                        "code): eenn cannot analyse it nor convert it to int8 for the MCU; replace it with built-in "
                        "Keras layers (e.g. Rescaling, Reshape, Permute, Activation, Add, Multiply) and save the "
                        "model again")


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        out.extend(_all_layers(layer))
    return out


def check_classifier(model: Any, p: Path) -> None:
    """eenn needs a classifier: one output of (batch, classes) with at least 2 classes."""
    if len(model.outputs) != 1:
        raise EennError(f"{p}: the model has {len(model.outputs)} outputs: expected one classifier output "
                        "(softmax or logits over the classes)")
    shape = tuple(model.outputs[0].shape)
    units = shape[-1] if shape else None
    if units is not None and units < 2:
        raise EennError(f"{p}: the model's output has {units} unit (shape {shape}): it is not a classifier. "
                        "eenn needs a classifier with at least 2 output classes (softmax or logits); a regression "
                        "or single-sigmoid model cannot have early exits (for two classes use Dense(2) + softmax)")


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
        _check_format(p)
        _no_lambda(p, lambda_layers(_model_config(p)))
        try:
            model = keras.models.load_model(str(p), compile=False)
        except Exception as exc:  # Keras raises many types for a bad file
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "safe_mode" in str(exc):  # custom Python code Keras will not run: not something eenn can use
                raise EennError(f"{p}: the model holds Python code (a Lambda layer or a custom object) that eenn "
                                "cannot analyse nor convert for the MCU; replace it with built-in Keras layers "
                                "and save the model again") from exc
            raise EennError(f"{p}: not a readable Keras model ({reason})") from exc
    if not isinstance(model, keras.Model):
        raise EennError(f"{p}: loaded a {type(model).__name__}, expected a Keras Model")
    _no_lambda(p, [l.name for l in _all_layers(model) if type(l).__name__ == "Lambda"])
    check_classifier(model, p)
    return model
