"""The `eenn` command line: one group, one subcommand (or group) per pipeline stage.

Each stage defines its commands next to its code (`augment/commands.py`, ...); this module
only assembles them and turns `EennError` into a one-line message with its exit code (2; 3 for
`BoardError`, the board's fault: README "Exit codes").
Heavy imports (TensorFlow) happen inside the commands, so `eenn --help` stays fast.
"""
from __future__ import annotations

import functools

import click

from eenn import __version__
from eenn.errors import EennError


# Subcommands that load Keras models: TensorFlow is imported first, quietly (eenn/quiet_tf.py),
# once their options are parsed.
NEEDS_TENSORFLOW = {"analyze", "search", "generate", "deploy", "report", "example"}


# Commands that pick up where an interrupted run stopped (trained exits are cached, a deploy and a
# HIL run resume): Ctrl-C tells the user so.
RESUMABLE = {"search", "deploy", "hil run"}
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def _tensorflow_first(callback):
    """`callback` with TensorFlow imported (quietly) first: only once click has parsed and checked
    the options, so that a usage error comes at once, not after TensorFlow's start-up."""
    @functools.wraps(callback)
    def run(*args, **kwargs):
        from eenn.quiet_tf import import_tensorflow

        import_tensorflow()
        return callback(*args, **kwargs)

    run.eenn_tensorflow_first = True  # type: ignore[attr-defined]
    return run


class _EennGroup(click.Group):
    def resolve_command(self, ctx: click.Context, args: list[str]):  # type: ignore[override]
        name, cmd, rest = super().resolve_command(ctx, args)
        ctx.meta["eenn.words"] = [name or "", *rest[:1]]  # "hil run": what a Ctrl-C message names
        ctx.meta["eenn.uncached"] = name == "search" and "--no-cache" in rest  # nothing kept to continue from
        return name, cmd, rest

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except EennError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            words = ctx.meta.get("eenn.words", [])
            resumable = bool(words) and (words[0] in RESUMABLE or " ".join(words) in RESUMABLE) \
                and not ctx.meta.get("eenn.uncached")
            click.echo("\ninterrupted" + ("; run the same command again to continue" if resumable else ""), err=True)
            ctx.exit(INTERRUPTED_EXIT_CODE)


@click.group(cls=_EennGroup)
@click.version_option(__version__, prog_name="eenn")
def main() -> None:
    """Turn a trained Keras classifier into an Early-Exit NN and deploy it to PSoC 6."""


@main.command()
@click.argument("name", type=click.Choice(["digits"]), default="digits")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/example", show_default=True,
              help="Directory for model.keras and data.npz.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the split and the training.")
def example(name: str, out_dir: str, seed: int) -> None:
    """Train the built-in example model (scikit-learn's 8×8 digits, a small CNN) in seconds."""
    from eenn.examples import make_example

    model_path, data_path = make_example(name, out_dir, seed=seed)
    click.echo(f"model: {model_path}\ndata:  {data_path}")


def _register() -> None:
    from eenn.augment.accept_edit import accept_edit_cmd
    from eenn.augment.commands import analyze, search
    from eenn.codegen.commands import generate
    from eenn.deploy_command import deploy, report
    from eenn.hil.commands import hil
    from eenn.hil.flash_command import flash

    main.add_command(analyze)
    main.add_command(search)
    main.add_command(generate)
    main.add_command(hil)
    main.add_command(flash)
    main.add_command(deploy)
    main.add_command(report)
    main.add_command(accept_edit_cmd)
    for name in NEEDS_TENSORFLOW:
        cmd = main.commands[name]
        if cmd.callback is not None and not getattr(cmd.callback, "eenn_tensorflow_first", False):
            cmd.callback = _tensorflow_first(cmd.callback)


_register()
