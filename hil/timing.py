"""Per-operator timing of a project's stages: MACs per TFLite operator and a board's timing model.

Two users: the virtual board, which can play a board whose real timing differs from the cost
model (`eenn hil virtual --timing FILE`: per processor and operator type, cycles per MAC and
cycles per call), and `eenn hil profile`, which fits MAC rates and per-operator overheads to
the ticks a board reports per operator. Both need the same MAC count per operator, so it lives
here, computed from the int8 models the project carries (eenn/stage*.tflite).
"""
from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eenn.errors import EennError

TIMING_FIELDS = ("cycles_per_mac", "cycles_per_call")
_OP_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True)
class OpInfo:
    """One operator of a stage's subgraph, in execution order."""

    index: int
    name: str  # TFLite builtin name, e.g. CONV_2D
    macs: int
    output: str  # the output tensor's name (carries the Keras layer names it was converted from)


def op_macs(name: str, in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one operator: the kernel's for convolutions and dense layers, one per
    element read for pooling and means, one per output element otherwise (none for reshapes)."""
    out = int(np.prod(out_shape)) if out_shape else 1
    if name == "CONV_2D" and len(in_shapes) > 1 and len(in_shapes[1]) == 4:
        _, kh, kw, cin = in_shapes[1]
        return out * kh * kw * cin
    if name == "DEPTHWISE_CONV_2D" and len(in_shapes) > 1 and len(in_shapes[1]) == 4:
        _, kh, kw, _ = in_shapes[1]
        return out * kh * kw
    if name == "FULLY_CONNECTED" and len(in_shapes) > 1 and len(in_shapes[1]) == 2:
        return out * in_shapes[1][1]
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "SUM", "REDUCE_MAX") and in_shapes:
        return int(np.prod(in_shapes[0])) if in_shapes[0] else 1
    if name in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
        return 0
    return out


def stage_ops(model_bytes: bytes) -> list[OpInfo]:
    """The operators of one converted subgraph with their MACs."""
    from eenn.augment.tflite_model import TfliteModel

    m = TfliteModel(model_bytes)
    ops = []
    for i, (name, ins, outs) in enumerate(m.operators()):
        in_shapes = [tuple(int(d) for d in m.tensor(t).shape) for t in ins if t >= 0]
        out_t = m.tensor(outs[0]) if outs else None
        out_shape = tuple(int(d) for d in out_t.shape) if out_t is not None else ()
        ops.append(OpInfo(index=i, name=name, macs=op_macs(name, in_shapes, out_shape),
                          output=out_t.name if out_t is not None else ""))
    return ops


def project_ops(project_dir: Path, manifest) -> list[list[OpInfo]]:
    """Per stage of a generated project, its operators (from eenn/<stage model>)."""
    out = []
    for st in manifest.stages:
        path = Path(project_dir) / "eenn" / st.model
        if not path.is_file():
            raise EennError(f"{path}: stage {st.index}'s int8 model is missing (project.json stages[{st.index}].model): "
                            "per-operator timing needs it; regenerate the project with `eenn generate`")
        out.append(stage_ops(path.read_bytes()))
    return out


@dataclass(frozen=True)
class OpTiming:
    cycles_per_mac: float
    cycles_per_call: float

    def cycles(self, macs: int) -> float:
        return self.cycles_per_mac * macs + self.cycles_per_call


@dataclass(frozen=True)
class TimingModel:
    """A board's timing: per processor, per operator type (or "*" for the rest), cycles per MAC and
    per call, counted in the ticks of the processor's core (its tick_hz)."""

    processors: dict[str, dict[str, OpTiming]]
    source: str = "timing model"

    @classmethod
    def load(cls, path: str | Path) -> TimingModel:
        """JSON or TOML (by suffix): {"cm4": {"CONV_2D": {"cycles_per_mac": 3.0, "cycles_per_call": 2000},
        "*": {...}}}; every field checked, by name."""
        p = Path(path)
        try:
            text = p.read_text()
            raw = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise EennError(f"{p}: not a readable {'TOML' if p.suffix.lower() == '.toml' else 'JSON'} timing "
                            f"file ({exc})") from exc
        return cls.from_dict(raw, str(p))

    @classmethod
    def from_dict(cls, raw: object, source: str = "timing model") -> TimingModel:
        example = '{"cm4": {"CONV_2D": {"cycles_per_mac": 3.0, "cycles_per_call": 2000}, "*": {...}}}'
        if not isinstance(raw, dict) or not raw:
            raise EennError(f"{source}: expected an object of processor name → operators, e.g. {example}")
        procs: dict[str, dict[str, OpTiming]] = {}
        for proc, ops in raw.items():
            if not isinstance(ops, dict) or not ops:
                raise EennError(f"{source}: {proc}: expected an object of operator name (CONV_2D, ..., or '*') → "
                                "{cycles_per_mac, cycles_per_call}")
            table = {}
            for op, v in ops.items():
                where = f"{source}: {proc}.{op}"
                if op != "*" and not _OP_NAME.match(op):
                    raise EennError(f"{where}: expected a TFLite builtin operator name (CONV_2D, FULLY_CONNECTED, "
                                    "...) or '*'")
                if not isinstance(v, dict):
                    raise EennError(f"{where}: expected an object with cycles_per_mac and cycles_per_call")
                unknown = sorted(set(v) - set(TIMING_FIELDS))
                missing = [f for f in TIMING_FIELDS if f not in v]
                if unknown or missing:
                    raise EennError(f"{where}: " + "; ".join(
                        ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
                        + ([f"missing {', '.join(missing)}"] if missing else []))
                        + "; expected cycles_per_mac and cycles_per_call (non-negative numbers)")
                vals = []
                for f in TIMING_FIELDS:
                    x = v[f]
                    if isinstance(x, bool) or not isinstance(x, (int, float)) or not x >= 0 or x == float("inf"):
                        raise EennError(f"{where}.{f} = {x!r}: expected a non-negative number")
                    vals.append(float(x))
                table[op] = OpTiming(*vals)
            procs[str(proc)] = table
        return cls(procs, source)

    def op_timing(self, processor: str, op: str) -> OpTiming:
        table = self.processors[processor]
        t = table.get(op, table.get("*"))
        if t is None:
            raise EennError(f"{self.source}: {processor} has no entry for operator {op} and no '*' entry")
        return t

    def check(self, processors: list[str], ops_by_processor: dict[str, set[str]]) -> None:
        """Every processor named exists in the project, and every operator its stages run is covered."""
        unknown = sorted(set(self.processors) - set(processors))
        if unknown:
            raise EennError(f"{self.source}: no processor(s) {', '.join(unknown)} in this project "
                            f"(expected one of {', '.join(processors)})")
        for proc, ops in ops_by_processor.items():
            if proc in self.processors:
                for op in sorted(ops):
                    self.op_timing(proc, op)


class StageTiming:
    """Ticks per operator and per stage of a project, from a timing model (processors it names) or
    else from the cost model: the stage's predicted_s spread over its operators by MACs."""

    def __init__(self, manifest, ops: list[list[OpInfo]], model: TimingModel | None = None):
        self.manifest = manifest
        self.ops = ops
        self.model = model
        if model is not None:
            by_proc: dict[str, set[str]] = {}
            for st, stage_ops_ in zip(manifest.stages, ops):
                by_proc.setdefault(st.processor, set()).update(o.name for o in stage_ops_)
            model.check(sorted({st.processor for st in manifest.stages} | {c.processor for c in manifest.cores or []}),
                        by_proc)
        self.op_ticks = [self._ticks(k) for k in range(len(manifest.stages))]

    def _ticks(self, k: int) -> list[int]:
        st = self.manifest.stages[k]
        ops = self.ops[k]
        if self.model is not None and st.processor in self.model.processors:
            return [int(round(self.model.op_timing(st.processor, o.name).cycles(o.macs))) for o in ops]
        total = int(round(st.predicted_s * st.tick_hz))
        weights = np.asarray([o.macs + 1 for o in ops], dtype=np.float64)
        if not len(ops):
            return []
        ticks = np.floor(total * weights / weights.sum()).astype(np.int64)
        ticks[-1] += total - int(ticks.sum())
        return [int(t) for t in ticks]

    def stage_s(self, k: int) -> float:
        """Seconds of stage k (what the virtual board's clock advances)."""
        st = self.manifest.stages[k]
        if self.model is not None and st.processor in self.model.processors:
            return sum(self.op_ticks[k]) / float(st.tick_hz)
        return float(st.predicted_s)
