"""What the real-data examples share: their command line, and search → summary → bundle."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def default_data_dir() -> Path:
    """`$EENN_DATA_DIR`, else `../shared/data` beside the repository."""
    return Path(os.environ.get("EENN_DATA_DIR", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))


def parser(description: str, work: str, epochs: int, augment: int, exit_budget: float) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data-dir", type=Path, default=default_data_dir())
    ap.add_argument("--work", type=Path, default=Path(work))
    ap.add_argument("--hw", default="psoc6")
    ap.add_argument("--latency", type=float, default=2.5)
    ap.add_argument("--w", type=float, default=None, help="the paper's weighted objective instead of --max-drop")
    ap.add_argument("--max-drop", type=float, default=None, help="points [default: 1 unless --w]")
    from eenn.augment.architectures import PLACEMENTS
    from eenn.augment.search_config import EFFICIENCIES

    ap.add_argument("--efficiency", choices=EFFICIENCIES, default="energy",
                    help="what the saving is measured in")
    ap.add_argument("--placement", choices=PLACEMENTS, default="any",
                    help="exits anywhere (any) or only where one processor hands over (boundary)")
    ap.add_argument("--max-exits", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=epochs, help="exit training epochs")
    ap.add_argument("--qat", type=float, default=0.4, help="share of them through simulated int8 rounding")
    ap.add_argument("--augment", type=int, default=augment, help="shifted copies of the training split")
    ap.add_argument("--no-feature-cache", action="store_true")
    ap.add_argument("--cache", type=Path, default=None, help="exit cache directory [<work>/cache]")
    ap.add_argument("--exit-budget", type=float, default=exit_budget,
                    help="each exit's MACs stay under this share of the backbone's")
    ap.add_argument("--out", type=Path, default=None)
    return ap


def search_and_write(model: Any, data: Path, args: argparse.Namespace, seed: int) -> int:
    """The search with the example's options; prints the paper-style table and writes the bundle."""
    from eenn.augment.exits import ExitConfig
    from eenn.augment.features import AugmentConfig
    from eenn.augment.progress import Progress
    from eenn.augment.report import format_summary
    from eenn.augment.search import run_search
    from eenn.augment.search_config import SearchConfig
    from eenn.augment.solution import write_result
    from eenn.augment.training import TrainConfig

    config = SearchConfig(hardware=args.hw, latency_bound_s=args.latency, w=args.w, efficiency=args.efficiency,
                          placement=args.placement, max_exits=args.max_exits,
                          exits=ExitConfig(budget_share=args.exit_budget),
                          max_accuracy_drop=None if args.max_drop is None else args.max_drop / 100,
                          cache_dir=args.cache or args.work / "cache",
                          train=TrainConfig(epochs=args.epochs, quant_aware=args.qat),
                          augment=AugmentConfig(copies=args.augment), feature_cache=not args.no_feature_cache,
                          seed=seed)
    result = run_search(model, data, config, progress=Progress())
    print(format_summary(result.solution, result.pareto_rows))
    out = args.out or args.work / ("bundle" if args.max_drop is None else f"bundle_drop{args.max_drop:g}")
    h = write_result(result, out, force=True)
    print(f"bundle: {out} ({h[:12]})")
    (args.work / "last_summary.json").write_text(json.dumps(result.solution.metrics, indent=2))
    return 0
