"""`eenn deploy` and `eenn report` on the command line (the pipeline itself is eenn/deploy.py)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from eenn.augment.commands import search_config, search_options
from eenn.deploy import DEFAULT_KIT


@click.command()
@click.argument("model", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="DATA.npz: x_train, y_train [, x_val, y_val, x_test, y_test] (see `eenn search`).")
@click.option("--example", type=click.Choice(["digits"]), default=None,
              help="Use a built-in example (model trained in seconds) instead of MODEL and --data.")
@search_options
@click.option("--kit", default=DEFAULT_KIT, show_default=True, help="Target kit of the generated project.")
@click.option("--port", default="virtual", show_default=True,
              help="Board for the HIL run: virtual (host build of the firmware), /dev/ttyACM0, socket://HOST:PORT. "
                   "A real board must already run the generated project (`eenn flash DIR/project`).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="HIL: run only the first N test samples.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the bundle, project, HIL session and report; run again to continue.")
@click.option("--force", is_flag=True, help="Deploy into a non-empty directory `eenn deploy` did not make.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (progress goes to stderr).")
@click.option("--quiet", is_flag=True, help="No progress output.")
def deploy(model: Path | None, data: Path | None, example: str | None, kit: str, port: str, limit: int | None,
           out: Path, force: bool, as_json: bool, quiet: bool, **options: Any) -> None:
    """Search, generate, run on the (virtual) board and report: MODEL + DATA → DIR/report.html.

    The search options are `eenn search`'s, with the same defaults."""
    from eenn.deploy import DeployOptions, agreement_lines
    from eenn.deploy import deploy as run_deploy

    opts = DeployOptions(out=out, model=model, data=data, example=example, search=search_config(**options), kit=kit,
                         port=port, limit=limit, force=force, quiet=quiet)

    def say(line: str) -> None:
        if not quiet:
            click.echo(line, err=as_json)

    res = run_deploy(opts, say=say)
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=2, default=str))
        return
    for line in agreement_lines(res.summary) if res.summary else []:
        click.echo(line)
    click.echo(f"report: {res.report_html}")


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--project", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The project generated from BUNDLE (memory map, int8 reference).")
@click.option("--session", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A HIL session of that project (`eenn hil run --out`).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="report.html to write.")
@click.option("--md", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Markdown twin [default: --out with .md].")
def report(bundle: Path, project: Path | None, session: Path | None, out: Path, md: Path | None) -> None:
    """Rebuild the end-to-end report from a bundle, its project and a HIL session."""
    from eenn.report import ReportSources, write_report

    md = md or out.with_suffix(".md")
    write_report(ReportSources(bundle=bundle, project=project, session=session), out, md)
    click.echo(f"report: {out} and {md}")
