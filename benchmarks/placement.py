"""Exits anywhere vs the paper's placement: base model vs EENN on the board, per case.

    python benchmarks/placement.py [--data-dir ../shared/data] [--work runs/placement]
                                   [--cases digits,kws,ecg] [--hw psoc6] [--latency 2.5] [--max-drop 1]
                                   [--epochs N] [--augment N]

For each case (the built-in digits example, DS-CNN-L KWS as `examples/kws.py`, the MIT-BIH FCN
as `examples/ecg.py`) one search per setting, on the test split:
- `any`: exits anywhere, each stage on any processor in order (the default);
- `boundary`: the paper's space, exit i where processor i hands over;
- `boundary, MACs`: the paper's space and measure (the search before issue 13 with `--max-drop`).
All three use `--max-drop` (default 1 point) on the calibration split and the base model on its
cheapest processor (named in the table) as the comparison point. Exits are trained once per case
(cached in `<work>/cache`) and reused by every setting; a second run trains nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from common import default_data_dir  # noqa: E402  (examples/common.py)

SETTINGS = (("any", "energy"), ("boundary", "energy"), ("boundary", "macs"))


def _digits(_data_dir: Path, work: Path) -> tuple[Path, Path, dict[str, Any]]:
    from eenn.examples import make_example

    model, data = make_example("digits", work / "digits", seed=0)
    return Path(model), Path(data), {"epochs": 25, "augment": 4, "exit_budget": 0.05, "seed": 0}


def _kws(data_dir: Path, work: Path) -> tuple[Path, Path, dict[str, Any]]:
    import kws

    data = kws.make_dataset(data_dir / "kws", work / "kws_split.npz")
    return data_dir / "kws" / "ds_cnn_l.h5", data, {"epochs": 25, "augment": 4, "exit_budget": kws.EXIT_BUDGET,
                                                     "seed": kws.SEED}


def _ecg(data_dir: Path, work: Path) -> tuple[Path, Path, dict[str, Any]]:
    import ecg

    data = ecg.make_dataset(data_dir / "ecg" / "mitdb", work / "ecg_beats.npz")
    model = ecg.train_base(data, work / "ecg_fcn.keras")
    return Path(model), work / "ecg_beats.npz", {"epochs": 10, "augment": 1, "exit_budget": ecg.EXIT_BUDGET,
                                                  "seed": ecg.SEED}


CASES = {"digits": ("digits (built-in example)", _digits), "kws": ("KWS: DS-CNN-L", _kws),
         "ecg": ("ECG: 1-D FCN on MIT-BIH", _ecg)}


def _rel(b: float, e: float) -> str:
    return f"{(e - b) / b * 100:+.1f} %" if b else "n/a"


def run_case(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from eenn.augment.exits import ExitConfig
    from eenn.augment.features import AugmentConfig
    from eenn.augment.search import run_search
    from eenn.augment.search_config import SearchConfig
    from eenn.augment.training import TrainConfig

    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    model, data, opts = CASES[name][1](args.data_dir, work)
    rows = []
    for placement, efficiency in SETTINGS:
        t0 = time.monotonic()
        config = SearchConfig(hardware=args.hw, latency_bound_s=args.latency, max_accuracy_drop=args.max_drop / 100,
                              efficiency=efficiency, placement=placement, max_exits=args.max_exits,
                              exits=ExitConfig(budget_share=opts["exit_budget"]), cache_dir=args.work / "cache",
                              train=TrainConfig(epochs=args.epochs or opts["epochs"]),
                              augment=AugmentConfig(copies=opts["augment"] if args.augment is None else args.augment),
                              seed=opts["seed"])
        res = run_search(model, data, config)
        sol = res.solution
        b, e = sol["metrics"]["base"], sol["metrics"]["eenn"]
        stages = ", ".join(f"{x['after_layer']} on {x['processor']}" for x in sol["exits"])
        rows.append({"case": name, "setting": placement + (", MACs" if efficiency == "macs" else ""),
                     "base_on": b["processor"],
                     "stages": (stages + f", final on {sol['segments'][-1]['processor']}") if stages else "base model",
                     "base": b, "eenn": e, "architectures": sol["search"]["stats"]["architectures"],
                     "distributed": not sol["hardware"].get("shared_memory", True),
                     "trained": sol["search"]["stats"]["exits_trained"], "seconds": time.monotonic() - t0})
        print(f"  {name} / {rows[-1]['setting']}: {rows[-1]['stages']} ({rows[-1]['architectures']} architectures, "
              f"{rows[-1]['trained']} exits trained, {rows[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]], hw: str, latency: float, max_drop: float) -> str:
    out = [f"Base model (alone, on its cheapest processor) vs EENN on {hw}, test split; latency bound {latency:g} s, "
           f"accuracy drop <= {max_drop:g} point(s) on the calibration split.", "",
           "| case | placement | EENN stages | base on | energy base → EENN | Δ energy | mean latency Δ | "
           "mean MACs Δ | accuracy base → EENN |",
           "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    device = any(r["distributed"] for r in rows)
    if device:  # a distributed profile: the first processor's own energy too (mean_device_energy_j)
        out[2] = out[2].replace("| Δ energy |", "| Δ energy | Δ device energy |")
        out[3] = out[3].replace("| ---: | ---: | ---: | ---: | ---: |", "| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        b, e = r["base"], r["eenn"]
        dev = f" {_rel(b['mean_device_energy_j'], e['mean_device_energy_j'])} |" if device else ""
        out.append(f"| {r['case']} | {r['setting']} | {r['stages']} | {r['base_on']} | "
                   f"{b['mean_energy_j'] * 1e3:.4g} → {e['mean_energy_j'] * 1e3:.4g} mJ | "
                   f"{_rel(b['mean_energy_j'], e['mean_energy_j'])} |{dev} "
                   f"{_rel(b['mean_latency_s'], e['mean_latency_s'])} | {_rel(b['mean_macs'], e['mean_macs'])} | "
                   f"{b['accuracy'] * 100:.2f} → {e['accuracy'] * 100:.2f} % |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=default_data_dir())
    ap.add_argument("--work", type=Path, default=Path("runs/placement"))
    ap.add_argument("--cases", default="digits,kws,ecg")
    ap.add_argument("--hw", default="psoc6")
    ap.add_argument("--latency", type=float, default=2.5)
    ap.add_argument("--max-drop", type=float, default=1.0, help="points")
    ap.add_argument("--max-exits", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="exit training epochs [each example's]")
    ap.add_argument("--augment", type=int, default=None, help="shifted copies [each example's]")
    args = ap.parse_args(argv)
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; expected {', '.join(CASES)}")
    rows = []
    for name in names:
        print(f"{CASES[name][0]} ...", file=sys.stderr, flush=True)
        rows.extend(run_case(name, args))
    print(table(rows, args.hw, args.latency, args.max_drop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
