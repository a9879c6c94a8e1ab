"""`eenn analyze`: the block table, candidate exit locations, blueprint and totals of a model.

The JSON form is a stable interface for scripts (schema_version 1; keys are only ever added).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eenn.augment.block_graph import Block, BlockGraph, build_block_graph
from eenn.augment.cost import CostModel, StageLoad
from eenn.augment.hardware import HardwareProfile
from eenn.augment.layer_graph import build_layer_graph
from eenn.augment.model_io import file_sha256, load_model

SCHEMA_VERSION = 1


@dataclass
class Analysis:
    model_path: str
    model_sha256: str
    block_graph: BlockGraph
    profile: HardwareProfile
    cost: CostModel

    def _block_dict(self, b: Block, cumulative: int) -> dict[str, Any]:
        return {
            "index": b.index, "name": b.name, "kind": b.kind, "layers": list(b.layers),
            "after_layer": b.output_layer, "shape": list(b.output_shape), "macs": b.macs, "params": b.params,
            "param_bytes": b.param_bytes, "activation_bytes": b.activation_bytes, "peak_bytes": b.peak_bytes,
            "cumulative_macs": cumulative,
            "latency_s": {p.name: self.cost.block_s(b, i) for i, p in enumerate(self.profile.processors)},
        }

    def whole_model_on(self, proc: int) -> tuple[float, float]:
        """Latency and energy of the whole base model on one processor."""
        bg = self.block_graph
        load = StageLoad(processor=proc, blocks=tuple(bg.blocks) + (bg.head,))
        cost = self.cost.mapping([load])
        return cost.latency_s[0], cost.energy_j[0]

    def to_dict(self) -> dict[str, Any]:
        bg = self.block_graph
        blocks, cumulative = [], 0
        for b in bg.blocks + [bg.head]:
            cumulative += b.macs
            blocks.append(self._block_dict(b, cumulative))
        totals_latency, totals_energy = {}, {}
        for i, p in enumerate(self.profile.processors):
            totals_latency[p.name], totals_energy[p.name] = self.whole_model_on(i)
        all_blocks = bg.blocks + [bg.head]
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model_path,
            "model_sha256": self.model_sha256,
            "input_shape": list(bg.input_shape),
            "num_classes": bg.num_classes,
            "hardware": self.profile.name,
            "processors": [p.name for p in self.profile.processors],
            "total_macs": bg.total_macs,
            "total_params": bg.layer_graph.total_params,
            "weights_bytes_int8": sum(b.param_bytes for b in all_blocks),
            "peak_arena_bytes": max(b.peak_bytes for b in all_blocks),
            "blocks": blocks[:-1],
            "head": blocks[-1],
            "candidates": [{"after_layer": c.after_layer, "block": c.block, "macs_before": c.macs_before,
                            "shape": list(c.shape), "activation_bytes": c.activation_bytes} for c in bg.candidates],
            "blueprint": {"layers": [{"name": l["name"], "class_name": l["class_name"]} for l in bg.blueprint.layers],
                          "macs": bg.blueprint.macs, "params": bg.blueprint.params,
                          "input_shape": list(bg.blueprint.input_shape)},
            "totals": {"latency_s": totals_latency, "energy_j": totals_energy},
        }


def analyze_model(model_path: str | Path, profile: HardwareProfile, cost: CostModel | None = None) -> Analysis:
    model = load_model(model_path)
    bg = build_block_graph(build_layer_graph(model))
    cost = cost or CostModel(profile)
    cost.measured.check(profile, [b.name for b in bg.blocks])
    return Analysis(model_path=str(model_path), model_sha256=file_sha256(model_path), block_graph=bg,
                    profile=profile, cost=cost)


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _fmt_s(s: float) -> str:
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def format_table(report: dict[str, Any]) -> str:
    """The human-readable form of the report."""
    procs = report["processors"]
    cand = {c["after_layer"] for c in report["candidates"]}
    header = ["#", "block", "kind", "output shape", "MACs", "params", "cum. MACs"] + [f"t({p})" for p in procs] + ["exit?"]
    rows = []
    for b in report["blocks"] + [report["head"]]:
        rows.append([str(b["index"]), b["name"], b["kind"], "×".join(map(str, b["shape"])), _fmt_int(b["macs"]),
                     _fmt_int(b["params"]), _fmt_int(b["cumulative_macs"])]
                    + [_fmt_s(b["latency_s"][p]) for p in procs] + ["◆" if b["after_layer"] in cand else ""])
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    right = {0, 4, 5, 6} | set(range(7, 7 + len(procs)))

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [f"model    {report['model']}  (sha256 {report['model_sha256'][:12]})",
           f"input    {'×'.join(map(str, report['input_shape']))}   classes {report['num_classes']}   "
           f"hardware {report['hardware']}", "", line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    out += ["", f"candidate exit locations ({len(report['candidates'])}, ◆):"]
    for c in report["candidates"]:
        out.append(f"  after {c['after_layer']:<28} {'×'.join(map(str, c['shape'])):>14}   "
                   f"{_fmt_int(c['macs_before'])} MACs before")
    bp = report["blueprint"]
    out += ["", "classifier blueprint: " + " → ".join(l["class_name"] for l in bp["layers"])
            + f"   ({_fmt_int(bp['macs'])} MACs)", ""]
    out.append(f"total    {_fmt_int(report['total_macs'])} MACs, {_fmt_int(report['total_params'])} params, "
               f"{_fmt_int(report['weights_bytes_int8'])} B weights (int8), peak arena ≈ {_fmt_int(report['peak_arena_bytes'])} B")
    for p in procs:
        out.append(f"  whole model on {p:<16} {_fmt_s(report['totals']['latency_s'][p]):>12}   "
                   f"{report['totals']['energy_j'][p] * 1e3:.3f} mJ")
    return "\n".join(out)


def plot_macs(report: dict[str, Any], path: str | Path) -> None:
    """MACs per block, candidate exit locations marked, cumulative MACs on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = report["blocks"] + [report["head"]]
    cand = {c["after_layer"] for c in report["candidates"]}
    xs = range(len(blocks))
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(blocks) + 3), 4.2))
    colors = ["tab:orange" if b["after_layer"] in cand else ("tab:gray" if b["kind"] == "head" else "tab:blue")
              for b in blocks]
    ax.bar(xs, [b["macs"] for b in blocks], color=colors)
    ax.set_xticks(list(xs), [b["name"] for b in blocks], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("MACs per block")
    ax2 = ax.twinx()
    ax2.plot(list(xs), [b["cumulative_macs"] for b in blocks], color="black", marker=".", linewidth=1)
    ax2.set_ylabel("cumulative MACs")
    ax2.set_ylim(bottom=0)
    from matplotlib.ticker import FuncFormatter

    millions = FuncFormatter(lambda v, _: f"{v / 1e6:g}M")
    ax.yaxis.set_major_formatter(millions)
    ax2.yaxis.set_major_formatter(millions)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="tab:orange", label="candidate exit after this block"),
                       Patch(color="tab:blue", label="backbone block"), Patch(color="tab:gray", label="classifier head")],
              loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=3, fontsize=8, frameon=False)
    ax.set_title(f"{Path(report['model']).name}: {report['total_macs']:,} MACs, {len(cand)} candidate exits", pad=22)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
