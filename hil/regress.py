"""`eenn hil regress`: compare a session's summary with a stored baseline, within tolerances.

The baseline is a `summary.json` (from an accepted session; `--update-baseline` writes it).
Metrics compared: the measured scalars of `eenn.hil.summary.scalar_metrics` (accuracy,
precision, recall, early_termination, termination_rates[k], reference_agreement, mean/p50/p99/
worst latency, mean energy, and per exit path exitK.mean/p99/worst_latency_s, exitK.mean_energy_j).

Each metric has a direction: `higher` is better (quality), `lower` is better (latency, energy)
or `equal` (termination rates: a change either way means the model behaves differently). The
allowed change is `max(abs, rel × |baseline|)`; a metric regresses when it moves beyond that in
the bad direction. A metric of the baseline that the session lacks is a failure; a new one is
reported, not gated. Tolerances (TOML, docs/hil.md):

    [default]                 # by metric family
    quality_abs = 0.01        # accuracy, precision, recall, early_termination, reference_agreement
    rates_abs = 0.02          # termination_rates[k]
    latency_rel = 0.05        # *_latency_s  (plus latency_abs, default 2e-6 s: one tick and rounding)
    energy_rel = 0.05         # *_energy_j

    [metrics."exit1.p99_latency_s"]   # per metric; overrides the family
    rel = 0.10
    [metrics.mean_energy_j]
    skip = true

A command line `--tol NAME=VALUE` (VALUE `0.01` absolute, `5%` relative, `skip`) overrides both.
"""
from __future__ import annotations

import math
import socket
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

from eenn.errors import EennError
from eenn.hil.summary import Summary, scalar_metrics

DEFAULTS = {"quality_abs": 0.01, "rates_abs": 0.02, "latency_rel": 0.05, "latency_abs": 2e-6,
            "energy_rel": 0.05, "energy_abs": 0.0}
QUALITY = ("accuracy", "precision", "recall", "early_termination", "reference_agreement")


@dataclass(frozen=True)
class Tolerance:
    direction: str  # higher | lower | equal
    abs: float = 0.0
    rel: float = 0.0
    skip: bool = False

    def allowed(self, baseline: float) -> float:
        return max(self.abs, self.rel * abs(baseline))

    def describe(self) -> str:
        if self.skip:
            return "skipped"
        parts = []
        if self.rel:
            parts.append(f"{self.rel * 100:g}%")
        if self.abs or not parts:
            parts.append(f"{self.abs:g}")
        sign = {"higher": "-", "lower": "+", "equal": "±"}[self.direction]
        return sign + " max(" + ", ".join(parts) + ")" if len(parts) > 1 else sign + parts[0]


def family(name: str) -> tuple[str, str]:
    """(direction, family) of a metric name."""
    if name.startswith("termination_rates["):
        return "equal", "rates"
    if name.endswith("_latency_s"):
        return "lower", "latency"
    if name.endswith("_energy_j"):
        return "lower", "energy"
    if name in QUALITY:
        return "higher", "quality"
    return "equal", "quality"


