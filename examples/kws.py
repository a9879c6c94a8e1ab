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

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import parser, search_and_write  # noqa: E402  (examples/common.py)

SEED = 0
SPLIT = (500, 200, 300)  # exit training, calibration, test
EXIT_BUDGET = 0.10  # each exit under 10 % of the backbone's MACs (eenn's default: 5 %; see the docstring)


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
    ap = parser(__doc__.splitlines()[0], "runs/kws", epochs=25, augment=4, exit_budget=EXIT_BUDGET)
    args = ap.parse_args(argv)
    kws = args.data_dir / "kws"
    model = kws / "ds_cnn_l.h5"
    if not model.is_file():
        raise SystemExit(f"{model} not found (set --data-dir or $EENN_DATA_DIR)")
    data = make_dataset(kws, args.work / "kws_split.npz")
    print(f"splits (seed {SEED}, stratified): exit training {SPLIT[0]}, calibration {SPLIT[1]}, test {SPLIT[2]}")
    return search_and_write(model, data, args, SEED)


if __name__ == "__main__":
    sys.exit(main())
