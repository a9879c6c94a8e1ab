"""What each subgraph needs on the target: operators, resolver calls, weights and tensor arena.

The tensor arena is measured, not estimated: the smallest size (16-byte steps) with which the
`tflite_micro` runtime allocates the model's tensors, found by bisection. The target needs a
different figure, in both directions:

- the host build is 64-bit: TFLite Micro's persistent structures (TfLiteEvalTensor, node and
  registration arrays, pointers in op data) are larger than on a 32-bit Cortex-M, so the
  measured tail (persistent part) over-estimates the target's;
- the host runs the reference kernels, the target CMSIS-NN: CMSIS-NN's conv, depthwise-conv,
  fully-connected and average-pool kernels request scratch buffers in the arena that the
  reference kernels do not. Scratch lives only while its op runs, so the largest one counts
  (`cmsis_nn_scratch_bytes`, an upper bound per op from the CMSIS-NN buffer-size formulas);
- a fixed margin of `ARENA_MARGIN_FIXED` bytes plus 1/16 of the measured size covers
  alignment differences and TFLite Micro versions whose planners differ slightly.

    arena_bytes = align16(measured + max CMSIS-NN scratch + ARENA_MARGIN_FIXED + measured / 16)
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from eenn.augment.tflite_model import TfliteModel
from eenn.errors import EennError

ARENA_ALIGN = 16
ARENA_MARGIN_FIXED = 1024
ARENA_SEARCH_MAX = 64 << 20

# TFLite Micro's MicroMutableOpResolver: builtin → the method that registers it
# (tensorflow/lite/micro/micro_mutable_op_resolver.h).
RESOLVER_METHODS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "CAST": "AddCast", "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D", "COS": "AddCos",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv", "ELU": "AddElu", "EQUAL": "AddEqual", "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor", "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual", "LOG": "AddLog",
    "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax", "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul", "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad",
    "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu", "RELU6": "AddRelu6", "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear", "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "ROUND": "AddRound", "RSQRT": "AddRsqrt", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv", "UNPACK": "AddUnpack",
}


@dataclass(frozen=True)
class SubgraphSizes:
    ops: list[str]  # distinct builtins, in order of first use
    resolver_calls: list[str]  # e.g. "AddConv2D()", one per op
    model_bytes: int  # the flatbuffer as it sits in flash
    weights_bytes: int  # constant data inside it
    arena_measured: int  # smallest arena the tflite_micro runtime (host, 64-bit) allocates in
    cmsis_scratch: int  # largest CMSIS-NN scratch buffer of one op (upper bound)
    arena_bytes: int  # what the target gets (see the module doc)

    @property
    def resolver_size(self) -> int:
        return len(self.ops)


# Operators with an int8-only kernel variant, `tflite::Register_<OP>_INT8()`: declared in
# tensorflow/lite/micro/kernels/{conv,depthwise_conv,fully_connected,softmax,pooling,add,mul}.h
# for CMSIS-NN builds (an inline fallback to the generic kernel otherwise). Registering it keeps
# the int4/int16 kernels the generic registration pulls in out of the image.
INT8_VARIANTS = frozenset({"ADD", "AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
                           "MAX_POOL_2D", "MUL", "SOFTMAX"})


def resolver_calls(ops: list[str], int8_kernels: bool = False) -> list[str]:
    """One MicroMutableOpResolver call per operator; `int8_kernels` registers the int8-only
    variants where there are any (the subgraphs are full-integer int8)."""
    missing = [op for op in ops if op not in RESOLVER_METHODS]
    if missing:
        raise EennError(f"the subgraph uses operator(s) {', '.join(missing)} that MicroMutableOpResolver "
                        "cannot register here; change the model or cut elsewhere")
    return [f"{RESOLVER_METHODS[op]}(tflite::Register_{op}_INT8())" if int8_kernels and op in INT8_VARIANTS
            else f"{RESOLVER_METHODS[op]}()" for op in ops]


def cmsis_nn_scratch_bytes(model: TfliteModel) -> int:
    """Upper bound of the largest scratch buffer a CMSIS-NN int8 kernel of this model asks for."""
    worst = 0
    for name, ins, outs in model.operators():
        shapes = [model.tensor(i).shape if i >= 0 else () for i in ins]
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(shapes) >= 2 and len(shapes[1]) == 4:
            # im2col of up to two output columns, int16: 2 · 2 · in_ch · kh · kw bytes
            in_ch = shapes[0][-1] if shapes[0] else 0
            kh, kw = shapes[1][1], shapes[1][2]
            need = 4 * int(in_ch) * int(kh) * int(kw)
        elif name == "FULLY_CONNECTED" and len(shapes) >= 2 and shapes[1]:
            need = 4 * int(shapes[1][0])  # per-output kernel sums (int32)
        elif name == "AVERAGE_POOL_2D" and shapes and shapes[0]:
            need = 4 * int(shapes[0][-1])  # per-channel int32 accumulators
        else:
            need = 0
        worst = max(worst, need)
    return worst


class _Prober:
    """Asks a child process whether the model allocates and runs in N bytes (see _arena_probe)."""

    def __init__(self, data: bytes):
        self._tmp = tempfile.NamedTemporaryFile(prefix="eenn-arena-", suffix=".tflite", delete=False)
        self._tmp.write(data)
        self._tmp.close()
        self._proc: subprocess.Popen | None = None
        self.crashes = 0

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "eenn.codegen._arena_probe", self._tmp.name],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def __call__(self, size: int) -> bool:
        for _ in range(2):
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            try:
                self._proc.stdin.write(f"{size}\n")
                self._proc.stdin.flush()
                answer = self._proc.stdout.readline().strip()
            except (BrokenPipeError, OSError):
                answer = ""
            if answer in ("0", "1"):
                return answer == "1"
            # the runtime crashed at this size (or the child could not start: then it fails again)
            self._proc.wait()
            self.crashes += 1
            if self._proc.returncode not in (None, 0) and self._proc.returncode < 0:
                return False
        raise EennError("the arena search could not run the tflite_micro runtime in a child process")

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait()
        os.unlink(self._tmp.name)


def measure_arena(data: bytes) -> int:
    """The smallest arena size (a multiple of 16) in which the `tflite_micro` runtime allocates
    the model and runs it once."""
    probe = _Prober(data)
    try:
        hi = 4096
        while not probe(hi):
            hi *= 2
            if hi > ARENA_SEARCH_MAX:
                raise EennError(f"the subgraph does not allocate even in a {ARENA_SEARCH_MAX >> 20} MB arena")
        lo = 0  # known to fail (or untested)
        while hi - lo > ARENA_ALIGN:
            mid = (lo + hi) // 2 // ARENA_ALIGN * ARENA_ALIGN
            if mid <= lo:
                break
            if probe(mid):
                hi = mid
            else:
                lo = mid
    finally:
        probe.close()
    return hi


def target_arena(measured: int, scratch: int) -> int:
    raw = measured + scratch + ARENA_MARGIN_FIXED + measured // 16
    return (raw + ARENA_ALIGN - 1) // ARENA_ALIGN * ARENA_ALIGN


def subgraph_sizes(data: bytes, int8_kernels: bool = False) -> SubgraphSizes:
    model = TfliteModel(data)
    ops = model.ops
    measured = measure_arena(data)
    scratch = cmsis_nn_scratch_bytes(model)
    return SubgraphSizes(ops=list(ops), resolver_calls=resolver_calls(list(ops), int8_kernels), model_bytes=len(data),
                         weights_bytes=model.weights_bytes, arena_measured=measured, cmsis_scratch=scratch,
                         arena_bytes=target_arena(measured, scratch))
