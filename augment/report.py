"""The paper-style comparison table (base model vs EENN, with deltas) and the search summary.

One formatter for the CLI and the examples, reading only `solution.json`'s dictionary, so
what a user sees is exactly what the bundle records.
"""
from __future__ import annotations

from typing import Any


def _pct(x: float) -> str:
    return f"{x * 100:.2f} %"


def _macs(x: float) -> str:
    return f"{x / 1e6:.3f} M" if x >= 1e5 else f"{x:,.0f}"


def _s(x: float) -> str:
    return f"{x:.4f} s" if x >= 0.1 else f"{x * 1e3:.3f} ms"


def _j(x: float) -> str:
    return f"{x * 1e3:.3f} mJ"


def comparison_rows(solution: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    base, eenn = solution["metrics"]["base"], solution["metrics"]["eenn"]
    rows = []
    for key, label, fmt, rel in (("accuracy", "accuracy", _pct, False), ("precision", "precision (macro)", _pct, False),
                                 ("recall", "recall (macro)", _pct, False), ("mean_macs", "mean MACs", _macs, True),
                                 ("mean_latency_s", "mean latency", _s, True),
                                 ("worst_latency_s", "worst-case latency", _s, True),
                                 ("mean_energy_j", "mean energy", _j, True)):
        b, e = base[key], eenn[key]
        if rel:
            delta = f"{(e - b) / b * 100:+.2f} %" if b else "n/a"
        else:
            delta = f"{(e - b) * 100:+.2f} pts"
        rows.append((label, fmt(b), fmt(e), delta))
    rows.append(("early termination", "-", _pct(eenn["early_termination"]), ""))
    return rows


def format_comparison(solution: dict[str, Any]) -> str:
    rows = [("", "base", "eenn", "delta")] + comparison_rows(solution)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_summary(solution: dict[str, Any]) -> str:
    s = solution["search"]
    stats = s["stats"]
    hw = solution["hardware"]["name"]
    m = solution["metrics"]
    out = [f"search   {stats['architectures']} architectures on {hw}: {stats['pruned']} pruned before training "
           f"({stats['pruned_latency']} latency, {stats['pruned_memory']} memory), {stats['evaluated']} evaluated; "
           f"exits: {stats['exits_trained']} trained, {stats['exits_from_cache']} from cache, "
           f"{stats['exits_aborted']} abandoned; {stats['seconds']:.1f} s"]
    if not solution["exits"]:
        out.append("solution the base model alone (no exit): no architecture with an early exit scored better "
                   f"on the calibration split; it runs on {solution['segments'][0]['processor']}")
    else:
        for e in solution["exits"]:
            out.append(f"exit {e['index']}   after {e['after_layer']} on {e['processor']}, threshold {e['threshold']:g}, "
                       f"{e['macs']:,} MACs")
        out.append(f"final    {solution['segments'][-1]['processor']}")
    out.append(f"objective {s['objective']}" + (f" (w = {s['w']})" if s["objective"] == "weighted" else
                                                 f" (accuracy drop <= {s['max_accuracy_drop'] * 100:g} pts)")
               + f", thresholds by {s['threshold_method']}, calibration on {s['calibration']}"
               + (f" (correction {s['correction']:g})" if s["correction"] != 1 else ""))
    out.append(f"\ntest split ({m['n']} samples):")
    out.append(format_comparison(solution))
    rates = m["eenn"]["termination_rates"]
    out.append("termination rates: " + ", ".join(f"{r * 100:.1f} %" for r in rates))
    return "\n".join(out)
