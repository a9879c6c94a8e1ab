"""Keras parts of a solution bundle → full-integer int8 TFLite: the one converter of eenn.

The search scores its candidates on the int8 outputs the board computes (augment/int8_scoring.py)
and `eenn generate` converts the per-processor subgraphs (codegen/subgraphs.py); both call
`convert_int8` here, so they calibrate and round alike. Conversion settings: `batch_size=1`
inputs (no SHAPE/STRIDED_SLICE/PACK ops from a dynamic batch), `TFLITE_BUILTINS_INT8`, int8 input
and outputs, the given samples as representative set.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from eenn.augment.bundle import Bundle
from eenn.augment.tflite_model import TfliteModel
from eenn.errors import EennError
from eenn.quiet_tf import captured_output, quiet_log_level


@dataclass(frozen=True)
class KerasParts:
    segments: list[Any]
    exits: list[Any]
    base: Any


@contextlib.contextmanager
def quiet_tf():
    quiet_log_level("3")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def load_parts(bundle: Bundle) -> KerasParts:
    """The bundle's Keras models (hash-verified by `load_bundle` before)."""
    with quiet_tf():
        import keras

        def load(name: str):
            path = bundle.file(name)
            try:
                return keras.models.load_model(path, compile=False)
            except Exception as exc:  # noqa: BLE001 - any loader failure is a bad bundle
                raise EennError(f"{path}: cannot load the Keras model ({type(exc).__name__}: {exc})") from exc

        sol = bundle.solution
        return KerasParts(segments=[load(s.file) for s in sol.segments], exits=[load(e.file) for e in sol.exits],
                          base=load(sol.base_model.file))


def input_shape(model) -> tuple[int, ...]:
    shapes = [tuple(t.shape) for t in model.inputs]
    if len(shapes) != 1:
        raise EennError(f"Keras model '{model.name}' has {len(shapes)} inputs; a segment or exit takes one tensor")
    return tuple(int(d) for d in shapes[0][1:])


def _unique_names(models: list[Any]) -> None:
    """One graph cannot hold two sub-models of one name; every trained exit is called `exit`, so
    the second and later get their index appended (names only: weights and graphs are untouched)."""
    seen: set[str] = set()
    for k, m in enumerate(models):
        if m.name in seen:
            m.name = f"{m.name}_{k}"
        seen.add(m.name)


def whole_keras_model(parts: KerasParts):
    """The whole EENN in one graph: input → [exit 0, …, exit n−2, final]."""
    import keras

    _unique_names([*parts.segments, *parts.exits])
    inp = keras.Input(input_shape(parts.segments[0]), batch_size=1, name="eenn_input")
    x, outs = inp, []
    for k, seg in enumerate(parts.segments):
        x = seg(x)
        if k < len(parts.exits):
            outs.append(parts.exits[k](x))
    return keras.Model(inp, [*outs, x], name="eenn_whole")


def convert_int8(model, calibration: np.ndarray, traced: bool = False) -> bytes:
    """Full-integer int8 TFLite (int8 input and outputs) with `calibration` as representative set.

    `traced`: convert the model's call traced once as a concrete function instead of through the
    Keras SavedModel export (the same ops and calibration; the export traces every nested layer
    and takes most of the time for a large graph; the search's int8 scoring uses it)."""
    with quiet_tf():
        import tensorflow as tf

        if traced:
            spec = tf.TensorSpec(tuple(model.inputs[0].shape), model.inputs[0].dtype)
            from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

            def call(x):  # outputs named as the Keras export names them (TfliteModel.output_order)
                out = model(x, training=False)
                return {f"output_{i}": o for i, o in enumerate(out if isinstance(out, (list, tuple)) else [out])}

            fn = tf.function(call).get_concrete_function(spec)
            # frozen (weights as constants); an empty trackable keeps the named signature
            conv = tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(fn)], tf.Module())
        else:
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        samples = np.asarray(calibration, dtype=np.float32)
        conv.representative_dataset = lambda: ([s[None]] for s in samples)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        with captured_output() as output:
            try:
                data = conv.convert()
                failure = None
            except Exception as exc:  # noqa: BLE001 - converter errors are many and untyped
                failure = exc
                log = output()[-2000:]
        if failure is not None:
            raise EennError(f"int8 conversion of '{model.name}' failed: {type(failure).__name__}: {failure}\n"
                            f"converter output (tail):\n{log}") from failure
    tm = TfliteModel(data)
    for t in tm.inputs + tm.outputs:
        if t.dtype != "int8" or t.scale is None:
            raise EennError(f"int8 conversion of '{model.name}': tensor '{t.name}' is {t.dtype}, expected int8")
    return data
