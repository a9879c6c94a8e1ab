"""The architecture space: where to cut the backbone, which processor runs each stage, and
which architectures can never fit.

An architecture is a chain of stages: stage i is the backbone up to cut i with its exit at its
end; the last stage is the rest of the backbone and the original classifier. Each stage runs on
a processor, in the profile's order along the chain (non-decreasing processor index): one
processor may run several stages, and a processor may be skipped. The input arrives on the
first processor; a stage elsewhere pays the link(s) for what it receives and the wake-up.

Two spaces (`placement`):
- "any" (the default): up to `max_exits` cuts c1 < c2 < … anywhere, and every non-decreasing
  assignment of the K + 1 stages to the P processors: sum over K <= max_exits of
  C(L, K) · C(P + K, K + 1) architectures (K = 0: the base model alone on each processor).
- "boundary" (the paper's): at most P − 1 cuts, segment i on processor i, the rest on the last:
  sum over K < P of C(L, K) (1 + 74 + C(74, 2) = 2,776 for P = 3, L = 74). The empty set is the
  base model alone on the last processor.

Pruning happens before any training, from the cost model alone: an architecture is dropped
when its worst-case latency (every segment and exit, every hand-off and wake-up where the
processor changes, the input's transfer where stage 0 is not on the first processor) exceeds
the bound, or when its weights or arenas do not fit the memory.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from math import comb, prod
from typing import Iterable, Iterator, Mapping, Sequence

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


PLACEMENTS = ("any", "boundary")


@dataclass(frozen=True)
class Architecture:
    cuts: tuple[int, ...]  # candidate indices (into BlockGraph.candidates), increasing
    processors: tuple[int, ...]  # processor of each stage (len(cuts) + 1), non-decreasing

    @property
    def n_exits(self) -> int:
        return len(self.cuts)

    def key(self, bg: BlockGraph) -> str:
        return "+".join(bg.candidates[c].after_layer for c in self.cuts) or "(no exit)"

    def placed(self, bg: BlockGraph, names: Sequence[str]) -> str:
        """Where each stage runs: 'conv_1 on cm4, conv_3 on cm4, final on cm4'."""
        parts = [f"{bg.candidates[c].after_layer} on {names[p]}" for c, p in zip(self.cuts, self.processors)]
        return ", ".join(parts + [f"final on {names[self.processors[-1]]}"])


def _check_placement(placement: str, max_exits: int | None) -> None:
    if placement not in PLACEMENTS:
        raise EennError(f"placement '{placement}': expected one of {', '.join(PLACEMENTS)}")
    if max_exits is not None and max_exits < 0:
        raise EennError(f"max exits {max_exits}: expected a non-negative integer")


def _max_cuts(n_locations: int, n_processors: int, placement: str, max_exits: int | None) -> int:
    k = n_locations if placement == "any" else min(n_locations, n_processors - 1)
    return k if max_exits is None else min(k, max_exits)


def count_architectures(n_locations: int, n_processors: int, placement: str = "boundary",
                        max_exits: int | None = None) -> int:
    """The size of the space, by formula (the enumeration must produce exactly this many)."""
    _check_placement(placement, max_exits)
    top = _max_cuts(n_locations, n_processors, placement, max_exits)
    if placement == "boundary":
        return sum(comb(n_locations, k) for k in range(top + 1))
    # non-decreasing sequences of k + 1 processors out of P: multisets, C(P + k, k + 1)
    return sum(comb(n_locations, k) * comb(n_processors + k, k + 1) for k in range(top + 1))


def iter_architectures(n_locations: int, n_processors: int, placement: str = "boundary",
                       max_exits: int | None = None) -> Iterator[Architecture]:
    """The space in a fixed order: fewer exits first, then cuts, then processors (lexicographic)."""
    _check_placement(placement, max_exits)
    last = n_processors - 1
    top = _max_cuts(n_locations, n_processors, placement, max_exits)
    for k in range(top + 1):
        if placement == "boundary":
            procs_k = [tuple(range(k)) + (last,)]
        else:
            procs_k = list(itertools.combinations_with_replacement(range(n_processors), k + 1))
        for cuts in itertools.combinations(range(n_locations), k):
            for procs in procs_k:
                yield Architecture(cuts=tuple(cuts), processors=tuple(procs))


def enumerate_architectures(n_locations: int, n_processors: int, placement: str = "boundary",
                            max_exits: int | None = None) -> list[Architecture]:
    return list(iter_architectures(n_locations, n_processors, placement, max_exits))


def input_bytes(bg: BlockGraph) -> int:
    """Bytes of one int8 input: what a stage 0 (or a base model) off the first processor receives."""
    return int(prod(bg.input_shape))


def stage_loads(bg: BlockGraph, arch: Architecture, exits: Mapping[int, ExitCost],
                memo: dict | None = None) -> list[StageLoad]:
    """The StageLoads of an architecture: segment blocks, the exit at the end, the hand-off size.
    With `memo` (one dict per space), equal stages of different architectures are one object, so
    their sums over blocks are computed once: the space grows as C(L, K), its stages as L²·P."""
    stages = []
    start = 0
    prev = -1
    for i, c in enumerate((*arch.cuts, None)):
        key = (prev, c, arch.processors[i])
        st = memo.get(key) if memo is not None else None
        if st is None:
            if c is None:
                st = StageLoad(processor=arch.processors[i], blocks=tuple(bg.blocks[start:]) + (bg.head,))
            else:
                cand = bg.candidates[c]
                e = exits[c]
                st = StageLoad(processor=arch.processors[i], blocks=tuple(bg.blocks[start:cand.block + 1]),
                               exit_macs=e.macs, exit_layers=e.n_layers, exit_param_bytes=e.param_bytes,
                               exit_peak_bytes=e.peak_bytes, out_bytes=cand.activation_bytes)
            if memo is not None:
                memo[key] = st
        stages.append(st)
        if c is not None:
            start, prev = bg.candidates[c].block + 1, c
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

    @property
    def total(self) -> int:
        return len(self.kept) + self.pruned

    def summary(self) -> str:
        return (f"{len(self.kept) + self.pruned} architectures, {self.pruned} pruned before training "
                f"({self.too_slow} over the latency bound, {self.no_memory} do not fit memory), {len(self.kept)} kept")


def prune(bg: BlockGraph, archs: Iterable[Architecture], exits: Mapping[int, ExitCost], cost: CostModel,
          latency_bound_s: float | None) -> Pruning:
    """Split architectures into those that can meet the bound and fit memory, and the rest
    (`archs` may be a generator: the space is streamed, only the kept ones are held)."""
    result = Pruning(kept=[])
    nbytes = input_bytes(bg)
    memo: dict = {}
    for arch in archs:
        mc = cost.mapping(stage_loads(bg, arch, exits, memo), nbytes)
        if not mc.fits_memory:
            result.no_memory += 1
            if len(result.memory_reasons) < 3:
                names = [p.name for p in cost.profile.processors]
                result.memory_reasons.append(f"{arch.placed(bg, names)}: {'; '.join(mc.violations)}")
            continue
        if mc.worst_latency_s < result.fastest_worst_latency_s:
            result.fastest_worst_latency_s = mc.worst_latency_s
            result.fastest_key = arch.placed(bg, [p.name for p in cost.profile.processors])
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
                    f"({p.fastest_key}); raise --latency to at least that")
