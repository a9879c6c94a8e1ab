"""Choosing the solution: each architecture with its best thresholds, the cheapest one wins,
and the Pareto front of every evaluated (architecture, thresholds) point is kept for the user.

Why keep the front: the objective's weight is a judgement call; the front shows what every
other trade-off between mean MACs and accuracy would have given (`pareto.csv`, `pareto.png`).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np


def pareto_mask(mean_macs: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """True where no other point has fewer-or-equal MACs and higher-or-equal accuracy, one strictly."""
    macs = np.asarray(mean_macs, dtype=np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    order = np.lexsort((-acc, macs))  # by MACs ascending, then accuracy descending
    keep = np.zeros(len(macs), dtype=bool)
    best = -np.inf
    for i in order:
        if acc[i] > best:
            keep[i] = True
            best = acc[i]
    return keep


def write_pareto_csv(path: Path, rows: Sequence[dict[str, object]]) -> None:
    if not rows:
        path.write_text("")
        return
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow(r)
