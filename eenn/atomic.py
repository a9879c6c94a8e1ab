"""Writing a whole output directory at once (bundle, trained exit, generated project).

Why: a search or a generation can be killed at any moment; whoever reads the output later must
find either the previous complete directory or the new complete one, never a half-written one.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def staged_directory(out: Path, prefix: str) -> Iterator[Path]:
    """Yield a fresh directory beside `out`. When the block ends normally it replaces `out` (a
    rename on the same file system); when it raises, it is removed and `out` is left as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
