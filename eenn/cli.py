"""The `eenn` command line: one group, one subcommand (or group) per pipeline stage.

Each stage defines its commands next to its code (`augment/commands.py`, ...); this module
only assembles them and turns `EennError` into a one-line message with exit code 2.
Heavy imports (TensorFlow) happen inside the commands, so `eenn --help` stays fast.
"""
from __future__ import annotations

import click

from eenn import __version__
from eenn.errors import EennError


class _EennGroup(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except EennError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_EennGroup)
@click.version_option(__version__, prog_name="eenn")
def main() -> None:
    """Turn a trained Keras classifier into an Early-Exit NN and deploy it to PSoC 6."""


def _register() -> None:
    from eenn.augment.commands import analyze
    from eenn.hil.commands import hil

    main.add_command(analyze)
    main.add_command(hil)


_register()
