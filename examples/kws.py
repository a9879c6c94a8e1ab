"""KWS example: `eenn search` on ARM's DS-CNN-L keyword spotter with 1,000 Speech Commands clips.

    python examples/kws.py [--data-dir ../shared/data] [--work runs/kws] [--latency 2.5] [--w 0.9]
    python examples/kws.py --max-drop 2          # maximise efficiency with at most 2 points lost

Data (read from `<data-dir>/kws/`, never copied): `ds_cnn_l.h5` (12 classes, 28.3 M MACs) and
`speech_commands_mfcc_1000.npz` (`mfcc`, labels `y_arm` in labels.txt order). The 1,000 clips
are split once with seed 0, stratified by class: 500 to train the exits, 200 to calibrate
(thresholds, temperatures, the choice of architecture), 300 to test. The base model was
trained by ARM on other clips; these 1,000 are unseen by it.

Exit budget: 10 % of the backbone's MACs (eenn's default is 5 %). The first location, after
`conv_1`, holds a 25×10×276 map; at 5 % the rule has to halve the exit's bottleneck to 32
channels, at 10 % it keeps 64 (1.45 M MACs, still 5 % of the model). With 10 % the exit after
the fourth DS block no longer fits the 2.5 s bound on the CM0+, so 1 of the 6 architectures is
pruned before training, as in the paper. `--exit-budget 0.05` runs the default.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SEED = 0
SPLIT = (500, 200, 300)  # exit training, calibration, test
EXIT_BUDGET = 0.10  # each exit under 10 % of the backbone's MACs (eenn's default: 5 %; see the docstring)


def default_data_dir() -> Path:
    return Path(os.environ.get("EENN_DATA_DIR", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))


def make_dataset(kws_dir: Path, out: Path) -> Path:
    """The fixed-seed split as an eenn DATA.npz (x_train, y_train, x_val, y_val, x_test, y_test)."""
    from eenn.augment.data import stratified_split

    with np.load(kws_dir / "speech_commands_mfcc_1000.npz") as npz:
        x, y = npz["mfcc"].astype(np.float32), npz["y_arm"].astype(np.int64)
    n_train, n_cal, n_test = SPLIT
    assert n_train + n_cal + n_test == len(y)
    rest, test = stratified_split(y, n_test / len(y), SEED)
    train, cal = stratified_split(y[rest], n_cal / len(rest), SEED + 1)
    train, cal = rest[train], rest[cal]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, x_train=x[train], y_train=y[train], x_val=x[cal], y_val=y[cal], x_test=x[test], y_test=y[test])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=default_data_dir())
    ap.add_argument("--work", type=Path, default=Path("runs/kws"))
    ap.add_argument("--hw", default="psoc6")
    ap.add_argument("--latency", type=float, default=2.5)
    ap.add_argument("--w", type=float, default=0.9)
    ap.add_argument("--max-drop", type=float, default=None, help="points; instead of --w")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--augment", type=int, default=4)
    ap.add_argument("--no-feature-cache", action="store_true")
    ap.add_argument("--cache", type=Path, default=None, help="exit cache directory [<work>/cache]")
    ap.add_argument("--exit-budget", type=float, default=EXIT_BUDGET,
                    help="each exit's MACs stay under this share of the backbone's")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from eenn.augment.exits import ExitConfig
    from eenn.augment.features import AugmentConfig
    from eenn.augment.progress import Progress
    from eenn.augment.report import format_summary
    from eenn.augment.search import SearchConfig, run_search
    from eenn.augment.solution import write_result
    from eenn.augment.training import TrainConfig

    kws = args.data_dir / "kws"
    model = kws / "ds_cnn_l.h5"
    if not model.is_file():
        raise SystemExit(f"{model} not found (set --data-dir or $EENN_DATA_DIR)")
    data = make_dataset(kws, args.work / "kws_split.npz")
    print(f"splits (seed {SEED}, stratified): exit training {SPLIT[0]}, calibration {SPLIT[1]}, test {SPLIT[2]}")
    config = SearchConfig(hardware=args.hw, latency_bound_s=args.latency, w=args.w,
                          exits=ExitConfig(budget_share=args.exit_budget),
                          max_accuracy_drop=None if args.max_drop is None else args.max_drop / 100,
                          cache_dir=args.cache or args.work / "cache", train=TrainConfig(epochs=args.epochs),
                          augment=AugmentConfig(copies=args.augment), feature_cache=not args.no_feature_cache,
                          seed=SEED)
    result = run_search(model, data, config, progress=Progress())
    print(format_summary(result.solution))
    out = args.out or args.work / ("bundle" if args.max_drop is None else f"bundle_drop{args.max_drop:g}")
    h = write_result(result, out, force=True)
    print(f"bundle: {out} ({h[:12]})")
    (args.work / "last_summary.json").write_text(json.dumps(result.solution["metrics"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
