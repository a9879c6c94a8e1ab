"""The one user-facing error type: the CLI turns it into a message and exit code 2."""


class EennError(Exception):
    """Bad input from the user: which file, which field, what was expected.

    Raised anywhere in the pipeline; `eenn.cli.main` prints it without a traceback
    and exits with `exit_code`.
    """

    exit_code = 2
