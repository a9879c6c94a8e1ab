"""Benchmark: the search scored on float outputs vs on int8 outputs, each choice checked on the
int8 reference chain (what the board computes).

    python benchmarks/int8_scoring.py [--data-dir ../shared/data] [--work runs/int8_scoring]
                                      [--cases digits,kws,ecg]

Per case (the settings of `benchmarks/readme_figures.py`, i.e. of `eenn deploy` and the
examples), the search runs twice on one exit cache (the exits are trained once):
`--scoring float` (thresholds and exits chosen on the float softmax, as before) and
`--scoring int8` (chosen on the int8 outputs of the subgraphs generate builds). Each bundle is
then generated (`eenn generate`), whose Python int8 reference chain (`eenn/reference.json`)
equals the virtual board sample by sample. Printed per case and scoring: the accuracy the
search predicts, the board's, their gap, how many test samples the search's per-sample
prediction (class and exit) disagrees with the board on, the exits and thresholds, the energy
the cost model predicts, and the search time.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import default_data_dir  # noqa: E402  (examples/common.py)

KIT = "CY8CKIT-062S2-43012"


def prepare(name: str, data_dir: Path, work: Path) -> tuple[Path, Path, dict]:
    """(model, data, search options) of a readme_figures case."""
    from readme_figures import CASES

    case = CASES[name]
    model, data = case.prepare(data_dir, work)
    opts = dict(case.options)
    if opts.pop("example", None) is not None:
        from eenn.examples import make_example

        ex = work / "digits-example"
        if not (ex / "model.keras").is_file():
            make_example("digits", ex, seed=0)
        model, data = ex / "model.keras", ex / "data.npz"
    return model, data, opts


def run_one(model: Path, data: Path, opts: dict, scoring: str, work: Path, name: str) -> dict:
    import numpy as np

    from eenn.augment.search import _predictions, run_search
    from eenn.augment.solution import write_result
    from eenn.codegen.generate import generate
    from eenn.augment.commands import search_config

    config = search_config(cache_dir=work / "cache", scoring=scoring, **opts).checked()
    t = time.monotonic()
    result = run_search(model, data, config)
    wall = time.monotonic() - t
    out = work / f"{name}-{scoring}"
    write_result(result, out / "bundle", force=True)
    gen = generate(out / "bundle", KIT, out / "project", force=True)
    ref = gen.reference
    thresholds = tuple(e.threshold for e in result.solution.exits)
    pred, stage = _predictions(result.chosen.arch, result.block_graph, result.probs["test"],
                               result.probs["test"]["final"], thresholds, config.confidence)
    disagree = int(np.sum((pred != np.array([s.cls for s in ref.samples]))
                          | (stage != np.array([s.exit for s in ref.samples]))))
    m = result.solution.metrics
    # the cost model's energy with the board's termination rates (the reference chain's = the board's)
    _, board_energy = result.chosen.mapping.mean(np.asarray(ref.termination_rates, dtype=np.float64))
    return {"case": name, "scoring": scoring, "predicted": m["eenn"]["accuracy"], "board": ref.accuracy,
            "float": m["eenn"].get("float_accuracy", m["eenn"]["accuracy"]), "base_board": ref.base_accuracy,
            "disagree": disagree, "n": ref.n,
            "exits": ", ".join(f"{x.after_layer} @ {x.threshold:.3g}" for x in result.solution.exits) or "none",
            "energy_j": m["eenn"]["mean_energy_j"], "base_energy_j": m["base"]["mean_energy_j"],
            "early": m["eenn"]["early_termination"], "board_early": ref.early_termination,
            "board_energy_j": board_energy, "search_s": wall,
            "int8_s": result.stats.get("int8_s", 0.0), "conversions": result.stats.get("int8_conversions", 0)}


def table(rows: list[dict]) -> str:
    from eenn.report import si

    out = ["| case | scored on | predicted acc. | board (int8 chain) | gap | samples disagreeing | float acc. "
           "of the choice | exits @ threshold | early term. predicted / board | mean energy predicted / board (base) "
           "| search (int8 part) |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r['case']} | {r['scoring']} | {100 * r['predicted']:.2f} % | {100 * r['board']:.2f} % "
                   f"| {100 * (r['predicted'] - r['board']):+.2f} pt | {r['disagree']} / {r['n']} "
                   f"| {100 * r['float']:.2f} % | {r['exits']} | {100 * r['early']:.1f} % / {100 * r['board_early']:.1f} % "
                   f"| {si(r['energy_j'], 'J')} / {si(r['board_energy_j'], 'J')} ({si(r['base_energy_j'], 'J')}) "
                   f"| {r['search_s']:.0f} s ({r['int8_s']:.1f} s, {r['conversions']} conv.) |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=default_data_dir())
    ap.add_argument("--work", type=Path, default=Path("runs/int8_scoring"))
    ap.add_argument("--cases", default="digits,kws,ecg")
    args = ap.parse_args(argv)
    import keras  # noqa: F401  (the import is paid once, before any clock)

    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in [c for c in args.cases.split(",") if c]:
        model, data, opts = prepare(name, args.data_dir, args.work)
        for scoring in ("float", "int8"):
            print(f"== {name}, scored on {scoring}", file=sys.stderr, flush=True)
            rows.append(run_one(model, data, opts, scoring, args.work, name))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    (args.work / "results.md").write_text(text)
    (args.work / "results.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
