"""Writing a search result as a solution bundle (docs/interfaces.md §2).

Kept apart from the search so that the bundle's layout lives in one place: the Keras parts
(base, segments, exits), the calibration and test data, `pareto.csv` and the plots, all
written through `bundle.write_bundle`, which is atomic.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from eenn.augment.bundle import write_bundle
from eenn.augment.int8_scoring import MAX_CALIBRATION, calibration_pick  # noqa: F401  (MAX_CALIBRATION: re-exported)
from eenn.augment.search import SearchResult
from eenn.augment.segments import submodel
from eenn.augment.selection import write_pareto_csv


def write_result(result: SearchResult, out_dir: str | Path, force: bool = False) -> str:
    """Write the bundle; return its hash (SHA-256 of solution.json)."""
    solution = result.solution
    bg, arch = result.block_graph, result.chosen.arch
    model = result.model
    logits = solution.base_model.output == "logits"

    def populate(tmp: Path) -> None:
        model.save(tmp / "base.keras")
        segs = solution.segments
        lg = bg.layer_graph
        for i, seg in enumerate(segs):
            name = seg.file
            if name in result.finetuned_models:
                result.finetuned_models[name].save(tmp / name)
                continue
            start = segs[i - 1].last_layer if i > 0 else None
            is_last = i == len(segs) - 1
            end = lg.output_name if is_last else seg.last_layer
            m = submodel(model, lg, start, end, name=f"segment_{i}", add_softmax=is_last and logits)
            m.save(tmp / name)
        for i, c in enumerate(arch.cuts):
            name = f"exit_{i}.keras"
            if name in result.finetuned_models:
                result.finetuned_models[name].save(tmp / name)
            else:
                path = result.exits[c].path
                assert path is not None
                shutil.copyfile(path, tmp / name)
        ds = result.dataset
        pick = calibration_pick(len(ds.x_cal), solution.search["seed"])  # the set the int8 scores were calibrated on
        np.savez(tmp / "calibration.npz", x=ds.x_cal[pick].astype(np.float32))
        np.savez(tmp / "test.npz", x=ds.x_test.astype(np.float32), y=ds.y_test.astype(np.int64))
        write_pareto_csv(tmp / "pareto.csv", result.pareto_rows)
        _plots(result, tmp)

    return write_bundle(out_dir, solution, populate, overwrite=force)


def _plots(result: SearchResult, tmp: Path) -> None:
    from eenn.augment import plots
    from eenn.augment.search import evaluated_points

    bg, arch = result.block_graph, result.chosen.arch
    efficiency = result.solution.search.get("efficiency", "macs")
    key = plots.MEASURES[efficiency][0]
    points = [evaluated_points(e) for e in result.evaluated]
    base_acc_cal = float(np.mean(result.probs["cal"]["base"].argmax(1) == result.dataset.y_cal))
    metrics = result.solution.metrics
    cal = metrics["calibration"]["eenn"]
    plots.pareto_plot(tmp / "pareto.png", np.concatenate([p[key] for p in points]),
                      np.concatenate([p["accuracy"] for p in points]), result.pareto_rows,
                      (cal[key], cal["accuracy"]), (metrics["base"][key], base_acc_cal),
                      f"{len(result.evaluated)} architectures evaluated", measure=efficiency)
    labels = [f"exit {i}: {bg.candidates[c].after_layer}" for i, c in enumerate(arch.cuts)] + ["final classifier"]
    plots.termination_plot(tmp / "termination.png", labels, result.eenn_test.termination_rates,
                           f"early termination {result.eenn_test.early_termination * 100:.1f} %")
    cum = np.cumsum(result.chosen.stage_macs)
    plots.macs_plot(tmp / "macs_per_exit.png", labels, list(cum), float(bg.total_macs), "MACs per exit path")
