"""The host side of `eenn-input` (docs/protocol.md §2.6): the EEMBC benchmarks' input types.

The MLPerf Tiny runner sends each benchmark's samples in that benchmark's own type (uint8 images
for ic01 / vww01, float32 features for ad01, int8 for kws01) and the reference firmware turns
them into the model's int8 input. `to_int8` is what our firmware makes of the bytes of each type,
written independently of the C (float64 rounding of the float32 quotient), so that tests can
compare the board's `db print` and answers with it; `encode` gives the bytes to send.
"""
from __future__ import annotations

import numpy as np

from eenn.errors import EennError

INPUT_TYPES = ("int8", "uint8", "float32")
BYTES_PER_ELEMENT = {"int8": 1, "uint8": 1, "float32": 4}
# which EEMBC benchmark sends which type (their reference firmware's th_load_tensor)
BENCHMARK_INPUT = {"kws01": "int8", "ic01": "uint8", "vww01": "uint8", "ad01": "float32"}
INPUT_TYPE_CODE = {"int8": 0, "uint8": 1, "float32": 2}  # EE_INPUT_* (ee_runtime.h)


def start_input_type(model_id: str) -> str:
    """The type a board with this model id starts in (ee_config_t.input_type; `eenn-input` changes it)."""
    return BENCHMARK_INPUT.get(model_id, "int8")


def _check(input_type: str) -> None:
    if input_type not in BYTES_PER_ELEMENT:
        raise EennError(f"input type {input_type!r}: expected one of {', '.join(INPUT_TYPES)}")


def quantize_f32(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """round(x / scale) + zero_point saturated to int8, the quotient in single precision (the
    firmware's ee_quantize_f32, TFLite's Quantize): halves away from zero; NaN -> zero_point."""
    xf = np.asarray(x, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = (xf / np.float32(scale)).astype(np.float64)  # exact widening of the float32 quotient
    v = np.where(np.isnan(v), 0.0, np.clip(v, -512.0, 512.0))
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + int(zero_point), -128, 127).astype(np.int8)


def to_int8(data: bytes, input_type: str, scale: float = 0.0, zero_point: int = 0) -> np.ndarray:
    """The int8 elements the board loads from `data` sent under `eenn-input input_type`."""
    _check(input_type)
    if input_type == "int8":
        return np.frombuffer(data, dtype=np.int8).copy()
    if input_type == "uint8":
        return (np.frombuffer(data, dtype=np.uint8).astype(np.int16) - 128).astype(np.int8)
    if len(data) % 4:
        raise EennError(f"float32 input of {len(data)} bytes: not a multiple of 4")
    if not scale > 0:
        raise EennError("float32 input needs the model input's scale (project.json input.scale)")
    return quantize_f32(np.frombuffer(data, dtype="<f4"), scale, zero_point)


def encode(values: np.ndarray, input_type: str) -> bytes:
    """The bytes a runner sends for `values` (int8 / uint8 integers, or floats) in input_type."""
    _check(input_type)
    dtype = {"int8": np.int8, "uint8": np.uint8, "float32": "<f4"}[input_type]
    arr = np.asarray(values)
    if input_type != "float32" and not np.array_equal(arr, arr.astype(dtype)):
        raise EennError(f"values out of range for {input_type}")
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()


def parse_input_line(text: str) -> tuple[str, float | None, int | None]:
    """The value of `m-eenn-input-[...]`: (type, scale, zero_point); scale and zero point only for float32."""
    parts = text.split()
    if not parts or parts[0] not in BYTES_PER_ELEMENT:
        raise EennError(f"m-eenn-input-[{text}]: unknown input type")
    if parts[0] != "float32":
        return parts[0], None, None
    try:
        fields = dict(zip(parts[1::2], parts[2::2]))
        return "float32", float.fromhex(fields["scale"]), int(fields["zero-point"])
    except (KeyError, ValueError):
        raise EennError(f"m-eenn-input-[{text}]: expected 'float32 scale HEXFLOAT zero-point Z'") from None
