"""The session's plots: latency histogram per exit path, energy per exit path (PNG, Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eenn.hil.summary import Summary

LATENCY_PNG = "latency.png"
ENERGY_PNG = "energy.png"


def latency_bins(values: list[float], n: int = 60) -> list[float]:
    """Bin edges shared by every exit path, spanning all latencies (and predictions) with a margin.

    Shared edges keep the paths comparable; the margin and the fixed count give every bin a
    visible width even when a path's latencies are all equal (the virtual board's are: its ticks
    come from the cost model), where a per-path histogram would draw zero-width bars."""
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.05, abs(hi) * 0.01, 1e-6)
    lo, hi = lo - pad, hi + pad
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def write_plots(summary: Summary, records: list[dict], tick_hz, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = summary.paths
    measured = "measured" if summary.timing_measured else "virtual board: cost model"
    written = []

    fig, ax = plt.subplots(figsize=(7, 4))
    per_path = [[r["elapsed_us"] / 1000.0 for r in records if r["exit"] == p.exit] for p in paths]
    predicted = [p.latency_s.predicted * 1000.0 for p in paths]
    bins = latency_bins([v for vals in per_path for v in vals] + predicted)
    for k, (p, vals) in enumerate(zip(paths, per_path)):
        color = f"C{k}"
        if vals:
            ax.hist(vals, bins=bins, alpha=0.6, color=color,
                    label=f"exit {p.exit} ({p.processor}): {len(vals)} samples")
        ax.axvline(predicted[k], linestyle="--", linewidth=1, color=color)
    ax.set_xlabel("latency per inference [ms]")
    ax.set_ylabel("samples")
    ax.set_title(f"Latency per exit path ({measured}); dashed: cost model")
    if any(p.count for p in paths):
        ax.legend()
    fig.tight_layout()
    written.append(out_dir / LATENCY_PNG)
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = list(range(len(paths)))
    got = [(p.energy_j.mean or 0.0) * 1e3 for p in paths]
    pred = [p.energy_j.predicted * 1e3 for p in paths]
    src = summary.energy_source
    label = "board times × datasheet power" if src == "datasheet" else f"board ({src})"
    ax.bar([x - 0.2 for x in xs], got, width=0.4, label=label)
    ax.bar([x + 0.2 for x in xs], pred, width=0.4, label="cost model")
    ax.set_xticks(xs, [f"exit {p.exit} ({p.processor})\n{p.count} samples" for p in paths])
    ax.set_ylabel("energy per inference [mJ]")
    ax.set_title("Energy per exit path")
    ax.legend()
    fig.tight_layout()
    written.append(out_dir / ENERGY_PNG)
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written
