"""`eenn hil ...`: the hardware-in-the-loop commands (the virtual board for now)."""
from __future__ import annotations

import signal
import sys

import click


@click.group()
def hil() -> None:
    """Hardware-in-the-loop: talk to a board (or the virtual board) over the HIL protocol."""


@hil.command()
@click.argument("project", type=click.Path(exists=True, file_okay=False))
@click.option("--socket", "socket_port", type=click.IntRange(0, 65535), default=None,
              help="Also serve on socket://127.0.0.1:PORT (0: pick a free port).")
@click.option("--model-id", default=None,
              help="Model name in `profile` (m-model-[...]); the MLPerf Tiny runner picks its test by it. "
                   "Default: the project's firmware.model_id, else 'eenn'.")
@click.option("--energy", is_flag=True, help="Start in energy mode (timestamps are pin pulses, not m-lap-us).")
def virtual(project: str, socket_port: int | None, model_id: str | None, energy: bool) -> None:
    """Run PROJECT's firmware on the host as a virtual board and serve the HIL protocol.

    PROJECT is a directory made by `eenn generate` (it has eenn/project.json). The firmware's
    C sources are built for the host (once, cached by source hash); the subgraphs run on the
    tflite_micro runtime; ticks come from the cost model, not from measurement. Prints the
    pseudo-terminal's path (and the socket URL) and serves until Ctrl-C or SIGTERM.
    """
    from eenn.hil.virtual_board import VirtualBoard

    board = VirtualBoard(project, model_id=model_id, energy_mode=energy)
    try:
        path = board.open_pty()
        url = board.open_socket(socket_port) if socket_port is not None else None
        m = board.manifest
        click.echo(f"eenn virtual board: {board.project_dir} (bundle {m.bundle_hash[:12]}), "
                   f"{len(m.stages)} stages, timing from the cost model (not measured)")
        click.echo(f"pty: {path}")
        if url:
            click.echo(f"socket: {url}")
        click.echo("serving; Ctrl-C to stop")
        sys.stdout.flush()

        def _stop(signum, _frame):
            board.stop()

        old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            board.serve()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        click.echo("stopped")
    finally:
        board.close()
