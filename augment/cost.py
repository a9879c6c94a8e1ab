"""The cost model: latency, energy and memory of segments and of whole mappings.

Simple on purpose (README "Cost model"): a block's time on a processor is MACs / MAC rate plus a fixed
overhead per layer; energy is time × the active processor's power plus the sleeping ones';
memory is int8 weights in flash and the peak activation arena in SRAM. Every formula lives
here, and measured numbers (from the HIL harness) replace the estimates per processor or per
block through `Measured`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from eenn.augment.block_graph import Block
from eenn.augment.hardware import HardwareProfile
from eenn.errors import EennError
from eenn.fields import reject_unknown


@dataclass(frozen=True)
class ProcessorMeasurement:
    macs_per_s: float | None = None
    layer_overhead_s: float | None = None
    block_s: dict[str, float] = field(default_factory=dict)  # block name → measured seconds


@dataclass(frozen=True)
class Measured:
    """Measured replacements for the profile's estimates, keyed by processor name."""

    processors: dict[str, ProcessorMeasurement] = field(default_factory=dict)
    source: str = "measurements"  # the file they came from, for error messages

    @classmethod
    def load(cls, path: str | Path) -> Measured:
        """JSON: {"processors": {"cm0p": {"macs_per_s": 9.1e6, "layer_overhead_s": 2e-5,
        "block_s": {"conv_1": 0.27}}}}, every field optional; each one checked, by name."""
        p = Path(path)
        try:
            raw = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise EennError(f"{p}: not a readable JSON measurement file ({exc})") from exc
        if not isinstance(raw, dict) or not isinstance(raw.get("processors"), dict):
            raise EennError(f"{p}: expected an object with 'processors': "
                            '{"processors": {"<name>": {"macs_per_s": ..., "block_s": {...}}}}')
        procs = {}
        for name, v in raw["processors"].items():
            where = f"{p}: processors.{name}"
            if not isinstance(v, dict):
                raise EennError(f"{where}: expected an object with macs_per_s, layer_overhead_s and/or block_s")
            reject_unknown(v, ("macs_per_s", "layer_overhead_s", "block_s"), where)
            blocks = v.get("block_s", {})
            if not isinstance(blocks, dict):
                raise EennError(f"{where}.block_s: expected an object of block name → seconds")
            procs[name] = ProcessorMeasurement(
                macs_per_s=_number(v.get("macs_per_s"), f"{where}.macs_per_s", positive=True),
                layer_overhead_s=_number(v.get("layer_overhead_s"), f"{where}.layer_overhead_s"),
                block_s={b: _number(t, f"{where}.block_s.{b}") for b, t in blocks.items()})
        return cls(procs, source=str(p))

    def check(self, profile: HardwareProfile, block_names: Sequence[str] | None = None) -> None:
        """Every processor (and block) named must exist: a misspelt name would be ignored silently."""
        names = [q.name for q in profile.processors]
        for name, m in self.processors.items():
            if name not in names:
                raise EennError(f"{self.source}: processors.{name}: no such processor in profile "
                                f"'{profile.name}' (expected one of {', '.join(names)})")
            if block_names is not None:
                unknown = sorted(set(m.block_s) - set(block_names))
                if unknown:
                    raise EennError(f"{self.source}: processors.{name}.block_s: no block(s) "
                                    f"{', '.join(unknown)} in this model (`eenn analyze` lists its blocks)")


