"""The end-to-end report: one HTML file (plots embedded) and its Markdown twin.

It reads only the pipeline's documented outputs — the solution bundle (docs/interfaces.md §2),
the generated project's `eenn/project.json` and `eenn/reference.json` (§3) and the HIL
session's `summary.json` (docs/hil.md §3) — so it can be rebuilt from those directories alone
(`eenn report`). What a stage did not produce is said, never filled with a guess.
"""
from __future__ import annotations

import base64
import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eenn import __version__
from eenn.augment.bundle import load_bundle
from eenn.augment.report import rejected_line
from eenn.codegen.manifest import (MANIFEST_PATH, ProjectManifest, Reference, check_same_bundle, load_manifest,
                                   read_reference)
from eenn.hil.summary import Side, Summary, check_same_session_bundle, read_summary, summary_path


@dataclass(frozen=True)
class ReportSources:
    bundle: Path
    project: Path | None = None
    session: Path | None = None


# ------------------------------------------------------------------------------------ format
def pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f} %"


def si(x: float | None, unit: str) -> str:
    """1.06 s, 21.3 mJ, 4.8 µs …; 'n/a' for a missing value."""
    if x is None:
        return "n/a"
    for factor, prefix in ((1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n")):
        if abs(x) >= factor or factor == 1e-9:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x} {unit}"


def macs(x: float | None) -> str:
    if x is None:
        return "n/a"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= factor:
            return f"{x / factor:.3g} {suffix}"
    return f"{x:.3g}"


def nbytes(x: int | None) -> str:
    if x is None:
        return "n/a"
    if x >= 1 << 20:
        return f"{x / (1 << 20):.2f} MiB"
    if x >= 1 << 10:
        return f"{x / (1 << 10):.1f} KiB"
    return f"{x} B"


def delta_points(base: float, new: float) -> str:
    return f"{100 * (new - base):+.2f} pts"


def delta_relative(base: float, new: float) -> str:
    if base == 0:
        return "n/a"
    return f"{100 * (new - base) / base:+.2f} %"


# ------------------------------------------------------------------------------------ tables
def paper_table(metrics: dict[str, Any], reference: Reference | None = None,
                summary: Summary | None = None, device_name: str | None = None) -> list[dict[str, str]]:
    """Base model vs EENN, as in the paper's Table 2, with deltas (test split): the search's figures
    (on int8 or float outputs: `metrics.scoring`), and, once the project is generated, the int8 accuracy of both as the board runs them
    (the base model converted alone; the EENN measured on the board, else its int8 prediction).
    `device_name`: on a distributed profile, the first processor, whose own energy is a row too."""
    b, e = metrics["base"], metrics["eenn"]
    rows = []
    for key, name in (("accuracy", "Accuracy"), ("precision", "Precision"), ("recall", "Recall")):
        rows.append({"metric": name, "base": pct(b[key]), "eenn": pct(e[key]), "delta": delta_points(b[key], e[key])})
    if reference is not None and reference.base_accuracy is not None:
        board = summary.metric("accuracy").measured if summary else None
        int8 = reference.accuracy if board is None else board
        rows.append({"metric": "Accuracy, int8 " + ("on the board" if board is not None else "(prediction)"),
                     "base": pct(reference.base_accuracy), "eenn": pct(int8),
                     "delta": delta_points(reference.base_accuracy, int8)})
    rows.append({"metric": "Mean MACs", "base": macs(b["mean_macs"]), "eenn": macs(e["mean_macs"]),
                 "delta": delta_relative(b["mean_macs"], e["mean_macs"])})
    energy_rows = [("mean_energy_j", "Mean energy" + (" (total)" if device_name else ""), "J")]
    if device_name and b.get("mean_device_energy_j") is not None and e.get("mean_device_energy_j") is not None:
        energy_rows.append(("mean_device_energy_j", f"Mean energy on {device_name} (the device)", "J"))
    for key, name, unit in (("mean_latency_s", "Mean latency", "s"), ("worst_latency_s", "Worst-case latency", "s"),
                            *energy_rows):
        rows.append({"metric": name, "base": si(b[key], unit), "eenn": si(e[key], unit),
                     "delta": delta_relative(b[key], e[key])})
    base_early = b.get("early_termination", 0.0)
    rows.append({"metric": "Early termination", "base": pct(base_early), "eenn": pct(e["early_termination"]),
                 "delta": delta_points(base_early, e["early_termination"])})
    return rows


def _triple(metric: Side, fmt) -> dict[str, str]:
    return {k: ("—" if getattr(metric, k) is None else fmt(getattr(metric, k))) for k in ("predicted", "reference", "measured")}


def validation_table(summary: Summary | None, reference: Reference | None,
                     eenn: dict[str, Any]) -> list[dict[str, str]]:
    """Per metric: the search's estimate ("predicted" in summary.json), the int8 prediction
    (the reference chain: what the firmware must answer) and the board."""
    if summary is not None:
        m = summary.metric
        rows = [{"metric": "Accuracy", **_triple(m("accuracy"), pct)},
                {"metric": "Early termination", **_triple(m("early_termination"), pct)}]
        rates = m("termination_rates")
        sides = ("measured", "predicted", "reference")
        n = max(len(getattr(rates, k) or []) for k in sides)
        for k in range(n):
            name = "final classifier" if k == n - 1 else f"exit {k}"
            per = Side(**{s: (getattr(rates, s) or [None] * n)[k] for s in sides})
            rows.append({"metric": f"Terminates at {name}", **_triple(per, pct)})
        for key, name, unit in (("mean_latency_s", "Mean latency", "s"), ("p99_latency_s", "p99 latency", "s"),
                                ("worst_latency_s", "Worst latency", "s"), ("mean_energy_j", "Mean energy", "J")):
            rows.append({"metric": name, **_triple(m(key), lambda v, u=unit: si(v, u))})
        rows.append({"metric": "Agreement with the int8 chain (class and exit)",
                     **_triple(m("reference_agreement"), pct)})
        for p in summary.paths:  # per exit: board vs int8 chain, class and int8 scores
            agr = p.int8_reference
            if agr is None:
                continue
            d = agr.score_diff_lsb
            lsb = "—" if d.max is None else f"{d.max:g} / {d.rms:.3g}"
            rows.append({"metric": f"Exit {p.exit}: class agreement with the int8 chain", "predicted": "—",
                         "reference": pct(1.0), "measured": pct(agr.class_agreement)})
            rows.append({"metric": f"Exit {p.exit}: score difference max / RMS (LSB)", "predicted": "—",
                         "reference": "0 / 0", "measured": lsb})
        return rows
    rows = [{"metric": "Accuracy", "predicted": pct(eenn["accuracy"]),
             "reference": pct(reference.accuracy) if reference else "—", "measured": "—"},
            {"metric": "Early termination", "predicted": pct(eenn["early_termination"]),
             "reference": pct(reference.early_termination) if reference else "—", "measured": "—"}]
    return rows


def exits_table(solution: Any, manifest: ProjectManifest | None, summary: Summary | None) -> list[dict[str, str]]:
    stages = manifest.stages if manifest else []
    rates = (summary.metric("termination_rates").measured if summary else None) or \
        solution.metrics["eenn"].get("termination_rates") or []
    rows = []
    for ex in solution.exits:
        st = stages[ex.index] if ex.index < len(stages) else None
        rows.append({"exit": str(ex.index), "after_layer": ex.after_layer, "processor": ex.processor,
                     "threshold": f"{ex.threshold:.3f}",
                     "threshold_q": "—" if st is None or st.threshold_q is None else str(st.threshold_q),
                     "macs": macs(ex.macs), "rate": pct(rates[ex.index]) if ex.index < len(rates) else "—"})
    return rows


def stages_table(solution: Any) -> list[dict[str, str]]:
    """Where each stage runs: its segment, its exit, its processor, and whether it hands over."""
    rows = []
    for seg in solution.segments:
        ex = solution.exits[seg.index] if seg.index < len(solution.exits) else None
        prev = solution.segments[seg.index - 1].processor if seg.index else None
        rows.append({"index": seg.index, "processor": seg.processor, "first": seg.first_layer, "last": seg.last_layer,
                     "macs": macs(seg.macs), "exit": f"exit {ex.index} (threshold {ex.threshold:.3f})" if ex else
                     "final classifier",
                     "handoff": "—" if prev is None else ("same core" if prev == seg.processor else f"from {prev}")})
    return rows


def memory_table(manifest: ProjectManifest | None) -> list[dict[str, str]]:
    rows = []
    for st in manifest.stages if manifest else []:
        rows.append({"stage": str(st.index), "processor": st.processor, "core": st.core,
                     "weights": nbytes(st.weights_bytes), "arena": nbytes(st.arena_bytes),
                     "macs": macs(st.macs), "predicted": si(st.predicted_s, "s"), "ops": ", ".join(st.ops)})
    return rows


PARETO_COLUMNS = {  # pareto.csv column → (report heading, formatter of its text)
    "exits": ("exits after", str),
    "processors": ("processors", str),
    "thresholds": ("thresholds", str),
    "mean_macs": ("mean MACs", lambda v: macs(float(v))),
    "efficiency_gain": ("saving", lambda v: pct(float(v))),
    "accuracy": ("accuracy", lambda v: pct(float(v))),
    "accuracy_drop": ("accuracy drop", lambda v: f"{100 * float(v):+.2f} pts"),
    "cost": ("cost", lambda v: f"{float(v):.4f}"),
    "worst_latency_s": ("worst latency", lambda v: si(float(v), "s")),
    "mean_latency_s": ("mean latency", lambda v: si(float(v), "s")),
    "mean_energy_j": ("mean energy", lambda v: si(float(v), "J")),
    "chosen": ("chosen", lambda v: "yes" if v in ("1", "True", "true") else "no"),
}


def _pareto_cell(column: str, text: str) -> str:
    fmt = PARETO_COLUMNS.get(column, (column, str))[1]
    if text in ("", "nan"):
        return "n/a"
    try:
        return fmt(text)
    except ValueError:
        return text


def pareto_rows(bundle: Path, limit: int = 12) -> tuple[list[str], list[list[str]]]:
    """The bundle's Pareto front (calibration split), formatted; the cheapest `limit` points."""
    path = bundle / "pareto.csv"
    if not path.is_file():
        return [], []
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return [], []
    header = rows[0]
    body = [[_pareto_cell(h, c) for h, c in zip(header, r)] for r in rows[1:limit + 1]]
    return [PARETO_COLUMNS.get(h, (h, str))[0] for h in header], body


# ------------------------------------------------------------------------------------ context
def _plot(path: Path, caption: str) -> dict[str, str]:
    return {"path": str(path), "caption": caption, "data": base64.b64encode(path.read_bytes()).decode()}


def build_context(src: ReportSources) -> dict[str, Any]:
    bundle = load_bundle(src.bundle)
    sol = bundle.solution
    manifest = load_manifest(src.project) if src.project and (src.project / MANIFEST_PATH).is_file() else None
    reference = read_reference(src.project) if src.project else None
    summary = read_summary(src.session) if src.session and summary_path(src.session).is_file() else None
    if manifest:
        check_same_bundle(src.project, manifest.bundle_hash, src.bundle, bundle.hash)
    if summary:
        check_same_session_bundle(summary, src.session, bundle.hash)

    plots = [_plot(p, p.stem.replace("_", " ")) for p in sorted(src.bundle.glob("*.png"))]
    if src.session:
        for name, caption in (("latency.png", "latency per exit path"), ("energy.png", "energy per exit path")):
            if (src.session / name).is_file():
                plots.append(_plot(src.session / name, caption))
    header, pareto = pareto_rows(src.bundle)
    hw = sol.hardware
    return {
        "version": __version__,
        "bundle": str(src.bundle), "bundle_hash": bundle.hash,
        "project": str(src.project) if src.project else None,
        "session": str(src.session) if src.session else None,
        "model": sol.base_model.source, "model_sha256": sol.base_model.sha256,
        "input_shape": "×".join(map(str, sol.base_model.input_shape)), "num_classes": sol.base_model.num_classes,
        "hardware": hw.get("name", "?"), "processors": [p["name"] for p in hw.get("processors", [])],
        "kit": manifest.kit if manifest else None,
        "search": sol.search, "split": sol.metrics.get("split", "test"), "n": sol.metrics.get("n"),
        "scoring": sol.metrics.get("scoring", "float"),  # what the search's figures were computed on
        "paper": paper_table(sol.metrics, reference, summary,
                             device_name=None if hw.get("shared_memory", True) else
                             (hw.get("processors") or [{}])[0].get("name")),
        "validation": validation_table(summary, reference, sol.metrics["eenn"]),
        "timing": summary.timing if summary else None, "timing_measured": summary.timing_measured if summary else None,
        "energy_source": summary.energy_source if summary else None,
        "exits": exits_table(sol, manifest, summary),
        "segments": stages_table(sol),
        "base_processor": sol.metrics["base"].get("processor"),
        "measure": {"energy": "mean energy", "latency": "mean latency", "macs": "mean MACs"}.get(
            sol.search.get("efficiency", "macs"), "mean MACs"),
        "placement": sol.search.get("placement", "boundary"),
        "rejected": rejected_line(sol.to_dict()) if not sol.exits else None,
        "memory": memory_table(manifest),
        "memory_layout": manifest.memory if manifest else None,
        "whole_eenn": asdict(reference.whole_eenn) if reference and reference.whole_eenn else None,
        "pareto_header": header, "pareto": pareto,
        "plots": plots,
        "no_exit": not sol.exits,
    }


def write_report(src: ReportSources, out_html: Path, out_md: Path | None = None) -> dict[str, Any]:
    """Render the report; returns the context it was rendered from."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("eenn.templates", "report"), undefined=StrictUndefined,
                      autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    ctx = build_context(src)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(env.get_template("report.html.j2").render(**ctx))
    if out_md is not None:
        md_ctx = dict(ctx, plots=[{**p, "rel": _relative(Path(p["path"]), out_md.parent)} for p in ctx["plots"]])
        out_md.write_text(env.get_template("report.md.j2").render(**md_ctx))
    return ctx


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())
