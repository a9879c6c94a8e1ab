"""`eenn generate`: the command-line face of codegen/generate.py."""
from __future__ import annotations

import click

from eenn.codegen.kits import KITS


@click.command()
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--kit", required=True, help=f"Target kit: {', '.join(sorted(KITS))}.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the ModusToolbox application (created; replaced if eenn generated it).")
@click.option("--force", is_flag=True, help="Replace --out even if it is a non-empty directory eenn did not write.")
@click.option("--model-id", default=None,
              help="Model id the HIL runner sees (m-model). Default: kws01 for DS-CNN bundles, else eenn. "
                   "ic01/vww01 (uint8) and ad01 (float32) also set the board's input type at start.")
@click.option("--clock-plan", "clock_plan", default=None,
              help="The clock plan the project sets at start-up; must be the one the bundle was searched for "
                   "(solution.json hardware.clock_plan) [default: the bundle's].")
def generate(bundle: str, kit: str, out_dir: str, force: bool, model_id: str | None, clock_plan: str | None) -> None:
    """Generate int8 TFLite Micro subgraphs per core and a dual-core ModusToolbox project.

    BUNDLE is a solution bundle written by `eenn search`. Prints the memory map per core and
    the operators of each subgraph. Nothing is written when an input is bad or a subgraph
    does not fit the kit.
    """
    from eenn.quiet_tf import quiet_log_level

    quiet_log_level("3")  # TensorFlow's start-up chatter
    from eenn.codegen.generate import generate as run, report_lines

    res = run(bundle, kit, out_dir, force=force, model_id=model_id, log=lambda s: click.echo(s, err=True),
              clock_plan=clock_plan)
    for line in report_lines(res):
        click.echo(line)