def _num(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or math.isnan(v):
        raise EennError(f"{where}: {v!r} is not a non-negative number")
    return float(v)


def load_tolerances(path: str | Path | None) -> dict:
    if path is None:
        return {"default": {}, "metrics": {}}
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise EennError(f"{p}: tolerance file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise EennError(f"{p}: not valid TOML ({exc})") from None
    unknown = set(raw) - {"default", "metrics"}
    if unknown:
        raise EennError(f"{p}: unknown table(s) {sorted(unknown)}; expected [default] and [metrics.NAME]")
    default = raw.get("default", {})
    for k, v in default.items():
        if k not in DEFAULTS:
            raise EennError(f"{p}: [default] {k}: unknown; expected one of {', '.join(DEFAULTS)}")
        _num(v, f"{p}: [default] {k}")
    metrics = raw.get("metrics", {})
    for name, spec in metrics.items():
        if not isinstance(spec, dict):
            raise EennError(f"{p}: metrics.{name}: expected a table with abs, rel, skip and/or direction")
        for k, v in spec.items():
            if k in ("abs", "rel"):
                _num(v, f"{p}: metrics.{name}.{k}")
            elif k == "skip":
                if not isinstance(v, bool):
                    raise EennError(f"{p}: metrics.{name}.skip: expected true or false")
            elif k == "direction":
                if v not in ("higher", "lower", "equal"):
                    raise EennError(f"{p}: metrics.{name}.direction: expected higher, lower or equal")
            else:
                raise EennError(f"{p}: metrics.{name}.{k}: unknown key (abs, rel, skip, direction)")
    return {"default": default, "metrics": metrics}


def parse_tol_option(text: str) -> tuple[str, dict]:
    """`NAME=0.01` (absolute), `NAME=5%` (relative), `NAME=skip`."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise EennError(f"--tol {text}: expected NAME=VALUE (0.01, 5% or skip)")
    value = value.strip()
    if value == "skip":
        return name, {"skip": True}
    try:
        if value.endswith("%"):
            return name, {"rel": _num(float(value[:-1]) / 100.0, f"--tol {text}"), "abs": 0.0}
        return name, {"abs": _num(float(value), f"--tol {text}"), "rel": 0.0}
    except ValueError:
        raise EennError(f"--tol {text}: '{value}' is not a number, a percentage or 'skip'") from None


def tolerance_for(name: str, tolerances: dict, overrides: dict[str, dict]) -> Tolerance:
    direction, fam = family(name)
    d = {**DEFAULTS, **tolerances.get("default", {})}
    abs_, rel = {"quality": (d["quality_abs"], 0.0), "rates": (d["rates_abs"], 0.0),
                 "latency": (d["latency_abs"], d["latency_rel"]), "energy": (d["energy_abs"], d["energy_rel"])}[fam]
    spec = {"direction": direction, "abs": abs_, "rel": rel, "skip": False}
    for source in (tolerances.get("metrics", {}).get(name), overrides.get(name)):
        if source:
            spec.update(source)
    return Tolerance(**spec)


@dataclass(frozen=True)
class Row:
    metric: str
    baseline: float | None
    now: float | None
    tolerance: Tolerance
    status: str  # ok | REGRESSION | missing | new | skipped | improved
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("REGRESSION", "missing")


def compare(baseline: Summary, now: Summary, tolerances: dict | None = None,
            overrides: dict[str, dict] | None = None) -> list[Row]:
    tolerances = tolerances or {"default": {}, "metrics": {}}
    overrides = overrides or {}
    b, n = scalar_metrics(baseline), scalar_metrics(now)
    rows = []
    if not now.complete:
        rows.append(Row("complete", 1.0, 0.0, Tolerance("equal"), "REGRESSION",
                        f"the session ran {now.n} of {now.n_data} samples"))
    for name in list(b) + [k for k in n if k not in b]:
        tol = tolerance_for(name, tolerances, overrides)
        bv, nv = b.get(name), n.get(name)
        if tol.skip:
            rows.append(Row(name, bv, nv, tol, "skipped"))
        elif nv is None:
            rows.append(Row(name, bv, None, tol, "missing", f"{name} is in the baseline but not in this session"))
        elif bv is None:
            rows.append(Row(name, None, nv, tol, "new"))
        else:
            allowed = tol.allowed(bv)
            delta = nv - bv
            bad = {"higher": -delta, "lower": delta, "equal": abs(delta)}[tol.direction]
            if bad > allowed + 1e-12 * max(1.0, abs(bv)):
                word = {"higher": "dropped", "lower": "rose", "equal": "changed"}[tol.direction]
                rows.append(Row(name, bv, nv, tol, "REGRESSION",
                                f"{name} {word} from {bv:.6g} to {nv:.6g} (allowed {allowed:.3g})"))
            else:
                better = tol.direction != "equal" and -bad > allowed
                rows.append(Row(name, bv, nv, tol, "improved" if better else "ok"))
    return rows


def _v(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def format_rows(rows: list[Row]) -> str:
    table = [("metric", "baseline", "now", "tolerance", "status")]
    table += [(r.metric, _v(r.baseline), _v(r.now), r.tolerance.describe(), r.status) for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip() for t in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def junit_xml(rows: list[Row], *, suite: str = "eenn-hil-regress", elapsed_s: float = 0.0,
              properties: dict[str, str] | None = None) -> bytes:
    """One <testcase> per metric in one <testsuite> (the common JUnit schema)."""
    failures = sum(r.failed for r in rows)
    skipped = sum(r.status in ("skipped", "new") for r in rows)
    root = ET.Element("testsuites", name=suite, tests=str(len(rows)), failures=str(failures), errors="0",
                      time=f"{elapsed_s:.3f}")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(rows)), failures=str(failures), errors="0",
                       skipped=str(skipped), time=f"{elapsed_s:.3f}",
                       timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"), hostname=socket.gethostname())
    if properties:
        props = ET.SubElement(ts, "properties")
        for k, v in properties.items():
            ET.SubElement(props, "property", name=str(k), value=str(v))
    for r in rows:
        tc = ET.SubElement(ts, "testcase", classname="eenn.hil.regress", name=r.metric, time="0")
        if r.failed:
            f = ET.SubElement(tc, "failure", message=r.message or r.status, type=r.status.lower())
            f.text = f"baseline {_v(r.baseline)}, now {_v(r.now)}, tolerance {r.tolerance.describe()}"
        elif r.status in ("skipped", "new"):
            ET.SubElement(tc, "skipped", message="not gated" if r.status == "skipped" else "new metric (no baseline)")
    out = ET.SubElement(ts, "system-out")
    out.text = format_rows(rows)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def check_same_model(baseline: Summary, now: Summary, *, allow_other_model: bool = False,
                     where: str = "baseline") -> str | None:
    """Numbers of two different solutions are not a regression test: refuse to compare a
    session with a baseline of another bundle (EennError, exit 2) unless `allow_other_model`;
    then, or when a side does not record its bundle, return the note to print (else None)."""
    b, n = baseline.bundle_hash, now.bundle_hash
    if not b or not n:
        return (f"note: the {'baseline' if not b else 'session'} does not record its bundle hash: "
                "cannot check that both are of the same solution")
    if b == n:
        return None
    if not allow_other_model:
        raise EennError(f"{where} is of another solution: baseline bundle {b}, this session's bundle {n}. "
                        "Accept the new solution's numbers with --update-baseline, or compare the two models "
                        "on purpose with --allow-other-model")
    return f"note: comparing different solutions on purpose: baseline bundle {b[:12]}, this session {n[:12]}"
