"""The bundle's plots: the Pareto front, termination rate per exit, MACs per exit path.

Informational only (not hashed, never read downstream); matplotlib with the Agg backend so
that they render on a headless CI machine.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


MEASURES = {  # the search's efficiency measure → (row/metrics key, scale, axis label)
    "macs": ("mean_macs", 1e6, "mean MACs per inference (millions)"),
    "latency": ("mean_latency_s", 1e-3, "mean latency per inference (ms)"),
    "energy": ("mean_energy_j", 1e-3, "mean energy per inference (mJ)"),
}


def pareto_plot(path: Path, all_x: np.ndarray, all_acc: np.ndarray, front: Sequence[dict[str, Any]],
                chosen: tuple[float, float], base: tuple[float, float], title: str, measure: str = "macs") -> None:
    """Accuracy vs the search's efficiency measure: every evaluated point, the front, base, choice."""
    key, scale, label = MEASURES[measure]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    if len(all_x):
        ax.scatter(np.asarray(all_x) / scale, np.asarray(all_acc) * 100, s=6, color="0.75",
                   label="evaluated (architecture, thresholds)")
    fx = [r[key] / scale for r in front]
    fa = [r["accuracy"] * 100 for r in front]
    ax.step(fx, fa, where="post", color="tab:blue", marker=".", label="Pareto front")
    ax.scatter([base[0] / scale], [base[1] * 100], marker="s", color="black", zorder=5, label="base model")
    ax.scatter([chosen[0] / scale], [chosen[1] * 100], marker="*", s=160, color="tab:red", zorder=6, label="chosen")
    ax.set_xlabel(label)
    ax.set_ylabel("accuracy (%), calibration split")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def termination_plot(path: Path, labels: Sequence[str], rates: Sequence[float], title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(labels) + 2), 3.8))
    ax.bar(range(len(rates)), [r * 100 for r in rates], color=["tab:orange"] * (len(rates) - 1) + ["tab:gray"])
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("samples answered (%), test split")
    for i, r in enumerate(rates):
        ax.text(i, r * 100 + 1, f"{r * 100:.1f} %", ha="center", fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def macs_plot(path: Path, labels: Sequence[str], cumulative_macs: Sequence[float], base_macs: float, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(labels) + 2), 3.8))
    ax.bar(range(len(labels)), [m / 1e6 for m in cumulative_macs], color="tab:blue")
    ax.axhline(base_macs / 1e6, color="black", linestyle="--", linewidth=1, label="base model")
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("MACs when answered here (millions)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
