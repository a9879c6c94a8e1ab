"""Energy per inference from the datasheet: the cost model's formula applied to measured times.

For one inference the board reports each core's active time (ticks / tick_hz) and the
wall-clock time (`m-eenn-elapsed-us`). As in `augment/cost.py`:

- while core c runs, the power is `active_w[c]` plus `sleep_w` of every other core;
- the rest of the wall-clock time is the handoff between the cores (the feature map's copy and
  the next core's wake-up). It is split between the link (at the sending core's power) and the
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
    active_w: list[float]  # per stage (= core, in stage order)
    sleep_w: list[float]
    handoff_s: list[tuple[float, float]]  # (link_s, wakeup_s) of the handoff into stage k + 1
    link_j: list[float]  # energy of moving the feature map into stage k + 1

    @classmethod
    def from_manifest(cls, manifest: ProjectManifest, hardware: dict | None = None) -> DatasheetEnergy:
        """Powers from the manifest (from the hardware profile); link J/byte from the bundle's
        `hardware` (solution.json), if given."""
        stages = manifest.stages
        handoff = []
        link_j = []
        links = (hardware or {}).get("links", [])
        for k in range(1, len(stages)):
            h = stages[k].handoff
            handoff.append((float(h.link_s), float(h.wakeup_s)) if h is not None else (0.0, 0.0))
            prev = stages[k - 1]
            link = next((ln for ln in links if ln.get("source") == prev.processor
                         and ln.get("target") == stages[k].processor), None)
            nbytes = prev.feature_map.size if prev.feature_map is not None else 0
            link_j.append(float(link["j_per_byte"]) * nbytes if link else 0.0)
        return cls(active_w=[float(w) for w in manifest.energy.active_w],
                   sleep_w=[float(w) for w in manifest.energy.sleep_w], handoff_s=handoff, link_j=link_j)

    def power_w(self, core: int) -> float:
        """Power while `core` runs and the others sleep."""
        return self.active_w[core] + sum(w for i, w in enumerate(self.sleep_w) if i != core)

    def inference_j(self, core_s: Sequence[float], elapsed_s: float, exit_stage: int) -> float:
        """Energy of one inference: active time per core, wall-clock time, the stage that answered."""
        active = sum(core_s[: exit_stage + 1])
        energy = sum(t * self.power_w(c) for c, t in enumerate(core_s[: exit_stage + 1]))
        gap = max(0.0, elapsed_s - active)
        if exit_stage > 0:
            crossed = self.handoff_s[:exit_stage]
            total = sum(a + b for a, b in crossed)
            for b, (link_s, wake_s) in enumerate(crossed):
                share = (link_s + wake_s) / total if total > 0 else 1.0 / exit_stage
                g = gap * share
                split = link_s / (link_s + wake_s) if link_s + wake_s > 0 else 0.5
                energy += g * split * self.power_w(b) + g * (1 - split) * self.power_w(b + 1)
                energy += self.link_j[b]
        else:
            energy += gap * self.power_w(0)  # time core 0 spent beyond its ticks (exit check, I/O)
        return energy

    def path_j(self, manifest: ProjectManifest) -> list[float]:
        """The prediction per exit path: this formula on the manifest's predicted times."""
        out = []
        for k in range(len(manifest.stages)):
            core_s = [s.predicted_s for s in manifest.stages[: k + 1]]
            elapsed = sum(core_s) + sum(a + b for a, b in self.handoff_s[:k])
            out.append(self.inference_j(core_s, elapsed, k))
        return out


def path_latency_s(manifest: ProjectManifest) -> list[float]:
    """The cost model's latency per exit path: the stages' predicted times plus the handoffs."""
    out, t = [], 0.0
    for k, st in enumerate(manifest.stages):
        if k > 0 and st.handoff is not None:
            t += st.handoff.link_s + st.handoff.wakeup_s
        t += st.predicted_s
        out.append(t)
    return out
