"""The figures every report shows, computed one way for the base model and for the EENN.

Why here: `solution.json` promises the same keys for `base` and `eenn` (docs/interfaces.md §2),
and the HIL harness compares its measurements with them, so they must be computed identically.
Precision and recall are macro averages over the classes present in the split's labels.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from eenn.augment.cost import MappingCost


def precision_recall(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """Macro precision and recall over the classes in `y_true` (a class never predicted: precision 0)."""
    classes = np.unique(y_true)
    precisions, recalls = [], []
    for c in classes:
        tp = float(np.sum((y_pred == c) & (y_true == c)))
        predicted = float(np.sum(y_pred == c))
        actual = float(np.sum(y_true == c))
        precisions.append(tp / predicted if predicted else 0.0)
        recalls.append(tp / actual if actual else 0.0)
    return float(np.mean(precisions)), float(np.mean(recalls))


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    precision: float
    recall: float
    mean_macs: float
    mean_latency_s: float
    worst_latency_s: float
    mean_energy_j: float
    # The first processor's own energy (its radio's joules per byte included): on a distributed
    # profile, what the device pays; on one chip (shared memory) the same as mean_energy_j.
    mean_device_energy_j: float | None = None
    early_termination: float | None = None  # share answered before the last classifier (EENN only)
    termination_rates: list[float] = field(default_factory=list)  # per exit, then the final classifier

    def to_dict(self, with_termination: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not with_termination:
            d.pop("early_termination")
            d.pop("termination_rates")
        return d


def cascade_metrics(y_true: np.ndarray, y_pred: np.ndarray, stage: np.ndarray, n_stages: int,
                    stage_macs: Sequence[float], cost: MappingCost) -> Metrics:
    """Metrics of a cascade given, per sample, the predicted class and the stage that answered."""
    acc = float(np.mean(y_pred == y_true))
    prec, rec = precision_recall(y_true, y_pred)
    rates = np.bincount(stage, minlength=n_stages)[:n_stages] / len(stage)
    cum = np.cumsum(np.asarray(stage_macs, dtype=np.float64))
    mean_macs = float(np.sum(rates * cum))
    lat, energy = cost.mean(rates.tolist())
    return Metrics(accuracy=acc, precision=prec, recall=rec, mean_macs=mean_macs, mean_latency_s=float(lat),
                   worst_latency_s=float(cost.worst_latency_s), mean_energy_j=float(energy),
                   mean_device_energy_j=float(cost.mean_device_energy(rates.tolist())),
                   early_termination=float(1.0 - rates[-1]), termination_rates=[float(r) for r in rates])
