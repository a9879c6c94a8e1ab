"""Benchmark: the KWS search with the feature cache vs exits trained through the frozen backbone.

    python benchmarks/search_cache.py [--data-dir ../shared/data] [--work runs/bench]

Both runs use the same data split, epochs and seed (examples/kws.py's), eenn's default exit
budget (5 %: five exits, each under 5 % of the backbone's MACs; `--exit-budget 0.1` is the KWS
example's, whose larger exits leave the backbone a smaller share of each step) and no disk cache
of trained exits, so each trains every exit from scratch. The only difference:
with the cache, the backbone runs once over the data and the exits train on the stored feature
maps, so everything before an exit's first weighted layer (its leading pooling, the int8
rounding and standardisation of its input) is computed once, and exits of one structure share
one traced training graph; without it, every training step runs the frozen backbone up to the
exit's location and those steps inside the graph. Exit training itself (each epoch one graph,
1×1 convolutions trained as Dense layers) is the same code on both sides.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from common import default_data_dir  # noqa: E402  (examples/common.py)


def main(argv: list[str] | None = None) -> int:
    import kws  # examples/kws.py: the split

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=default_data_dir())
    ap.add_argument("--work", type=Path, default=Path("runs/bench"))
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--augment", type=int, default=4)
    ap.add_argument("--only", choices=["cached", "uncached"], default=None)
    ap.add_argument("--exit-budget", type=float, default=0.05, help="share of the backbone's MACs per exit")
    ap.add_argument("--qat", type=float, default=0.4, help="share of the epochs with simulated int8 rounding")
    ap.add_argument("--scoring", choices=["int8", "float"], default="int8",
                    help="what thresholds and exits are chosen on (int8: the converted subgraphs' outputs)")
    args = ap.parse_args(argv)

    from eenn.augment.exits import ExitConfig
    from eenn.augment.features import AugmentConfig
    from eenn.augment.search import run_search
    from eenn.augment.search_config import SearchConfig
    from eenn.augment.training import TrainConfig

    # Import Keras/TensorFlow before either clock starts: the import (10-20 s on 2 cores) is paid
    # once per process, not per search, and would otherwise be billed to whichever side runs first.
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    model = args.data_dir / "kws" / "ds_cnn_l.h5"
    data = kws.make_dataset(args.data_dir / "kws", args.work / "kws_split.npz")
    rows = []
    for cached in (True, False):
        if args.only and args.only != ("cached" if cached else "uncached"):
            continue
        config = SearchConfig(hardware="psoc6", latency_bound_s=2.5, w=0.9, cache_dir=None, seed=kws.SEED,
                              train=TrainConfig(epochs=args.epochs, quant_aware=args.qat), augment=AugmentConfig(copies=args.augment),
                              feature_cache=cached, exits=ExitConfig(budget_share=args.exit_budget),
                              scoring=args.scoring)
        t = time.monotonic()
        result = run_search(model, data, config)
        wall = time.monotonic() - t
        s = result.stats
        e = result.solution.metrics["eenn"]
        b = result.solution.metrics["base"]
        rows.append((("feature cache" if cached else "through the backbone"), wall, s.get("features_s", 0.0),
                     s.get("training_s", 0.0), s["exits_trained"],
                     " + ".join(x.after_layer for x in result.solution.exits) or "(none)",
                     1 - e["mean_macs"] / b["mean_macs"], b["accuracy"] - e["accuracy"]))
        print(f"{rows[-1][0]}: {wall:.1f} s (scoring {args.scoring}: int8 scores {s.get('int8_s', 0.0):.1f} s)",
              flush=True)
    print(f"\nexit budget {args.exit_budget:g} of the backbone's MACs, {args.epochs} epochs, {args.augment} shifted copies")
    print(f"{'exit training':<22} {'wall':>8} {'features':>9} {'training':>9} {'exits':>6}  "
          f"{'chosen exit':<20} {'MACs':>8} {'acc. drop':>9}")
    for name, wall, feat, train, n, chosen, gain, drop in rows:
        print(f"{name:<22} {wall:>7.1f}s {feat:>8.1f}s {train:>8.1f}s {n:>6}  {chosen:<20} "
              f"{-gain * 100:>7.2f}% {drop * 100:>7.2f}pt")
    if len(rows) == 2:
        ratio = rows[1][1] / rows[0][1]
        met = ratio >= 5 and rows[0][1] < 180
        print(f"\nspeed-up of the feature cache: {ratio:.1f}x "
              f"(cached search {rows[0][1]:.0f} s on {os.cpu_count()} cores; "
              f"target >= 5x and under 180 s: {'met' if met else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
