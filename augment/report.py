"""The paper-style comparison table (base model vs EENN, with deltas) and the search summary.

One formatter for the CLI and the examples, reading only what `solution.json` records (its
dictionary form), so what a user sees is exactly what the bundle says.
"""
from __future__ import annotations

from typing import Any

from eenn.augment.bundle import Solution


def _pct(x: float) -> str:
    return f"{x * 100:.2f} %"


def _macs(x: float) -> str:
    return f"{x / 1e6:.3f} M" if x >= 1e5 else f"{x:,.0f}"


def _s(x: float) -> str:
    return f"{x:.4f} s" if x >= 0.1 else f"{x * 1e3:.3f} ms"


def _j(x: float) -> str:
    return f"{x * 1e3:.3f} mJ"


MEASURE = {"energy": "energy", "latency": "latency", "macs": "MACs"}


def base_label(solution: dict[str, Any]) -> str:
    """'base on cm4': the comparison point, named (bundles before the honest base: no processor)."""
    proc = solution["metrics"]["base"].get("processor")
    return f"base on {proc}" if proc else "base"


def _distributed(solution: dict[str, Any]) -> bool:
    return not solution.get("hardware", {}).get("shared_memory", True)


def comparison_rows(solution: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    base, eenn = solution["metrics"]["base"], solution["metrics"]["eenn"]
    rows = []
    keys = [("accuracy", "accuracy", _pct, False), ("precision", "precision (macro)", _pct, False),
            ("recall", "recall (macro)", _pct, False), ("mean_macs", "mean MACs", _macs, True),
            ("mean_latency_s", "mean latency", _s, True), ("worst_latency_s", "worst-case latency", _s, True),
            ("mean_energy_j", "mean energy" + (" (total)" if _distributed(solution) else ""), _j, True)]
    if _distributed(solution) and base.get("mean_device_energy_j") is not None:
        keys.append(("mean_device_energy_j", f"mean energy on {solution['hardware']['processors'][0]['name']}",
                     _j, True))
    for key, label, fmt, rel in keys:
        b, e = base[key], eenn[key]
        if rel:
            delta = f"{(e - b) / b * 100:+.2f} %" if b else "n/a"
        else:
            delta = f"{(e - b) * 100:+.2f} pts"
        rows.append((label, fmt(b), fmt(e), delta))
    rows.append(("early termination", "-", _pct(eenn["early_termination"]), ""))
    return rows


def format_comparison(solution: dict[str, Any]) -> str:
    rows = [("", base_label(solution), "eenn", "delta")] + comparison_rows(solution)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def stage_lines(solution: dict[str, Any]) -> list[str]:
    """Where each stage runs: segment i, its exit (threshold), the processor; '(same core)' where
    no hand-off happens."""
    out = []
    segs, exits = solution["segments"], solution["exits"]
    for i, seg in enumerate(segs):
        if i < len(exits):
            e = exits[i]
            what = f"… {seg['last_layer']}, exit (threshold {e['threshold']:g}, {e['macs']:,} MACs)"
        else:
            what = "the rest and the final classifier"
        stay = i > 0 and segs[i - 1]["processor"] == seg["processor"]
        out.append(f"stage {i}  on {seg['processor']}{' (same core, no hand-off)' if stay else ''}: {what}, "
                   f"{seg['macs']:,} MACs")
    return out


def rejected_line(solution: dict[str, Any]) -> str:
    """One line: the base model is the answer, and the best early-exit network it beat."""
    s = solution["search"]
    proc = solution["metrics"]["base"].get("processor") or solution["segments"][0]["processor"]
    line = f"solution the base model alone on {proc} (no exit): no early-exit network beats it"
    r = s.get("rejected")
    if r:
        measure = MEASURE.get(s.get("efficiency", "macs"), s.get("efficiency", "macs"))
        line += (f"; the best candidate ({r['placement']}) costs {-r['efficiency_gain'] * 100:+.1f} % {measure} "
                 f"at {-r['accuracy_drop'] * 100:+.2f} pts accuracy on the calibration split")
    return line


def pareto_lines(rows: list[dict[str, Any]], measure: str, limit: int = 8) -> list[str]:
    """The cheapest points of the Pareto front (calibration split), in the search's measure."""
    if not rows:
        return []
    out = [f"Pareto front (calibration, {MEASURE.get(measure, measure)} vs accuracy; {len(rows)} points, "
           f"the {min(limit, len(rows))} cheapest):"]
    for r in rows[:limit]:
        stages = (r["exits"] + " → final") if r["exits"] != "(none)" else "base model"
        out.append(f"  {MEASURE.get(measure, measure)} {-r['efficiency_gain'] * 100:+6.1f} %, accuracy "
                   f"{-r['accuracy_drop'] * 100:+6.2f} pts: {stages} on {r['processors'].replace(' ', ', ')}"
                   f"{'  (chosen)' if r.get('chosen') else ''}")
    return out


def format_summary(typed: Solution, pareto: list[dict[str, Any]] | None = None) -> str:
    solution = typed.to_dict()
    s = solution["search"]
    stats = s["stats"]
    hw = solution["hardware"]["name"]
    m = solution["metrics"]
    space = (f"placement {s['placement']}, up to {s['max_exits']} exit(s)" if "placement" in s else "")
    out = [f"search   {stats['architectures']} architectures{f' ({space})' if space else ''} on {hw}: "
           f"{stats['pruned']} pruned before training "
           f"({stats['pruned_latency']} latency, {stats['pruned_memory']} memory), {stats['evaluated']} evaluated; "
           f"exits: {stats['exits_trained']} trained, {stats['exits_from_cache']} from cache, "
           f"{stats['exits_aborted']} abandoned; {stats['seconds']:.1f} s"]
    if m["base"].get("processor"):
        per = m.get("base_per_processor") or []
        measure = s.get("efficiency", "macs")
        out.append(f"base     the base model alone on {m['base']['processor']}, the cheapest single processor in "
                   f"{MEASURE.get(measure, measure)}"
                   + (" (" + ", ".join(f"{r['processor']}: {_s(r['latency_s'])}, {_j(r['energy_j'])}"
                                       + ("" if r["fits"] else " over the bound") for r in per) + ")"
                      if len(per) > 1 else ""))
    if not solution["exits"]:
        out.append(rejected_line(solution))
    else:
        out.extend(stage_lines(solution))
    objective = (f" (w = {s['w']})" if s["objective"] == "weighted" else
                 f" (accuracy drop <= {s['max_accuracy_drop'] * 100:g} pts)")
    out.append(f"objective {s['objective']}{objective} in {MEASURE.get(s.get('efficiency', 'macs'), 'MACs')}"
               f", thresholds by {s['threshold_method']}, calibration on {s['calibration']}"
               + (f" (correction {s['correction']:g})" if s["correction"] != 1 else ""))
    if pareto:
        out.extend(pareto_lines(pareto, s.get("efficiency", "macs")))
    out.append(f"\ntest split ({m['n']} samples):")
    out.append(format_comparison(solution))
    rates = m["eenn"]["termination_rates"]
    out.append("termination rates: " + ", ".join(f"{r * 100:.1f} %" for r in rates))
    return "\n".join(out)
