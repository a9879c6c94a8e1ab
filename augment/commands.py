"""CLI commands of the augment stage: `eenn analyze` (and `eenn search`)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from eenn.errors import EennError


# Ranges checked by click while it parses, before TensorFlow is imported (a usage error, exit 2):
# the same bounds SearchConfig.checked() enforces for callers of the Python API.
POSITIVE = click.FloatRange(min=0, min_open=True)
SHARE = click.FloatRange(0, 1, min_open=True, max_open=True)


def hardware_option(f):
    return click.option("--hw", "hw", default="psoc6", show_default=True,
                        help="Hardware profile: a built-in name (psoc6, rk3588-cloud) or a TOML file.")(f)


def measured_option(f):
    return click.option("--measured", type=click.Path(dir_okay=False), default=None,
                        help="JSON of measured MAC rates / block times that replace the profile's estimates.")(f)


def efficiency_option(f):
    """`--efficiency` of `eenn search` and `eenn deploy` (SearchConfig.efficiency; search.EFFICIENCIES)."""
    return click.option("--efficiency", type=click.Choice(["macs", "latency", "energy"]), default="energy",
                        show_default=True,
                        help="What the saving is measured in: the cost model's mean energy per inference (latency "
                             "where the profile has no power figures), its mean latency, or mean MACs (the paper's).")(f)


def objective_options(f):
    """`--w` / `--max-drop` of `eenn search` and `eenn deploy` (SearchConfig.w, max_accuracy_drop)."""
    f = click.option("--max-drop", type=click.FloatRange(0, 100), default=None,
                     help="The largest saving whose accuracy drop on the calibration split is at most this many "
                          "points [default: 1, unless --w is given].")(f)
    return click.option("--w", "w", type=click.FloatRange(0, 1), default=None,
                        help="Instead: the paper's weighted objective w·gain − (1−w)·drop (e.g. 0.9).")(f)


def placement_options(f):
    """`--placement` / `--max-exits` of `eenn search` and `eenn deploy` (SearchConfig.placement, max_exits)."""
    f = click.option("--max-exits", type=click.IntRange(min=1), default=2, show_default=True,
                     help="At most this many early exits (not bounded by the number of processors).")(f)
    return click.option("--placement", type=click.Choice(["any", "boundary"]), default="any", show_default=True,
                        help="any: exits anywhere, each stage on any processor in the profile's order (several on "
                             "one); boundary: the paper's space, exit i where processor i hands over.")(f)


def scoring_option(f):
    """`--scoring` of `eenn search` and `eenn deploy` (SearchConfig.scoring)."""
    return click.option("--scoring", type=click.Choice(["int8", "float"]), default="int8", show_default=True,
                        help="Choose thresholds and exits on the int8 outputs the board computes, or on the "
                             "float outputs (the comparison; the bundle reports both).")(f)


def qat_option(f):
    """`--qat` of `eenn search` and `eenn deploy` (TrainConfig.quant_aware)."""
    return click.option("--qat", "qat", type=click.FloatRange(0, 1), default=0.4, show_default=True,
                        help="Share of the last exit-training epochs run through simulated int8 rounding, so that "
                             "the exits keep their accuracy once converted (0: float training only).")(f)


def load_cost(hw: str, measured: str | None):
    from eenn.augment.cost import CostModel, Measured
    from eenn.augment.hardware import load_profile

    profile = load_profile(hw)
    return profile, CostModel(profile, Measured.load(measured) if measured else None)


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@hardware_option
@measured_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (a stable interface).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a PNG of MACs per block with the candidate exit locations marked.")
def analyze(model: Path, hw: str, measured: str | None, as_json: bool, plot: Path | None) -> None:
    """Analyze MODEL (.keras, .h5 or SavedModel dir): blocks, MACs, candidate exits, latency per processor."""
    from eenn.augment.analysis import analyze_model, format_table, plot_macs

    profile, cost = load_cost(hw, measured)
    report = analyze_model(model, profile, cost).to_dict()
    if plot is not None:
        if plot.parent and not plot.parent.exists():
            raise EennError(f"--plot {plot}: directory {plot.parent} does not exist")
        plot_macs(report, plot)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(format_table(report))
        if plot is not None:
            click.echo(f"\nplot written to {plot}")


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="DATA.npz: x_train, y_train, optionally x_val, y_val (calibration) and x_test, y_test.")
@hardware_option
@click.option("--clock-plan", "clock_plan", default=None,
              help="The profile's clock plan the search runs on (psoc6: bsp-default, cm4-150) "
                   "[default: the profile's first, psoc6: bsp-default]; recorded in solution.json.")
@measured_option
@click.option("--latency", "latency", type=POSITIVE, default=None, help="Worst-case latency bound in seconds.")
@objective_options
@efficiency_option
@placement_options
@click.option("--confidence", type=click.Choice(["max", "margin"]), default="max", show_default=True,
              help="Exit confidence: max softmax, or top-1 − top-2 margin.")
@click.option("--thresholds", "steps", type=click.IntRange(min=2), default=13, show_default=True, help="Thresholds per exit.")
@click.option("--threshold-method", type=click.Choice(["auto", "exact", "graph"]), default="auto", show_default=True,
              help="Exact cascade simulation over the grid, the paper's shortest-path graph, or exact while small.")
@click.option("--calibration", type=click.Choice(["auto", "val", "split", "train"]), default="auto", show_default=True,
              help="Calibrate on x_val (auto when present), a held-out 20 %% of train, or train itself.")
@click.option("--correction", type=click.FloatRange(0, 1.5, min_open=True), default=1.0, show_default=True,
              help="Multiply the found thresholds by this (e.g. 2/3 when calibrating on train).")
@click.option("--exit-budget", type=SHARE, default=0.05, show_default=True,
              help="Each exit's MACs stay under this share of the backbone's.")
@click.option("--exit-width", type=click.IntRange(min=0), default=64, show_default=True,
              help="Channels of the exits' 1×1 bottleneck (0: blueprint only).")
@click.option("--epochs", type=click.IntRange(min=1), default=25, show_default=True, help="Training epochs per exit.")
@qat_option
@scoring_option
@click.option("--augment", "copies", type=click.IntRange(min=0), default=4, show_default=True,
              help="Shifted copies of the training split the exits also learn from (0: none).")
@click.option("--finetune", is_flag=True, help="Jointly fine-tune the chosen EENN one epoch, then search 101 thresholds.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where trained exits are kept between runs [default: $EENN_CACHE_DIR or ~/.cache/eenn].")
@click.option("--no-cache", is_flag=True, help="Neither read nor write trained exits on disk.")
@click.option("--no-feature-cache", is_flag=True, help="Train exits through the frozen backbone (slow; for comparison).")
@click.option("--memory-limit", type=click.IntRange(min=0), default=2048, show_default=True,
              help="MiB of cached feature maps kept in memory; beyond that they are memory-mapped on disk.")
@click.option("--disk-limit", type=click.IntRange(min=0), default=None,
              help="MiB of memory-mapped feature maps allowed on disk; beyond that the training split is streamed "
                   "through the backbone once per epoch [default: no limit].")
@click.option("--features", "feature_store", type=click.Choice(["auto", "float", "int8", "stream"]), default="auto",
              show_default=True,
              help="How feature maps are kept: auto (float, else int8, in memory, else int8 on disk, else "
                   "streamed), or one of them forced.")
@click.option("--ray", "ray", default=None, metavar="ADDRESS",
              help="Train the exits on a Ray cluster (its address, or local:N for N local worker processes); "
                   "needs eenn[ray].")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the solution bundle.")
@click.option("--force", is_flag=True, help="Replace an existing bundle in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (progress goes to stderr).")
@click.option("--quiet", is_flag=True, help="No progress output.")
def search(model: Path, data: Path, hw: str, clock_plan: str | None, measured: str | None, latency: float | None,
           w: float | None, max_drop: float | None, efficiency: str, placement: str, max_exits: int, confidence: str,
           steps: int, threshold_method: str, calibration: str,
           correction: float, exit_budget: float, exit_width: int, epochs: int, qat: float, scoring: str, copies: int, finetune: bool,
           seed: int, cache_dir: Path | None, no_cache: bool, no_feature_cache: bool, memory_limit: int,
           disk_limit: int | None, feature_store: str, ray: str | None, out: Path,
           force: bool, as_json: bool, quiet: bool) -> None:
    """Search early exits for MODEL on DATA and write a solution bundle to --out."""
    from eenn.augment.exits import ExitConfig
    from eenn.augment.features import AugmentConfig
    from eenn.augment.progress import Progress
    from eenn.augment.report import format_summary
    from eenn.augment.search import SearchConfig, default_cache_dir, run_search, summary_dict
    from eenn.augment.solution import write_result
    from eenn.augment.training import TrainConfig

    if out.exists() and out.is_dir() and any(out.iterdir()) and not force:
        raise EennError(f"{out}: exists and is not empty; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise EennError(f"--out {out}: is a file, expected a directory")
    config = SearchConfig(
        hardware=hw, clock_plan=clock_plan, measured=measured, latency_bound_s=latency, w=w,
        max_accuracy_drop=None if max_drop is None else max_drop / 100.0, efficiency=efficiency, confidence=confidence,
        placement=placement, max_exits=max_exits,
        threshold_steps=steps, threshold_method=threshold_method, calibration=calibration, correction=correction,
        seed=seed, exits=ExitConfig(budget_share=exit_budget, width=exit_width), train=TrainConfig(epochs=epochs, quant_aware=qat),
        augment=AugmentConfig(copies=copies), cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
        feature_cache=not no_feature_cache, memory_limit=memory_limit << 20, finetune=finetune, scoring=scoring,
        disk_limit=None if disk_limit is None else disk_limit << 20, feature_store=feature_store, ray=ray)
    progress = Progress(enabled=not quiet, err=True)
    result = run_search(model, data, config, progress=progress)
    bundle_hash = write_result(result, out, force=force)
    if as_json:
        click.echo(json.dumps({**summary_dict(result), "bundle": str(out), "bundle_hash": bundle_hash}, indent=2))
    else:
        click.echo(format_summary(result.solution, result.pareto_rows))
        click.echo(f"\nbundle written to {out} (hash {bundle_hash[:12]})")
