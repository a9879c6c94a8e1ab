"""CLI commands of the augment stage: `eenn analyze`, `eenn search`."""
from __future__ import annotations

import click


@click.command()
@click.argument("model", required=False)
def analyze(model: str | None) -> None:
    """Analyze MODEL: blocks, MACs, candidate exit locations, latency per processor."""
    raise click.UsageError("not implemented yet")
