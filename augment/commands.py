"""CLI commands of the augment stage: `eenn analyze` (and `eenn search`)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import click

from eenn.augment.architectures import PLACEMENTS
from eenn.augment.search_config import DEFAULT_MAX_DROP, EFFICIENCIES, SearchConfig
from eenn.errors import EennError
from eenn.paths import cache_dir as default_cache_dir


# Ranges checked by click while it parses, before TensorFlow is imported (a usage error, exit 2):
# the same bounds SearchConfig.checked() enforces for callers of the Python API.
POSITIVE = click.FloatRange(min=0, min_open=True)
SHARE = click.FloatRange(0, 1, min_open=True, max_open=True)


_DEFAULT = SearchConfig(cache_dir=None)  # every option's default comes from here, for both commands


def hardware_option(f):
    return click.option("--hw", "hw", default=_DEFAULT.hardware, show_default=True,
                        help="Hardware profile: a built-in name (psoc6, rk3588-cloud) or a TOML file.")(f)


def measured_option(f):
    return click.option("--measured", type=click.Path(dir_okay=False), default=None,
                        help="JSON of measured MAC rates / block times that replace the profile's estimates.")(f)


def _search_option_list() -> list[Callable]:
    """The search's options in --help order (each maps to one SearchConfig field; see search_config)."""
    d, opt = _DEFAULT, click.option
    return [
        opt("--clock-plan", "clock_plan", default=None,
            help="The profile's clock plan the search runs on (psoc6: bsp-default, cm4-150) "
                 "[default: the profile's first, psoc6: bsp-default]; recorded in solution.json."),
        opt("--latency", "latency", type=POSITIVE, default=None, help="Worst-case latency bound in seconds."),
        opt("--w", "w", type=click.FloatRange(0, 1), default=None,
            help="The paper's weighted objective w·gain − (1−w)·drop instead of --max-drop (e.g. 0.9)."),
        opt("--max-drop", type=click.FloatRange(0, 100), default=None,
            help=f"The largest saving whose accuracy drop on the calibration split is at most this many "
                 f"points [default: {100 * DEFAULT_MAX_DROP:g}, unless --w is given]."),
        opt("--efficiency", type=click.Choice(list(EFFICIENCIES)), default=d.efficiency, show_default=True,
            help="What the saving is measured in: the cost model's mean energy per inference (latency "
                 "where the profile has no power figures), its mean latency, or mean MACs (the paper's)."),
        opt("--placement", type=click.Choice(list(PLACEMENTS)), default=d.placement, show_default=True,
            help="any: exits anywhere, each stage on any processor in the profile's order (several on "
                 "one); boundary: the paper's space, exit i where processor i hands over."),
        opt("--max-exits", type=click.IntRange(min=1), default=d.max_exits, show_default=True,
            help="At most this many early exits (not bounded by the number of processors)."),
        opt("--confidence", type=click.Choice(["max", "margin"]), default=d.confidence, show_default=True,
            help="Exit confidence: max softmax, or top-1 − top-2 margin."),
        opt("--thresholds", "steps", type=click.IntRange(min=2), default=d.threshold_steps, show_default=True,
            help="Thresholds per exit."),
        opt("--threshold-method", type=click.Choice(["auto", "exact", "graph"]), default=d.threshold_method,
            show_default=True,
            help="Exact cascade simulation over the grid, the paper's shortest-path graph, or exact while small."),
        opt("--calibration", type=click.Choice(["auto", "val", "split", "train"]), default=d.calibration,
            show_default=True,
            help="Calibrate on x_val (auto when present), a held-out 20 % of train, or train itself."),
        opt("--correction", type=click.FloatRange(0, 1.5, min_open=True), default=d.correction, show_default=True,
            help="Multiply the found thresholds by this (e.g. 2/3 when calibrating on train)."),
        opt("--exit-budget", type=SHARE, default=d.exits.budget_share, show_default=True,
            help="Each exit's MACs stay under this share of the backbone's."),
        opt("--exit-width", type=click.IntRange(min=0), default=d.exits.width, show_default=True,
            help="Channels of the exits' 1×1 bottleneck (0: blueprint only)."),
        opt("--epochs", type=click.IntRange(min=1), default=d.train.epochs, show_default=True,
            help="Training epochs per exit."),
        opt("--qat", "qat", type=click.FloatRange(0, 1), default=d.train.quant_aware, show_default=True,
            help="Share of the last exit-training epochs run through simulated int8 rounding, so that "
                 "the exits keep their accuracy once converted (0: float training only)."),
        opt("--scoring", type=click.Choice(["int8", "float"]), default=d.scoring, show_default=True,
            help="Choose thresholds and exits on the int8 outputs the board computes, or on the "
                 "float outputs (the comparison; the bundle reports both)."),
        opt("--augment", "copies", type=click.IntRange(min=0), default=d.augment.copies, show_default=True,
            help="Shifted copies of the training split the exits also learn from (0: none)."),
        opt("--finetune", is_flag=True,
            help=f"Jointly fine-tune the chosen EENN one epoch, then search {d.fine_steps} thresholds."),
        opt("--seed", type=click.IntRange(min=0), default=d.seed, show_default=True,
            help="Seed of the calibration split, the augmentation and the exits' training."),
        opt("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
            help="Where trained exits are kept between runs [default: $EENN_CACHE_DIR, else "
                 "$XDG_CACHE_HOME/eenn, else ~/.cache/eenn]."),
        opt("--no-cache", is_flag=True, help="Neither read nor write trained exits on disk."),
        opt("--no-feature-cache", is_flag=True, help="Train exits through the frozen backbone (slow; for comparison)."),
        opt("--memory-limit", type=click.IntRange(min=0), default=d.memory_limit >> 20, show_default=True,
            help="MiB of cached feature maps kept in memory; beyond that they are memory-mapped on disk."),
        opt("--disk-limit", type=click.IntRange(min=0), default=None,
            help="MiB of memory-mapped feature maps allowed on disk; beyond that the training split is streamed "
                 "through the backbone once per epoch [default: no limit]."),
        opt("--features", "feature_store", type=click.Choice(["auto", "float", "int8", "stream"]),
            default=d.feature_store, show_default=True,
            help="How feature maps are kept: auto (float, else int8, in memory, else int8 on disk, else "
                 "streamed), or one of them forced."),
        opt("--ray", "ray", default=None, metavar="ADDRESS",
            help="Train the exits on a Ray cluster (its address, or local:N for N local worker processes); "
                 "needs eenn[ray]."),
    ]


