"""Regenerate every figure the README quotes: `eenn deploy` on the digits, KWS and ECG cases,
base model vs EENN on the test split, the virtual board vs the int8 reference, and wall times.

    python benchmarks/readme_figures.py [--data-dir ../shared/data] [--work runs/figures]
                                        [--cases digits,kws,ecg,digits-paper,kws-paper,ecg-paper] [--out runs/figures/results.md]

Each case is a full deploy (search → generate → virtual-board HIL run → report) into
`<work>/<case>/`, with the same settings as the examples (`examples/kws.py`, `examples/ecg.py`).
Trained exits are cached in `<work>/cache` and a deploy keeps the stages whose inputs did not
change, so a second run redoes only what changed; the times printed are those recorded when each
stage ran (delete `<work>` to measure everything afresh). The
feature-cache speed-up is `benchmarks/search_cache.py`. Prints a Markdown section headed by the
date, machine and eenn version; paste it into the README's "Results".
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from common import default_data_dir  # noqa: E402  (examples/common.py)

from kws import EXIT_BUDGET as KWS_EXIT_BUDGET  # noqa: E402  (the example's budget; its docstring says why)


DEFAULT_QAT = 0.4  # eenn's default (TrainConfig.quant_aware, `--qat`)


@dataclass
class Case:
    name: str
    title: str
    prepare: Callable[[Path, Path], tuple[Path | None, Path | None]]  # (data_dir, work) → (model, data)
    options: dict[str, Any]  # search options by parameter name (augment/commands.search_config), or example


def _digits(_data_dir: Path, _work: Path) -> tuple[None, None]:
    return None, None  # deploy --example digits trains it


def _kws(data_dir: Path, work: Path) -> tuple[Path, Path]:
    import kws

    return data_dir / "kws" / "ds_cnn_l.h5", kws.make_dataset(data_dir / "kws", work / "kws_split.npz")


def _ecg(data_dir: Path, work: Path) -> tuple[Path, Path]:
    import ecg

    data = ecg.make_dataset(data_dir / "ecg" / "mitdb", work / "ecg_beats.npz")
    return ecg.train_base(data, work / "ecg_fcn.keras"), work / "ecg_beats.npz"


PAPER = {"placement": "boundary", "efficiency": "macs", "w": 0.9}  # the paper's space and objective

CASES = {c.name: c for c in (
    Case("digits", "digits (built-in example), psoc6, eenn's defaults", _digits, {"example": "digits"}),
    Case("kws", "KWS: DS-CNN-L, psoc6, latency ≤ 2.5 s, eenn's defaults", _kws,
         {"latency": 2.5, "exit_budget": KWS_EXIT_BUDGET}),
    Case("ecg", "ECG: 1-D FCN on MIT-BIH, psoc6, latency ≤ 2.5 s, eenn's defaults", _ecg,
         {"latency": 2.5, "epochs": 10, "copies": 1}),
    Case("digits-paper", "digits, psoc6, the paper's space and objective (boundary, MACs, w = 0.9)", _digits,
         {"example": "digits", **PAPER}),
    Case("kws-paper", "KWS: DS-CNN-L, psoc6, latency ≤ 2.5 s, the paper's (boundary, MACs, w = 0.9)", _kws,
         {"latency": 2.5, "exit_budget": KWS_EXIT_BUDGET, **PAPER}),
    Case("ecg-paper", "ECG: 1-D FCN on MIT-BIH, psoc6, latency ≤ 2.5 s, the paper's (boundary, MACs, w = 0.9)", _ecg,
         {"latency": 2.5, "epochs": 10, "copies": 1, **PAPER}),
)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def run_case(case: Case, data_dir: Path, work: Path, qat: float) -> dict[str, Any]:
    from eenn.augment.commands import search_config
    from eenn.deploy import DeployOptions, deploy

    model, data = case.prepare(data_dir, work)
    out = work / (case.name if qat == DEFAULT_QAT else f"{case.name}-qat{qat:g}")
    options = dict(case.options)
    example = options.pop("example", None)
    res = deploy(DeployOptions(out=out, model=model, data=data, example=example,
                               search=search_config(cache_dir=work / "cache", qat=qat, **options)), say=lambda s: print("  " + s, file=sys.stderr))
    # stage times as recorded when each stage ran (a kept stage keeps its first run's time)
    wall = sum(float(res.stages[k].seconds or 0.0) for k in ("search", "generate"))
    sol = json.loads((res.bundle / "solution.json").read_text())
    return {"case": case, "wall_s": wall, "metrics": sol["metrics"], "exits": sol["exits"], "segments": sol["segments"],
            "hil": res.summary.document["metrics"], "n": res.summary.n, "report": str(res.report_html)}


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def markdown(rows: list[dict[str, Any]], qat: float = DEFAULT_QAT) -> str:
    from eenn.report import macs, si

    out = [f"Measured on {time.strftime('%Y-%m-%d')} on {machine()}, eenn "
           f"{__import__('eenn').__version__}, by `python benchmarks/readme_figures.py"
           f"{'' if qat == DEFAULT_QAT else f' --qat {qat:g}'}`.", ""]
    out += ["| case | base on | accuracy base → eenn (int8) | Δ | mean MACs base → eenn | Δ MACs "
            "| mean latency base → eenn | mean energy base → eenn | Δ energy | early termination "
            "| exits (after layer @ threshold, on) | int8 on the virtual board | board = int8 reference "
            "| search + generate time |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        b, e, h = r["metrics"]["base"], r["metrics"]["eenn"], r["hil"]
        same = (h["accuracy"]["measured"] == h["accuracy"]["reference"]
                and h["termination_rates"]["measured"] == h["termination_rates"]["reference"])
        agree = (h.get("reference_agreement") or {}).get("measured")
        exits = ", ".join(f"`{x['after_layer']}` @ {x['threshold']:.3g} on {x['processor']}" for x in r["exits"]) \
            or f"none (the base model on {r['segments'][0]['processor']})"
        out.append(
            f"| {r['case'].title} | {b.get('processor', 'the last processor')} | {_pct(b['accuracy'])} → {_pct(e['accuracy'])} "
            f"| {100 * (e['accuracy'] - b['accuracy']):+.2f} pts "
            f"| {macs(b['mean_macs'])} → {macs(e['mean_macs'])} | {100 * (e['mean_macs'] / b['mean_macs'] - 1):+.2f} % "
            f"| {si(b['mean_latency_s'], 's')} → {si(e['mean_latency_s'], 's')} "
            f"| {si(b['mean_energy_j'], 'J')} → {si(e['mean_energy_j'], 'J')} "
            f"| {100 * (e['mean_energy_j'] / b['mean_energy_j'] - 1):+.1f} % | {_pct(e['early_termination'])} "
            f"| {exits} | {_pct(h['accuracy']['measured'])} | {'yes' if same else 'NO'} ({_pct(agree) if agree is not None else 'n/a'} of {r['n']} samples) "
            f"| {r['wall_s']:.0f} s |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=default_data_dir())
    ap.add_argument("--work", type=Path, default=Path("runs/figures"))
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    ap.add_argument("--qat", type=float, default=DEFAULT_QAT,
                    help="share of the exit-training epochs with simulated int8 rounding (0: the README's A/B)")
    args = ap.parse_args(argv)
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}: expected {', '.join(CASES)}")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        print(f"== {name}", file=sys.stderr, flush=True)
        rows.append(run_case(CASES[name], args.data_dir, args.work, args.qat))
    text = markdown(rows, args.qat)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
