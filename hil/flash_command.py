"""`eenn flash`: build and program a generated project (hil/flash.py)."""
from __future__ import annotations

import click


@click.command()
@click.argument("project", type=click.Path(exists=True, file_okay=False))
@click.option("--method", type=click.Choice(["make", "openocd", "pyocd"]), default="make", show_default=True,
              help="make: ModusToolbox `make build` + `make qprogram`; openocd / pyocd: program "
                   "build/app_combined.hex directly.")
@click.option("--probe-serial", default=None, metavar="SN",
              help="The KitProg3's serial number, to pick one of several kits (`eenn hil ports`).")
@click.option("--target", type=click.Choice(["cy8c6xxa", "cy8c6xx7"]), default=None,
              help="PSoC 6 family for openocd/pyocd (default: from the project's kit): cy8c6xxa = 2 MB flash, "
                   "cy8c6xx7 = 1 MB.")
@click.option("--hex", "hex_file", type=click.Path(dir_okay=False), default=None,
              help="Image to program (openocd/pyocd). Default: PROJECT/build/app_combined.hex, built if missing.")
@click.option("--openocd", default=None, metavar="PATH", help="The OpenOCD executable (default: ModusToolbox's, "
              "else `openocd` on PATH).")
@click.option("--openocd-flavor", type=click.Choice(["auto", "mtb", "stock"]), default="auto", show_default=True,
              help="mtb: ModusToolbox OpenOCD with KitProg3; stock: upstream OpenOCD with CMSIS-DAP.")
@click.option("--dry-run", is_flag=True, help="Print the commands and exit.")
def flash(project, method, probe_serial, target, hex_file, openocd, openocd_flavor, dry_run) -> None:
    """Build PROJECT (from `eenn generate`) and program it into the kit.

    Needs ModusToolbox 3.x for building (and for --method make); OpenOCD or pyOCD for the other
    methods. A missing tool, no board or a failed verify stops with one message and exit code 2.
    """
    from eenn.hil.flash import plan, run_plan

    p = plan(project, method=method, probe_serial=probe_serial, target=target, hex_file=hex_file, openocd=openocd,
             openocd_flavor=openocd_flavor)
    if dry_run:
        for note in p.notes:
            click.echo(f"# {note}")
        for tool in p.missing:
            click.echo(f"# not installed: {tool}")
        for step in p.steps:
            click.echo(step.shell())
        return
    run_plan(p, probe_serial=probe_serial, echo=click.echo)
    click.echo(f"flashed {project} ({method})")