def search_options(f):
    """Every option of the search, declared once for `eenn search` and `eenn deploy`: the command
    receives them as keyword arguments and hands them to `search_config`."""
    options = _search_option_list()
    for option in reversed([hardware_option, options[0], measured_option, *options[1:]]):  # --hw, --clock-plan, ...
        f = option(f)
    return f


def search_option_defaults() -> dict[str, Any]:
    """The search options' values when none is given on the command line (parameter name → default)."""
    params = search_options(lambda **kw: None).__click_params__
    return {p.name: (False if p.is_flag else p.default) for p in params}


def search_config(**options: Any) -> SearchConfig:
    """The SearchConfig that search options describe, by their parameter names (`copies` for
    --augment, `steps` for --thresholds, ...); one not given takes its command-line default. Not
    yet checked (SearchConfig.checked)."""
    defaults = search_option_defaults()
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(f"not search options: {', '.join(unknown)} (expected some of {', '.join(defaults)})")
    return _config_from_options(**{**defaults, **options})


def _config_from_options(*, hw: str, clock_plan: str | None, measured: str | None, latency: float | None,
                         w: float | None, max_drop: float | None, efficiency: str, placement: str, max_exits: int,
                         confidence: str, steps: int, threshold_method: str, calibration: str, correction: float,
                         exit_budget: float, exit_width: int, epochs: int, qat: float, scoring: str, copies: int,
                         finetune: bool, seed: int, cache_dir: Path | None, no_cache: bool, no_feature_cache: bool,
                         memory_limit: int, disk_limit: int | None, feature_store: str, ray: str | None) -> SearchConfig:
    return SearchConfig(
        hardware=hw, clock_plan=clock_plan, measured=measured, latency_bound_s=latency, w=w,
        max_accuracy_drop=None if max_drop is None else max_drop / 100.0, efficiency=efficiency, confidence=confidence,
        placement=placement, max_exits=max_exits, threshold_steps=steps, threshold_method=threshold_method,
        calibration=calibration, correction=correction, seed=seed,
        exits=replace(_DEFAULT.exits, budget_share=exit_budget, width=exit_width),
        train=replace(_DEFAULT.train, epochs=epochs, quant_aware=qat), augment=replace(_DEFAULT.augment, copies=copies),
        cache_dir=None if no_cache else (cache_dir or default_cache_dir()), feature_cache=not no_feature_cache,
        memory_limit=memory_limit << 20, disk_limit=None if disk_limit is None else disk_limit << 20,
        feature_store=feature_store, ray=ray, finetune=finetune, scoring=scoring)


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
@search_options
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the solution bundle.")
@click.option("--force", is_flag=True, help="Replace an existing bundle in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (progress goes to stderr).")
@click.option("--quiet", is_flag=True, help="No progress output.")
def search(model: Path, data: Path, out: Path, force: bool, as_json: bool, quiet: bool, **options: Any) -> None:
    """Search early exits for MODEL on DATA and write a solution bundle to --out."""
    from eenn.augment.progress import Progress
    from eenn.augment.report import format_summary
    from eenn.augment.search import run_search, summary_dict
    from eenn.augment.solution import write_result

    if out.exists() and out.is_dir() and any(out.iterdir()) and not force:
        raise EennError(f"{out}: exists and is not empty; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise EennError(f"--out {out}: is a file, expected a directory")
    config = search_config(**options)
    progress = Progress(enabled=not quiet, err=True)
    result = run_search(model, data, config, progress=progress)
    bundle_hash = write_result(result, out, force=force)
    if as_json:
        click.echo(json.dumps({**summary_dict(result), "bundle": str(out), "bundle_hash": bundle_hash}, indent=2))
    else:
        click.echo(format_summary(result.solution, result.pareto_rows))
        click.echo(f"\nbundle written to {out} (hash {bundle_hash[:12]})")
