"""The cost model: latency, energy and memory of segments and of whole mappings.

Simple on purpose (DESIGN §2): a block's time on a processor is MACs / MAC rate plus a fixed
overhead per layer; energy is time × the active processor's power plus the sleeping ones';
memory is int8 weights in flash and the peak activation arena in SRAM. Every formula lives
here, and measured numbers (from the HIL harness) replace the estimates per processor or per
block through `Measured`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from eenn.augment.block_graph import Block
from eenn.augment.hardware import HardwareProfile
from eenn.errors import EennError


@dataclass(frozen=True)
class ProcessorMeasurement:
    macs_per_s: float | None = None
    layer_overhead_s: float | None = None
    block_s: dict[str, float] = field(default_factory=dict)  # block name → measured seconds


@dataclass(frozen=True)
class Measured:
    """Measured replacements for the profile's estimates, keyed by processor name."""

    processors: dict[str, ProcessorMeasurement] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> Measured:
        """JSON: {"processors": {"cm0p": {"macs_per_s": 9.1e6, "layer_overhead_s": 2e-5,
        "block_s": {"conv_1": 0.27}}}}, every field optional."""
        p = Path(path)
        try:
            raw = json.loads(p.read_text())
            procs = {name: ProcessorMeasurement(macs_per_s=v.get("macs_per_s"),
                                                layer_overhead_s=v.get("layer_overhead_s"),
                                                block_s=dict(v.get("block_s", {})))
                     for name, v in raw["processors"].items()}
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
            raise EennError(f"{p}: not a measurement file ({exc}); expected "
                            '{"processors": {"<name>": {"macs_per_s": ..., "block_s": {...}}}}') from exc
        return cls(procs)


@dataclass(frozen=True)
class StageLoad:
    """What one processor runs in a mapping: a backbone segment, then (except last) an exit."""

    processor: int
    blocks: tuple[Block, ...]
    exit_macs: int = 0
    exit_layers: int = 0
    exit_param_bytes: int = 0
    exit_peak_bytes: int = 0
    out_bytes: int = 0  # the feature map handed to the next processor (0 on the last stage)

    @property
    def macs(self) -> int:
        return sum(b.macs for b in self.blocks) + self.exit_macs

    @property
    def weights_bytes(self) -> int:
        return sum(b.param_bytes for b in self.blocks) + self.exit_param_bytes

    @property
    def arena_bytes(self) -> int:
        return max([b.peak_bytes for b in self.blocks] + [self.exit_peak_bytes])


@dataclass(frozen=True)
class MappingCost:
    stage_s: list[float]  # compute time of each stage (segment + exit)
    handoff_s: list[float]  # link + wake-up after stage k (len = stages − 1)
    latency_s: list[float]  # latency when the inference terminates at stage k
    energy_j: list[float]  # energy when the inference terminates at stage k
    flash_bytes: list[int]  # per processor used
    sram_bytes: list[int]
    violations: list[str]  # why it does not fit memory (empty: it fits)

    @property
    def worst_latency_s(self) -> float:
        return self.latency_s[-1]

    @property
    def fits_memory(self) -> bool:
        return not self.violations

    def mean(self, termination_rates: Sequence[float]) -> tuple[float, float]:
        """Mean latency and energy for the given share of inferences ending at each stage."""
        lat = sum(r * t for r, t in zip(termination_rates, self.latency_s))
        en = sum(r * e for r, e in zip(termination_rates, self.energy_j))
        return lat, en


