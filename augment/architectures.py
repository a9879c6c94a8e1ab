"""The architecture space: where to cut the backbone, and which architectures can never fit.

An architecture is a set of cut points c1 < c2 < … at candidate exit locations, at most
processors − 1 of them. Segment i (up to cut i) runs on processor i with its exit at its end;
the rest of the backbone and the original classifier run on the last processor. The empty
set is the base model alone on the last processor. With P processors and L locations that is
sum over k < P of C(L, k) architectures (1 + 74 + C(74, 2) = 2,776 for P = 3, L = 74).

Pruning happens before any training, from the cost model alone: an architecture is dropped
when its worst-case latency (every segment and exit, every hand-off and wake-up) exceeds the
bound, or when its weights or arenas do not fit the memory.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from math import comb
from typing import Mapping, Sequence

from eenn.augment.block_graph import BlockGraph
from eenn.augment.cost import CostModel, MappingCost, StageLoad
from eenn.errors import EennError


@dataclass(frozen=True)
class ExitCost:
    """What an exit adds to its stage, known before training (from its planned layers)."""

    macs: int
    n_layers: int
    param_bytes: int
    peak_bytes: int


@dataclass(frozen=True)
class Architecture:
    cuts: tuple[int, ...]  # candidate indices (into BlockGraph.candidates), increasing
    processors: tuple[int, ...]  # processor of each stage: 0, 1, …, len(cuts) − 1, then the last

    @property
    def n_exits(self) -> int:
        return len(self.cuts)

    def key(self, bg: BlockGraph) -> str:
        return "+".join(bg.candidates[c].after_layer for c in self.cuts) or "(no exit)"


def count_architectures(n_locations: int, n_processors: int) -> int:
    return sum(comb(n_locations, k) for k in range(min(n_locations, n_processors - 1) + 1))


def enumerate_architectures(n_locations: int, n_processors: int) -> list[Architecture]:
    last = n_processors - 1
    out = []
    for k in range(min(n_locations, last) + 1):
        for cuts in itertools.combinations(range(n_locations), k):
            out.append(Architecture(cuts=tuple(cuts), processors=tuple(range(k)) + (last,)))
    return out


def stage_loads(bg: BlockGraph, arch: Architecture, exits: Mapping[int, ExitCost]) -> list[StageLoad]:
    """The StageLoads of an architecture: segment blocks, the exit at the end, the hand-off size."""
    stages = []
    start = 0
    for i, c in enumerate(arch.cuts):
        cand = bg.candidates[c]
        e = exits[c]
        stages.append(StageLoad(processor=arch.processors[i], blocks=tuple(bg.blocks[start:cand.block + 1]),
                                exit_macs=e.macs, exit_layers=e.n_layers, exit_param_bytes=e.param_bytes,
                                exit_peak_bytes=e.peak_bytes, out_bytes=cand.activation_bytes))
        start = cand.block + 1
    stages.append(StageLoad(processor=arch.processors[-1], blocks=tuple(bg.blocks[start:]) + (bg.head,)))
    return stages


def stage_macs(bg: BlockGraph, arch: Architecture, exits: Mapping[int, ExitCost]) -> list[int]:
    """MACs each stage adds (segment + exit), the last one the rest of the backbone + head."""
    return [s.macs for s in stage_loads(bg, arch, exits)]


@dataclass
class Pruning:
    kept: list[tuple[Architecture, MappingCost]]
    too_slow: int = 0
    no_memory: int = 0
    fastest_worst_latency_s: float = float("inf")  # over every architecture that fits memory
    fastest_key: str = ""
    memory_reasons: list[str] = field(default_factory=list)  # a few examples

    @property
    def pruned(self) -> int:
        return self.too_slow + self.no_memory

    def summary(self) -> str:
        return (f"{len(self.kept) + self.pruned} architectures, {self.pruned} pruned before training "
                f"({self.too_slow} over the latency bound, {self.no_memory} do not fit memory), {len(self.kept)} kept")


def prune(bg: BlockGraph, archs: Sequence[Architecture], exits: Mapping[int, ExitCost], cost: CostModel,
          latency_bound_s: float | None) -> Pruning:
    """Split architectures into those that can meet the bound and fit memory, and the rest."""
    result = Pruning(kept=[])
    for arch in archs:
        mc = cost.mapping(stage_loads(bg, arch, exits))
        if not mc.fits_memory:
            result.no_memory += 1
            if len(result.memory_reasons) < 3:
                result.memory_reasons.append(f"{arch.key(bg)}: {'; '.join(mc.violations)}")
            continue
        if mc.worst_latency_s < result.fastest_worst_latency_s:
            result.fastest_worst_latency_s, result.fastest_key = mc.worst_latency_s, arch.key(bg)
        if latency_bound_s is not None and mc.worst_latency_s > latency_bound_s:
            result.too_slow += 1
            continue
        result.kept.append((arch, mc))
    return result


def require_some(p: Pruning, latency_bound_s: float | None, processor_names: Sequence[str]) -> None:
    """An EennError that says why nothing is left, naming the fastest possible worst-case latency."""
    if p.kept:
        return
    if p.fastest_worst_latency_s == float("inf"):
        raise EennError("no architecture fits the memory of the hardware: " + " | ".join(p.memory_reasons))
    raise EennError(f"no architecture meets the latency bound of {latency_bound_s:g} s: the fastest possible "
                    f"worst-case latency on {' → '.join(processor_names)} is {p.fastest_worst_latency_s:.4g} s "
                    f"(exits after {p.fastest_key}); raise --latency to at least that")
