"""The statistics of a HIL session: `summary.json` (shape documented in docs/hil.md).

Every metric is reported side by side as `{"measured", "predicted", "reference"}`:
measured on the board (or the virtual board: then `timing` says the times are the cost
model's), predicted by the search (`solution.json` `metrics.eenn`), and computed by the Python
int8 chain (`eenn/reference.json`, quality metrics only). A missing side is `null`.

Definitions: precision and recall are macro averages over the classes present in the labels (a
class never predicted has precision 0), as the search computes them. Percentiles are
nearest-rank: p99 is the smallest observed value that at least 99 % of the samples do not
exceed, so it is always a latency that happened.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from eenn import __version__
from eenn.augment.metrics import precision_recall  # one definition for search and board
from eenn.codegen.manifest import ProjectManifest
from eenn.hil.energy import DatasheetEnergy, path_latency_s

SCHEMA_VERSION = 1
SCALAR_METRICS = ("accuracy", "precision", "recall", "early_termination", "mean_latency_s", "p50_latency_s",
                  "p99_latency_s", "worst_latency_s", "mean_energy_j")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (0 < p <= 100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p}: must be in (0, 100]")
    v = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(v) - 1e-9))
    return float(v[rank - 1])


def stats(values: Sequence[float]) -> dict[str, Any]:
    """{n, mean, p50, p99, worst} (None values when empty)."""
    if len(values) == 0:
        return {"n": 0, "mean": None, "p50": None, "p99": None, "worst": None}
    return {"n": len(values), "mean": float(np.mean(values)), "p50": percentile(values, 50),
            "p99": percentile(values, 99), "worst": float(max(values))}


def _side(measured, predicted=None, reference=None) -> dict[str, Any]:
    return {"measured": measured, "predicted": predicted, "reference": reference}


def _quality(y: np.ndarray, pred: np.ndarray, exits: np.ndarray, n_stages: int) -> dict[str, Any]:
    if len(y) == 0:
        return {"accuracy": None, "precision": None, "recall": None, "termination_rates": [None] * n_stages}
    p, r = precision_recall(y, pred)
    return {"accuracy": float(np.mean(pred == y)), "precision": p, "recall": r,
            "termination_rates": [float(np.mean(exits == k)) for k in range(n_stages)]}


def summarize(records: list[dict], labels: np.ndarray, manifest: ProjectManifest, *,
              tick_hz: Sequence[int], timing: str, energy_model: DatasheetEnergy,
              predicted: dict | None = None, reference: dict | None = None, n_data: int | None = None,
              energy_source: str = "datasheet", context: dict | None = None) -> dict[str, Any]:
    """Statistics of `records` (results.jsonl objects) against `labels` (indexed by record index).

    predicted: `solution.json` `metrics.eenn` (or None); reference: `eenn/reference.json` (or None).
    """
    n_stages = len(manifest.stages)
    records = sorted(records, key=lambda r: r["index"])
    idx = np.array([r["index"] for r in records], dtype=int)
    y = np.asarray(labels)[idx] if len(idx) else np.zeros(0, dtype=int)
    pred = np.array([r["class"] for r in records], dtype=int)
    exits = np.array([r["exit"] for r in records], dtype=int)
    core_s = [[t / hz for t, hz in zip(r["ticks"], tick_hz)] for r in records]
    elapsed_s = [r["elapsed_us"] * 1e-6 for r in records]
    model_j = [energy_model.inference_j(c, e, int(x)) for c, e, x in zip(core_s, elapsed_s, exits)]
    meter_j = [r.get("meter_j") for r in records]
    use_meter = energy_source != "datasheet" and all(v is not None for v in meter_j) and records
    energy_j = [float(v) for v in meter_j] if use_meter else model_j

    q = _quality(y, pred, exits, n_stages)
    pr = predicted or {}
    ref = _reference_quality(reference, labels, idx, n_stages)
    lat = stats(elapsed_s)
    en = stats(energy_j)
    pred_rates = pr.get("termination_rates")
    metrics = {
        "accuracy": _side(q["accuracy"], pr.get("accuracy"), ref.get("accuracy")),
        "precision": _side(q["precision"], pr.get("precision"), ref.get("precision")),
        "recall": _side(q["recall"], pr.get("recall"), ref.get("recall")),
        "early_termination": _side(None if not len(y) else 1.0 - q["termination_rates"][-1],
                                   pr.get("early_termination"),
                                   None if ref.get("termination_rates") is None else 1.0 - ref["termination_rates"][-1]),
        "termination_rates": _side(q["termination_rates"], pred_rates, ref.get("termination_rates")),
        "mean_latency_s": _side(lat["mean"], pr.get("mean_latency_s")),
        "p50_latency_s": _side(lat["p50"]),
        "p99_latency_s": _side(lat["p99"]),
        "worst_latency_s": _side(lat["worst"], pr.get("worst_latency_s")),
        "mean_energy_j": {**_side(en["mean"], pr.get("mean_energy_j")), "source": energy_source if use_meter else "datasheet",
                          "datasheet": stats(model_j)["mean"]},
    }
    if "_class" in ref:  # sample by sample: does the board answer as the int8 chain does?
        same = (ref["_class"] == pred) & (ref["_exit"] == exits)
        metrics["reference_agreement"] = _side(float(np.mean(same)), None, 1.0)

    cost_lat = path_latency_s(manifest)
    cost_en = energy_model.path_j(manifest)
    paths = []
    stage_cores = manifest.stage_cores()
    for k in range(n_stages):
        sel = [i for i, e in enumerate(exits) if e == k]
        cores = []
        for c in sorted({0, *stage_cores[:k + 1]}):  # core 0 serves the protocol on every path
            st = stats([core_s[i][c] for i in sel])
            on_c = [j for j in range(k + 1) if stage_cores[j] == c]
            cores.append({"core": c, "processor": _core_processor(manifest, c), "tick_hz": int(tick_hz[c]),
                          "predicted_s": sum(manifest.stages[j].predicted_s for j in on_c), "stages": on_c, **st})
        paths.append({
            "exit": k,
            "processor": manifest.stages[k].processor,
            "count": len(sel),
            "rate": _side(q["termination_rates"][k], None if pred_rates is None else pred_rates[k],
                          None if ref.get("termination_rates") is None else ref["termination_rates"][k]),
            "latency_s": {**stats([elapsed_s[i] for i in sel]), "predicted": cost_lat[k]},
            "cores": cores,
            "energy_j": {**stats([energy_j[i] for i in sel]), "predicted": cost_en[k]},
            "handoffs": _handoffs(records, sel, manifest.handoffs(k)),
        })
    n_data = len(labels) if n_data is None else n_data
    return {
        "schema_version": SCHEMA_VERSION,
        "generator": f"eenn {__version__}",
        **(context or {}),
        "bundle_hash": manifest.bundle_hash,
        "n": len(records),
        "n_data": n_data,
        "complete": len(records) == n_data,
        "timing": timing,
        "timing_measured": timing == "hardware",
        "energy_source": energy_source if use_meter else "datasheet",
        "retries": int(sum(max(0, r.get("attempts", 1) - 1) for r in records)),
        "metrics": metrics,
        "paths": paths,
        "cost_model": {"latency_s": cost_lat, "energy_j": cost_en,
                       "mean_latency_s": _mean_over(q["termination_rates"], cost_lat),
                       "mean_energy_j": _mean_over(q["termination_rates"], cost_en)},
    }


def _core_processor(manifest: ProjectManifest, core: int) -> str:
    if manifest.cores is not None:
        return manifest.cores[core].processor
    return manifest.stages[core].processor


def _handoffs(records: list[dict], sel: list[int], predicted: int) -> dict[str, Any]:
    """Handoffs per inference on one exit path: what the board reported (m-eenn-handoffs; None from
    firmware that does not report them) and what the placement implies (core changes on the path)."""
    got = [records[i].get("handoffs") for i in sel]
    got = [int(v) for v in got if v is not None]
    return {"mean": float(np.mean(got)) if got else None, "min": min(got) if got else None,
            "max": max(got) if got else None, "predicted": int(predicted)}


def _mean_over(rates: list, per_path: list[float]) -> float | None:
    if any(r is None for r in rates):
        return None
    return float(sum(r * v for r, v in zip(rates, per_path)))


def _reference_quality(reference: dict | None, labels: np.ndarray, idx: np.ndarray, n_stages: int) -> dict:
    """Quality of the int8 chain: from its per-sample answers when present (restricted to the
    samples measured), else the totals reference.json states."""
    if not reference:
        return {}
    samples = reference.get("samples")
    if isinstance(samples, list) and len(samples) == len(labels) and len(idx):
        rc = np.array([s["class"] for s in samples], dtype=int)[idx]
        rx = np.array([s["exit"] for s in samples], dtype=int)[idx]
        q = _quality(np.asarray(labels)[idx], rc, rx, n_stages)
        q["_class"], q["_exit"] = rc, rx
        return q
    return {"accuracy": reference.get("accuracy"), "precision": reference.get("precision"),
            "recall": reference.get("recall"), "termination_rates": reference.get("termination_rates")}


def scalar_metrics(summary: dict) -> dict[str, float]:
    """The measured scalars a regression gate compares (metric name → value), per-path included."""
    out: dict[str, float] = {}
    for name, m in summary.get("metrics", {}).items():
        v = m.get("measured") if isinstance(m, dict) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[name] = float(v)
        elif isinstance(v, list):
            for k, x in enumerate(v):
                if isinstance(x, (int, float)):
                    out[f"{name}[{k}]"] = float(x)
    for p in summary.get("paths", []):
        k = p["exit"]
        for stat in ("mean", "p99", "worst"):
            if p["latency_s"].get(stat) is not None:
                out[f"exit{k}.{stat}_latency_s"] = float(p["latency_s"][stat])
        if p["energy_j"].get("mean") is not None:
            out[f"exit{k}.mean_energy_j"] = float(p["energy_j"]["mean"])
    return out


def _fmt(v, name: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x, name) for x in v) + "]"
    if name.endswith("_latency_s"):
        return f"{v * 1e3:.3f} ms"
    if name.endswith("_energy_j"):
        return f"{v * 1e3:.4f} mJ"
    return f"{v:.4f}"


def format_table(summary: dict) -> str:
    """The side-by-side view printed by `eenn hil run`: metric, board, solution.json, int8 reference."""
    rows = [("metric", "board", "predicted", "int8 reference")]
    for name, m in summary["metrics"].items():
        rows.append((name, _fmt(m["measured"], name), _fmt(m["predicted"], name), _fmt(m["reference"], name)))
    for p in summary["paths"]:
        lat = p["latency_s"]
        rows.append((f"exit {p['exit']} ({p['processor']}) latency mean/p99/worst",
                     "/".join(_fmt(lat[k], "_latency_s") for k in ("mean", "p99", "worst")),
                     _fmt(lat["predicted"], "_latency_s") + " (cost model)", ""))
        rows.append((f"exit {p['exit']} ({p['processor']}) energy mean", _fmt(p["energy_j"]["mean"], "_energy_j"),
                     _fmt(p["energy_j"]["predicted"], "_energy_j") + " (cost model)", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    note = "timing: " + summary["timing"] + ("" if summary["timing_measured"] else "  (NOT measured)")
    return "\n".join(lines + [note, f"energy: {summary['energy_source']}"])
