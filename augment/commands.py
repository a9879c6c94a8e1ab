"""CLI commands of the augment stage: `eenn analyze` (and `eenn search`)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from eenn.errors import EennError


def hardware_option(f):
    return click.option("--hw", "hw", default="psoc6", show_default=True,
                        help="Hardware profile: a built-in name (psoc6, rk3588-cloud) or a TOML file.")(f)


def measured_option(f):
    return click.option("--measured", type=click.Path(dir_okay=False), default=None,
                        help="JSON of measured MAC rates / block times that replace the profile's estimates.")(f)


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
