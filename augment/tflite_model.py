"""Reading (and, in one place, patching) int8 TFLite flatbuffers without an interpreter.

What code generation needs from a converted subgraph: its input and outputs with their
quantization, which output is which (from the signature the converter writes: Keras output i is
`output_i`), the operators it uses and how many bytes of constants it carries. The schema module
is the one the `tflite_micro` package ships.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from eenn.errors import EennError


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    return fb


_OP_NAMES: dict[int, str] | None = None


def op_name(code: int) -> str:
    """BuiltinOperator number → its schema name (CONV_2D, ...)."""
    global _OP_NAMES
    if _OP_NAMES is None:
        fb = _schema()
        _OP_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}
    return _OP_NAMES.get(code, f"BUILTIN_{code}")


@dataclass(frozen=True)
class TensorInfo:
    index: int  # tensor index in the subgraph
    name: str
    shape: tuple[int, ...]
    dtype: str  # "int8", "int32", ...
    scale: float | None
    zero_point: int | None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8", 10: "float64"}


class TfliteModel:
    """A converted model, read once."""

    def __init__(self, data: bytes):
        self.data = bytes(data)
        fb = _schema()
        if len(self.data) < 8 or self.data[4:8] != b"TFL3":
            raise EennError("not a TFLite flatbuffer (no TFL3 identifier)")
        self._m = fb.Model.GetRootAsModel(self.data, 0)
        if self._m.SubgraphsLength() != 1:
            raise EennError(f"converted model has {self._m.SubgraphsLength()} subgraphs; code generation expects one")
        self._g = self._m.Subgraphs(0)

    # ---------------------------------------------------------------- tensors
    def tensor(self, index: int) -> TensorInfo:
        t = self._g.Tensors(index)
        q = t.Quantization()
        scale = zp = None
        if q is not None and q.ScaleLength() >= 1:
            scale = float(q.Scale(0))
            zp = int(q.ZeroPoint(0)) if q.ZeroPointLength() >= 1 else 0
        return TensorInfo(index=index, name=t.Name().decode(errors="replace"),
                          shape=tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else (),
                          dtype=_TYPE_NAMES.get(t.Type(), f"type{t.Type()}"), scale=scale, zero_point=zp)

    @cached_property
    def inputs(self) -> list[TensorInfo]:
        return [self.tensor(int(i)) for i in self._g.InputsAsNumpy()]

    @cached_property
    def outputs(self) -> list[TensorInfo]:
        return [self.tensor(int(i)) for i in self._g.OutputsAsNumpy()]

    def output_order(self) -> list[int]:
        """For Keras output i (the order the sub-model was built with), its output index here.

        The converter names signature outputs `output_0`, `output_1`, ... after the Keras
        outputs, but may list the subgraph's outputs in another order.
        """
        outs = [t.index for t in self.outputs]
        if len(outs) == 1:
            return [0]
        named: dict[int, int] = {}
        for s in range(self._m.SignatureDefsLength()):
            sig = self._m.SignatureDefs(s)
            for j in range(sig.OutputsLength()):
                tm = sig.Outputs(j)
                m = re.fullmatch(r"output_(\d+)", tm.Name().decode())
                if m and tm.TensorIndex() in outs:
                    named[int(m.group(1))] = outs.index(tm.TensorIndex())
            if named:
                break
        if sorted(named) != list(range(len(outs))):
            raise EennError("cannot tell the converted model's outputs apart: its signature does not name them "
                            "output_0..output_N (converter changed?)")
        return [named[i] for i in range(len(outs))]

    # ---------------------------------------------------------------- operators and constants
    @cached_property
    def ops(self) -> list[str]:
        """Distinct builtin operators, in order of first use."""
        seen: list[str] = []
        for i in range(self._g.OperatorsLength()):
            name = self.op_at(i)
            if name not in seen:
                seen.append(name)
        return seen

    def op_at(self, i: int) -> str:
        op = self._g.Operators(i)
        code = self._m.OperatorCodes(op.OpcodeIndex())
        if code.CustomCode():
            raise EennError(f"the converted model uses a custom operator ({code.CustomCode().decode()}); "
                            "TFLite Micro builds here register builtins only")
        return op_name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))

    @cached_property
    def weights_bytes(self) -> int:
        """Bytes of constant data (kernels, biases, quantization tables) in the model's buffers."""
        total = 0
        for i in range(self._m.BuffersLength()):
            b = self._m.Buffers(i)
            total += b.DataLength() if b.DataLength() else int(b.Size() or 0)
        return total

    def operators(self) -> list[tuple[str, list[int], list[int]]]:
        """(op name, input tensor indices, output tensor indices) in execution order."""
        out = []
        for i in range(self._g.OperatorsLength()):
            op = self._g.Operators(i)
            ins = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
            outs = [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else []
            out.append((self.op_at(i), ins, outs))
        return out


def set_input_quantization(data: bytes, scale: float, zero_point: int) -> bytes:
    """A copy of `data` whose (only) input tensor carries (scale, zero_point).

    The float32 scale and int64 zero point are overwritten in place in the flatbuffer (same
    length, same layout, the constants' alignment untouched). Used when a consumer's input was
    calibrated to a scale one float rounding step away from the producer's: its first kernels
    then derive their fixed-point multipliers from the scale the data really has.
    """
    fb = _schema()
    buf = bytearray(data)
    m = fb.Model.GetRootAsModel(buf, 0)
    g = m.Subgraphs(0)
    if g.InputsLength() != 1:
        raise EennError("expected a subgraph with one input")
    q = g.Tensors(int(g.InputsAsNumpy()[0])).Quantization()
    if q is None or q.ScaleLength() != 1 or q.ZeroPointLength() != 1:
        raise EennError("the subgraph input is not per-tensor quantized")
    tab = q._tab
    scale_pos = tab.Vector(tab.Offset(8))  # QuantizationParameters.scale: [float]
    zp_pos = tab.Vector(tab.Offset(10))  # QuantizationParameters.zero_point: [long]
    struct.pack_into("<f", buf, scale_pos, float(np.float32(scale)))
    struct.pack_into("<q", buf, zp_pos, int(zero_point))
    out = bytes(buf)
    check = TfliteModel(out).inputs[0]
    if np.float32(check.scale) != np.float32(scale) or check.zero_point != zero_point:
        raise EennError("patching the subgraph input's quantization failed")
    return out