def _number(value: object, where: str, positive: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise EennError(f"{where} = {value!r}: expected a number")
    if value < 0 or (positive and value == 0):
        raise EennError(f"{where} = {value!r}: expected a {'positive' if positive else 'non-negative'} number")
    return float(value)


@dataclass(frozen=True)
class StageLoad:
    """One stage of a mapping, on one processor: a backbone segment, then (except last) an exit."""

    processor: int
    blocks: tuple[Block, ...]
    exit_macs: int = 0
    exit_layers: int = 0
    exit_param_bytes: int = 0
    exit_peak_bytes: int = 0
    out_bytes: int = 0  # the feature map handed to the next stage (0 on the last stage)

    # computed once per object (a space shares equal stages between architectures)
    @cached_property
    def macs(self) -> int:
        return sum(b.macs for b in self.blocks) + self.exit_macs

    @cached_property
    def weights_bytes(self) -> int:
        return sum(b.param_bytes for b in self.blocks) + self.exit_param_bytes

    @cached_property
    def arena_bytes(self) -> int:
        return max([b.peak_bytes for b in self.blocks] + [self.exit_peak_bytes])


@dataclass(frozen=True)
class MappingCost:
    stage_s: list[float]  # compute time of each stage (segment + exit)
    handoff_s: list[float]  # link + wake-up after stage k (len = stages − 1; 0 where the processor stays)
    latency_s: list[float]  # latency when the inference terminates at stage k
    energy_j: list[float]  # energy when the inference terminates at stage k
    flash_bytes: list[int]  # per processor used
    sram_bytes: list[int]
    violations: list[str]  # why it does not fit memory (empty: it fits)
    input_s: float = 0.0  # moving the input from the first processor to stage 0's (0 when it starts there)
    # The first processor's own energy when the inference terminates at stage k: its active or
    # sleep power while each stage runs, plus every link's joules per byte (the sender's radio):
    # on a distributed profile, what the battery-powered device pays.
    device_energy_j: list[float] = field(default_factory=list)

    @property
    def worst_latency_s(self) -> float:
        return self.latency_s[-1]

    @property
    def fits_memory(self) -> bool:
        return not self.violations

    def mean(self, termination_rates):
        """Mean latency and energy for the given share of inferences ending at each stage: floats
        for one (K + 1,) vector of rates, arrays for a (P, K + 1) matrix of them."""
        rates = np.asarray(termination_rates, dtype=np.float64)
        lat = rates @ np.asarray(self.latency_s, dtype=np.float64)
        en = rates @ np.asarray(self.energy_j, dtype=np.float64)
        return (float(lat), float(en)) if rates.ndim == 1 else (lat, en)

    def mean_device_energy(self, termination_rates):
        """Mean of `device_energy_j` for the given termination rates (as `mean`)."""
        rates = np.asarray(termination_rates, dtype=np.float64)
        dev = rates @ np.asarray(self.device_energy_j or self.energy_j, dtype=np.float64)
        return float(dev) if rates.ndim == 1 else dev


class CostModel:
    def __init__(self, profile: HardwareProfile, measured: Measured | None = None):
        self.profile = profile
        self.measured = measured or Measured()
        self.measured.check(profile)
        # Fixed for the model's lifetime, and asked for per stage of every architecture of a space.
        self._measurements = [self.measured.processors.get(p.name, ProcessorMeasurement()) for p in profile.processors]
        self._rates = [(m.macs_per_s or p.macs_per_s, p.layer_overhead_s if m.layer_overhead_s is None
                        else m.layer_overhead_s) for p, m in zip(profile.processors, self._measurements)]
        self._active_w = [p.active_w + sum(q.sleep_w for j, q in enumerate(profile.processors) if j != i)
                          for i, p in enumerate(profile.processors)]
        self._segments: dict[tuple[str, int, int], float] = {}  # segment_s memo: spaces share segments

    def _rate(self, proc: int) -> tuple[float, float]:
        return self._rates[proc]

    def compute_s(self, macs: int, n_layers: int, proc: int) -> float:
        """Seconds for `macs` multiply-accumulates in `n_layers` layers on processor `proc`."""
        rate, overhead = self._rate(proc)
        return macs / rate + n_layers * overhead

    def block_s(self, block: Block, proc: int) -> float:
        measured = self._measurements[proc].block_s.get(block.name)
        return measured if measured is not None else self.compute_s(block.macs, block.n_layers, proc)

    def segment_s(self, blocks: Sequence[Block], proc: int) -> float:
        """Sum of the blocks' times, left to right; memoised by (first block, length): a segment
        one block longer costs one addition, so a whole space costs O(L²·P) additions."""
        t = 0.0
        n = len(blocks)
        done = 0
        while done < n:  # the longest memoised prefix
            hit = self._segments.get((blocks[0].name, n - done, proc))
            if hit is not None:
                t = hit
                break
            done += 1
        start = n - done
        for k in range(start, n):
            t = (t if k else 0.0) + self.block_s(blocks[k], proc)
            self._segments[(blocks[0].name, k + 1, proc)] = t
        return t

    def active_power_w(self, proc: int) -> float:
        """Power while `proc` runs and every other processor sleeps."""
        return self._active_w[proc]

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

    def device_power_w(self, proc: int) -> float:
        """The first processor's power while `proc` runs (its active power, or its sleep power)."""
        p0 = self.profile.processors[0]
        return p0.active_w if proc == 0 else p0.sleep_w

    def _device_handoff_j(self, after: int, to: int, nbytes: int) -> float:
        """The first processor's share of a hand-off: every link's joules per byte, its power
        while each hop and the wake-up last."""
        energy = 0.0
        for hop in range(after, to):
            link = self.profile.link_after(hop)
            transfer_s = link.latency_s + nbytes / link.bytes_per_s
            energy += nbytes * link.j_per_byte + transfer_s * self.device_power_w(hop)
        return energy + self.profile.processors[to].wakeup_s * self.device_power_w(to)

    def mapping(self, stages: Sequence[StageLoad], input_bytes: int | None = None) -> MappingCost:
        """Costs of a cascade: stage k runs on its processor; inference may end after any stage.

        A transfer and a wake-up are charged only where the processor changes; consecutive stages
        on one processor hand the feature map over in memory. The input arrives on the first
        processor: given `input_bytes`, a stage 0 elsewhere first pays the link(s) for them and its
        wake-up (None: the input is taken to be where stage 0 runs, as `eenn analyze` reports)."""
        stage_s, handoff_s, latency, energy, device = [], [], [], [], []
        t_acc = e_acc = d_acc = 0.0
        input_s = 0.0
        if stages and stages[0].processor > 0 and input_bytes is not None:
            input_s, e_in = self.handoff(0, input_bytes, stages[0].processor)
            t_acc, e_acc, d_acc = input_s, e_in, self._device_handoff_j(0, stages[0].processor, input_bytes)
        for k, st in enumerate(stages):
            s = self.segment_s(st.blocks, st.processor) + self.compute_s(st.exit_macs, st.exit_layers, st.processor)
            stage_s.append(s)
            t_acc += s
            e_acc += s * self.active_power_w(st.processor)
            d_acc += s * self.device_power_w(st.processor)
            latency.append(t_acc)
            energy.append(e_acc)
            device.append(d_acc)
            if k + 1 < len(stages):
                nxt = stages[k + 1].processor
                if nxt < st.processor:
                    raise ValueError(f"stage {k + 1} on processor {nxt} after stage {k} on {st.processor}: "
                                     "stages follow the profile's order")
                if nxt == st.processor:
                    handoff_s.append(0.0)
                    continue
                h_t, h_e = self.handoff(st.processor, st.out_bytes, nxt)
                handoff_s.append(h_t)
                t_acc += h_t
                e_acc += h_e
                d_acc += self._device_handoff_j(st.processor, nxt, st.out_bytes)
        flash, sram, violations = self._memory(stages)
        return MappingCost(stage_s=stage_s, handoff_s=handoff_s, latency_s=latency, energy_j=energy,
                           flash_bytes=flash, sram_bytes=sram, violations=violations, input_s=input_s,
                           device_energy_j=energy if self.profile.shared_memory else device)

    def _memory(self, stages: Sequence[StageLoad]) -> tuple[list[int], list[int], list[str]]:
        procs = self.profile.processors
        flash = [0] * len(procs)
        arena = [0] * len(procs)
        handed = [0] * len(procs)
        for st in stages:
            # Several stages on one processor: their weights add up, one arena serves the largest,
            # and one buffer (the largest feature map handed on) is held in addition to it.
            flash[st.processor] += st.weights_bytes
            arena[st.processor] = max(arena[st.processor], st.arena_bytes)
            handed[st.processor] = max(handed[st.processor], st.out_bytes)
        sram = [a + h for a, h in zip(arena, handed)]
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
