"""Energy per inference from the datasheet: the cost model's formula applied to measured times.

For one inference the board reports each core's active time (ticks / tick_hz) and the
wall-clock time (`m-eenn-elapsed-us`). As in `augment/cost.py`:

- while core c runs, the power is `active_w[c]` plus `sleep_w` of every other core;
- the rest of the wall-clock time is the handoffs on the path taken, only where the core changes
  (the feature map's or the input's copy and the next core's wake-up). It is split between the link (at the sending core's power) and the
  wake-up (at the receiving core's) in the proportion of the manifest's `link_s : wakeup_s`;
- each handoff adds the link's energy per byte × the feature map's bytes, when the bundle's
  hardware profile gives it.

On the virtual board the times are the cost model's, so this gives the cost model's energy per
exit path exactly; on a board the same formula turns measured times into a datasheet estimate.
An external meter (`meters.py`) replaces the estimate where one is attached.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eenn.codegen.manifest import ProjectManifest


@dataclass(frozen=True)
class DatasheetEnergy:
    active_w: list[float]  # per core (= the profile's processors, in order)
    sleep_w: list[float]
    # (link_s, wakeup_s) of the transfer into stage k (0, 0: none), and the energy of moving stage
    # k's input into it from another core. With stage_cores None (stage k on core k), both lists
    # start at stage 1 (the form before placement: one handoff per core boundary).
    handoff_s: list[tuple[float, float]]
    link_j: list[float]
    stage_cores: list[int] | None = None

    @classmethod
    def from_manifest(cls, manifest: ProjectManifest, hardware: dict | None = None) -> DatasheetEnergy:
        """Powers from the manifest (from the hardware profile); link J/byte from the bundle's
        `hardware` (solution.json), if given."""
        stages = manifest.stages
        cores = manifest.stage_cores()
        names = [c.processor for c in manifest.cores] if manifest.cores else [s.processor for s in stages]
        handoff = []
        link_j = []
        links = (hardware or {}).get("links", [])
        for k, st in enumerate(stages):
            h = st.handoff
            handoff.append((float(h.link_s), float(h.wakeup_s)) if h is not None else (0.0, 0.0))
            src = cores[k - 1] if k else 0
            nbytes = (stages[k - 1].feature_map.size if stages[k - 1].feature_map is not None else 0) if k else \
                st.input.size
            j = 0.0
            for c in range(src, cores[k]):  # every link in between, store and forward
                link = next((ln for ln in links if ln.get("source") == names[c] and ln.get("target") == names[c + 1]),
                            None)
                j += float(link["j_per_byte"]) * nbytes if link else 0.0
            link_j.append(j)
        return cls(active_w=[float(w) for w in manifest.energy.active_w],
                   sleep_w=[float(w) for w in manifest.energy.sleep_w], handoff_s=handoff, link_j=link_j,
                   stage_cores=cores)

    def _cores(self) -> list[int]:
        return self.stage_cores if self.stage_cores is not None else list(range(len(self.handoff_s) + 1))

    def _into(self, k: int) -> tuple[tuple[float, float], float]:
        """(link_s, wakeup_s) and link energy of the transfer into stage k."""
        i = k if self.stage_cores is not None else k - 1
        return (self.handoff_s[i], self.link_j[i]) if i >= 0 else ((0.0, 0.0), 0.0)

    def power_w(self, core: int) -> float:
        """Power while `core` runs and the others sleep."""
        return self.active_w[core] + sum(w for i, w in enumerate(self.sleep_w) if i != core)

    def crossings(self, exit_stage: int) -> list[tuple[int, int, int]]:
        """(stage, from core, to core) of each handoff on the path that ends at `exit_stage`."""
        cores = self._cores()
        path = [0, *cores[: exit_stage + 1]]
        return [(k, path[k], path[k + 1]) for k in range(exit_stage + 1) if path[k] != path[k + 1]]

    def inference_j(self, core_s: Sequence[float], elapsed_s: float, exit_stage: int) -> float:
        """Energy of one inference: active time per core, wall-clock time, the stage that answered."""
        active = sum(core_s)
        energy = sum(t * self.power_w(c) for c, t in enumerate(core_s))
        gap = max(0.0, elapsed_s - active)
        crossed = self.crossings(exit_stage)
        if crossed:
            total = sum(sum(self._into(k)[0]) for k, _, _ in crossed)
            for k, src, dst in crossed:
                (link_s, wake_s), link_j = self._into(k)
                share = (link_s + wake_s) / total if total > 0 else 1.0 / len(crossed)
                g = gap * share
                split = link_s / (link_s + wake_s) if link_s + wake_s > 0 else 0.5
                energy += g * split * self.power_w(src) + g * (1 - split) * self.power_w(dst)
                energy += link_j
        else:
            energy += gap * self.power_w(0)  # time core 0 spent beyond its ticks (exit check, I/O)
        return energy

    def path_j(self, manifest: ProjectManifest) -> list[float]:
        """The prediction per exit path: this formula on the manifest's predicted times."""
        out = []
        cores = manifest.stage_cores()
        n_cores = len(manifest.cores) if manifest.cores else len(manifest.stages)
        for k in range(len(manifest.stages)):
            core_s = [0.0] * n_cores
            for j, s in enumerate(manifest.stages[: k + 1]):
                core_s[cores[j]] += s.predicted_s
            elapsed = sum(core_s) + sum(sum(self._into(j)[0]) for j, _, _ in self.crossings(k))
            out.append(self.inference_j(core_s, elapsed, k))
        return out


def path_latency_s(manifest: ProjectManifest) -> list[float]:
    """The cost model's latency per exit path: the stages' predicted times plus the handoffs
    (only where the core changes: a stage on the same core as the one before has none)."""
    out, t = [], 0.0
    for st in manifest.stages:
        if st.handoff is not None:
            t += st.handoff.link_s + st.handoff.wakeup_s
        t += st.predicted_s
        out.append(t)
    return out
