"""Progress reporting: a click progress bar on a terminal, plain lines in logs and CI.

Why: a search runs for minutes; a user at a terminal wants bars, a CI log wants a few lines.
The search itself only calls `Progress.bar` and `Progress.say`; `quiet` silences both (the
`--json` mode keeps stdout clean by writing progress to stderr).
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator

import click


class Progress:
    def __init__(self, enabled: bool = True, err: bool = True):
        self.enabled = enabled
        self.err = err
        stream = sys.stderr if err else sys.stdout
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def say(self, message: str) -> None:
        if self.enabled:
            click.echo(message, err=self.err)

    @contextmanager
    def bar(self, label: str, length: int) -> Iterator["_Step"]:
        """`with progress.bar("caching features", n) as step: ... step(k)`."""
        start = time.monotonic()
        if self.enabled and self.tty and length > 0:
            with click.progressbar(length=length, label=label, file=sys.stderr if self.err else sys.stdout,
                                   show_pos=True) as bar:
                yield _Step(bar.update)
        else:
            done = [0]

            def update(n: int) -> None:
                done[0] += n

            yield _Step(update)
            if self.enabled and length > 0:
                self.say(f"{label}: {done[0]}/{length} done in {time.monotonic() - start:.1f} s")


class _Step:
    def __init__(self, fn):
        self._fn = fn

    def __call__(self, n: int = 1) -> None:
        self._fn(n)
