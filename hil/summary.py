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

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eenn import __version__
from eenn.augment.metrics import precision_recall  # one definition for search and board
from eenn.codegen.manifest import ProjectManifest, Reference
from eenn.codegen.reference import decode_scores
from eenn.errors import EennError
from eenn.fields import known_fields
from eenn.hil.energy import DatasheetEnergy, path_latency_s

SUMMARY = "summary.json"  # in the session directory
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
              predicted: dict | None = None, reference: Reference | None = None, n_data: int | None = None,
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
            **({"int8_reference": score_agreement(records, ref["_class"], ref["_exit"], ref.get("_scores"), k)}
               if "_class" in ref else {}),
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


def _reference_quality(reference: Reference | None, labels: np.ndarray, idx: np.ndarray, n_stages: int) -> dict:
    """Quality of the int8 chain: from its per-sample answers when they are of this data (restricted
    to the samples measured), else the totals reference.json states."""
    if reference is None:
        return {}
    samples = reference.samples
    if len(samples) == len(labels) and len(idx):
        rc = np.array([s.cls for s in samples], dtype=int)[idx]
        rx = np.array([s.exit for s in samples], dtype=int)[idx]
        q = _quality(np.asarray(labels)[idx], rc, rx, n_stages)
        q["_class"], q["_exit"] = rc, rx
        if all(isinstance(s.scores_q, str) for s in samples):
            q["_scores"] = [decode_scores(samples[i].scores_q) for i in idx]
        return q
    return {"accuracy": reference.accuracy, "termination_rates": reference.termination_rates}


def score_agreement(records: list[dict], ref_class: np.ndarray, ref_exit: np.ndarray,
                    ref_scores: list[list[int]] | None, k: int) -> dict[str, Any]:
    """Board vs int8 chain for the inferences the board answered at exit k (records sorted by index,
    the reference arrays aligned with them).

    `class_agreement`: share of them where the chain answered at the same exit with the same class.
    `score_diff_lsb`: over the samples where both answered at exit k (the same classifier), the
    difference of each int8 score, board − chain, in LSB of the int8 scores: `max` of its absolute
    value and `rms` over every score of every such sample; null when either side has no scores
    (an older reference.json, or records without `scores_q`)."""
    sel = [i for i, r in enumerate(records) if r["exit"] == k]
    same = [i for i in sel if ref_exit[i] == k]
    agree = sum(1 for i in same if records[i]["class"] == ref_class[i])
    diffs: list[int] = []
    have_scores = ref_scores is not None and all(isinstance(records[i].get("scores_q"), list) for i in same)
    if have_scores:
        for i in same:
            board, chain = records[i]["scores_q"], ref_scores[i]  # type: ignore[index]
            if len(board) != len(chain):  # a different classifier: its scores say nothing comparable
                raise ValueError(f"sample {records[i]['index']}: the board sent {len(board)} scores, "
                                 f"the int8 chain has {len(chain)} at exit {k}")
            diffs.extend(int(b) - int(c) for b, c in zip(board, chain))
    d = np.asarray(diffs, dtype=np.float64)
    return {"n": len(sel), "same_exit": len(same),
            "class_agreement": float(agree / len(sel)) if sel else None,
            "score_diff_lsb": {"n_samples": len(same) if have_scores else 0,
                               "max": float(np.max(np.abs(d))) if have_scores and d.size else None,
                               "rms": float(np.sqrt(np.mean(d * d))) if have_scores and d.size else None}}


def scalar_metrics(summary: Summary) -> dict[str, float]:
    """The measured scalars a regression gate compares (metric name → value), per-path included."""
    out: dict[str, float] = {}
    for name, m in summary.metrics.items():
        v = m.measured
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[name] = float(v)
        elif isinstance(v, list):
            for k, x in enumerate(v):
                if isinstance(x, (int, float)):
                    out[f"{name}[{k}]"] = float(x)
    for p in summary.paths:
        for stat in ("mean", "p99", "worst"):
            if getattr(p.latency_s, stat) is not None:
                out[f"exit{p.exit}.{stat}_latency_s"] = float(getattr(p.latency_s, stat))
        if p.energy_j.mean is not None:
            out[f"exit{p.exit}.mean_energy_j"] = float(p.energy_j.mean)
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