class CostModel:
    def __init__(self, profile: HardwareProfile, measured: Measured | None = None):
        self.profile = profile
        self.measured = measured or Measured()

    def _rate(self, proc: int) -> tuple[float, float]:
        p = self.profile.processors[proc]
        m = self.measured.processors.get(p.name, ProcessorMeasurement())
        return (m.macs_per_s or p.macs_per_s,
                p.layer_overhead_s if m.layer_overhead_s is None else m.layer_overhead_s)

    def compute_s(self, macs: int, n_layers: int, proc: int) -> float:
        """Seconds for `macs` multiply-accumulates in `n_layers` layers on processor `proc`."""
        rate, overhead = self._rate(proc)
        return macs / rate + n_layers * overhead

    def block_s(self, block: Block, proc: int) -> float:
        name = self.profile.processors[proc].name
        measured = self.measured.processors.get(name, ProcessorMeasurement()).block_s.get(block.name)
        return measured if measured is not None else self.compute_s(block.macs, block.n_layers, proc)

    def segment_s(self, blocks: Sequence[Block], proc: int) -> float:
        return sum(self.block_s(b, proc) for b in blocks)

    def active_power_w(self, proc: int) -> float:
        """Power while `proc` runs and every other processor sleeps."""
        procs = self.profile.processors
        return procs[proc].active_w + sum(p.sleep_w for i, p in enumerate(procs) if i != proc)

    def handoff(self, after: int, nbytes: int, to: int | None = None) -> tuple[float, float]:
        """Time and energy to pass `nbytes` from processor `after` to processor `to` (default: the
        next one) and wake it. A stage that skips processors relays the data over every link in
        between, each hop charged at its sending processor's active power; only `to` wakes up."""
        to = after + 1 if to is None else to
        if not after < to < len(self.profile.processors):
            raise ValueError(f"no hand-off from processor {after} to {to}")
        time = energy = 0.0
        for hop in range(after, to):
            link = self.profile.link_after(hop)
            transfer_s = link.latency_s + nbytes / link.bytes_per_s
            time += transfer_s
            energy += nbytes * link.j_per_byte + transfer_s * self.active_power_w(hop)
        wake = self.profile.processors[to].wakeup_s
        return time + wake, energy + wake * self.active_power_w(to)

    def mapping(self, stages: Sequence[StageLoad]) -> MappingCost:
        """Costs of a cascade: stage k runs on its processor; inference may end after any stage."""
        stage_s, handoff_s, latency, energy = [], [], [], []
        t_acc = e_acc = 0.0
        for k, st in enumerate(stages):
            s = self.segment_s(st.blocks, st.processor) + self.compute_s(st.exit_macs, st.exit_layers, st.processor)
            stage_s.append(s)
            t_acc += s
            e_acc += s * self.active_power_w(st.processor)
            latency.append(t_acc)
            energy.append(e_acc)
            if k + 1 < len(stages):
                h_t, h_e = self.handoff(st.processor, st.out_bytes, stages[k + 1].processor)
                handoff_s.append(h_t)
                t_acc += h_t
                e_acc += h_e
        flash, sram, violations = self._memory(stages)
        return MappingCost(stage_s=stage_s, handoff_s=handoff_s, latency_s=latency, energy_j=energy,
                           flash_bytes=flash, sram_bytes=sram, violations=violations)

    def _memory(self, stages: Sequence[StageLoad]) -> tuple[list[int], list[int], list[str]]:
        procs = self.profile.processors
        flash = [0] * len(procs)
        sram = [0] * len(procs)
        for st in stages:
            flash[st.processor] += st.weights_bytes
            # The feature map buffer handed onward is held in addition to the arena.
            sram[st.processor] = max(sram[st.processor], st.arena_bytes) + st.out_bytes
        violations = []
        if self.profile.shared_memory:
            total_flash, total_sram = sum(flash), sum(sram)
            if total_flash > procs[0].flash_bytes:
                violations.append(f"weights {total_flash} B exceed the shared flash ({procs[0].flash_bytes} B)")
            if total_sram > procs[0].sram_bytes:
                violations.append(f"arenas {total_sram} B exceed the shared SRAM ({procs[0].sram_bytes} B)")
        else:
            for i, p in enumerate(procs):
                if flash[i] > p.flash_bytes:
                    violations.append(f"{p.name}: weights {flash[i]} B exceed its flash ({p.flash_bytes} B)")
                if sram[i] > p.sram_bytes:
                    violations.append(f"{p.name}: arena {sram[i]} B exceeds its SRAM ({p.sram_bytes} B)")
        return flash, sram, violations
