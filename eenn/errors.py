"""The one user-facing error type: the CLI turns it into a message and exit code 2."""


class EennError(Exception):
    """Bad input from the user: which file, which field, what was expected.

    Raised anywhere in the pipeline; `eenn.cli.main` prints it without a traceback
    and exits with `exit_code`.
    """

    exit_code = 2


class BoardError(EennError):
    """Not the user's input: the board or its link failed (no answer within the timeout, a port
    that vanished or cannot be opened, a reply the protocol does not allow).

    A subclass of EennError, so every handler that reports a clean message still does; the CLI
    exits with 3 for it, so that a CI job can tell a flaky bench (retry it) from a regression (1)
    and from a wrong invocation or input (2). README "Exit codes", docs/hil.md.
    """

    exit_code = 3