def format_table(summary: Summary) -> str:
    """The side-by-side view printed by `eenn hil run`: metric, board, solution.json, int8 reference."""
    rows = [("metric", "board", "predicted", "int8 reference")]
    for name, m in summary.metrics.items():
        rows.append((name, _fmt(m.measured, name), _fmt(m.predicted, name), _fmt(m.reference, name)))
    for p in summary.paths:
        lat = p.latency_s
        rows.append((f"exit {p.exit} ({p.processor}) latency mean/p99/worst",
                     "/".join(_fmt(v, "_latency_s") for v in (lat.mean, lat.p99, lat.worst)),
                     _fmt(lat.predicted, "_latency_s") + " (cost model)", ""))
        rows.append((f"exit {p.exit} ({p.processor}) energy mean", _fmt(p.energy_j.mean, "_energy_j"),
                     _fmt(p.energy_j.predicted, "_energy_j") + " (cost model)", ""))
        agr = p.int8_reference
        if agr is not None:
            d = agr.score_diff_lsb
            rows.append((f"exit {p.exit} ({p.processor}) vs int8 chain: class / score diff max, rms (LSB)",
                         f"{_fmt(agr.class_agreement, '')} / {_fmt(d.max, '')}, {_fmt(d.rms, '')}", "",
                         "1.0000 / 0, 0"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    note = "timing: " + summary.timing + ("" if summary.timing_measured else "  (NOT measured)")
    return "\n".join(lines + [note, f"energy: {summary.energy_source}"])


# ------------------------------------------------------------------------------ typed reader
@dataclass(frozen=True)
class Side:
    """One metric three ways: on the board, as the search predicted, as the int8 chain computes it
    (None where a side is missing). Lists for per-exit metrics (termination_rates)."""
    measured: Any = None
    predicted: Any = None
    reference: Any = None


@dataclass(frozen=True)
class PathStats:
    """Latency or energy of one exit path: the samples' statistics and the cost model's figure."""
    n: int = 0
    mean: float | None = None
    p50: float | None = None
    p99: float | None = None
    worst: float | None = None
    predicted: float | None = None


@dataclass(frozen=True)
class ScoreDiff:
    n_samples: int = 0
    max: float | None = None
    rms: float | None = None


@dataclass(frozen=True)
class ChainAgreement:
    """Board vs the Python int8 chain on the samples the board answered at one exit."""
    n: int
    same_exit: int
    class_agreement: float | None
    score_diff_lsb: ScoreDiff


@dataclass(frozen=True)
class ExitPath:
    exit: int
    processor: str
    count: int
    latency_s: PathStats
    energy_j: PathStats
    int8_reference: ChainAgreement | None = None


@dataclass(frozen=True)
class Summary:
    """`summary.json` as read back: what report, regress and deploy use. `document` is the file as
    written (with the keys this eenn does not model: per-core figures, handoffs, cost model), so a
    baseline written from it is the session's file, not a reduction of it."""
    bundle_hash: str | None
    n: int
    n_data: int
    complete: bool
    timing: str
    timing_measured: bool
    energy_source: str
    metrics: dict[str, Side]
    paths: tuple[ExitPath, ...] = ()
    retries: int = 0
    schema_version: int = SCHEMA_VERSION
    document: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def metric(self, name: str) -> Side:
        """The metric `name`, or a Side of Nones when this summary lacks it (older or partial)."""
        return self.metrics.get(name, Side())

    @classmethod
    def from_document(cls, d: Any, where: str) -> Summary:
        """Parse a summary document; `where` (a path) names the file in errors."""
        top = known_fields(cls, d, where)
        if top.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise EennError(f"{where}: schema_version {top['schema_version']!r}, this eenn reads {SCHEMA_VERSION}")
        if not isinstance(top["metrics"], dict):
            raise EennError(f"{where}: 'metrics' must be an object of metric name → measured/predicted/reference")
        # a metric of another shape (a newer eenn's scalar) is not one of ours to read: skipped
        metrics = {name: Side(**known_fields(Side, m, f"{where}: metrics.{name}"))
                   for name, m in top["metrics"].items() if isinstance(m, dict)}
        paths = []
        for k, p in enumerate(top.get("paths") or []):
            at = f"{where}: paths[{k}]"
            p = known_fields(ExitPath, p, at)
            agr = p.get("int8_reference")
            if agr is not None:
                agr = known_fields(ChainAgreement, agr, f"{at}.int8_reference")
                agr = ChainAgreement(**{**agr, "score_diff_lsb": ScoreDiff(**known_fields(
                    ScoreDiff, agr["score_diff_lsb"], f"{at}.int8_reference.score_diff_lsb"))})
            paths.append(ExitPath(**{**p, "int8_reference": agr,
                                     "latency_s": PathStats(**known_fields(PathStats, p["latency_s"], f"{at}.latency_s")),
                                     "energy_j": PathStats(**known_fields(PathStats, p["energy_j"], f"{at}.energy_j"))}))
        return cls(**{**top, "metrics": metrics, "paths": tuple(paths), "document": d})


def summary_path(session: str | Path) -> Path:
    """A session directory's summary.json (or the path itself when it names the file)."""
    p = Path(session)
    return p / SUMMARY if p.is_dir() else p


def read_summary(session: str | Path, what: str = "session") -> Summary:
    """Read a session's `summary.json` (SESSION may be the directory or the file). `what` says in
    errors which one is missing: the session being checked, or a baseline."""
    p = summary_path(session)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        hint = " (create it with --update-baseline)" if what == "baseline" else \
            " (run `eenn hil run` to completion first)"
        raise EennError(f"{p}: {what} summary not found{hint}") from None
    except ValueError as exc:
        raise EennError(f"{p}: not valid JSON ({exc})") from None
    return Summary.from_document(d, str(p))


def check_same_session_bundle(summary: Summary, session: str | Path, bundle_hash: str) -> None:
    """A session's results describe the bundle it ran; refuse to put them beside another's."""
    if summary.bundle_hash is not None and summary.bundle_hash != bundle_hash:
        raise EennError(f"{session}: a HIL session of bundle {summary.bundle_hash[:12]}, not of {bundle_hash[:12]}; "
                        "run `eenn hil run` again with this bundle's project")
