"""TEST-ONLY: a directory the file system really refuses to write into, also for root.

Tests run as root in CI, where `chmod 0555` stops nothing; there the directory is made
immutable (`chattr +i`, ext4/xfs/btrfs). Where neither works the test is skipped.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


def _refuses_writes(d: Path) -> bool:
    try:
        (d / ".probe").write_text("x")
    except OSError:
        return True
    (d / ".probe").unlink()
    return False


@contextmanager
def read_only_dir(d: Path) -> Iterator[Path]:
    """`d` (created if missing) refuses new entries inside the block; restored afterwards."""
    d.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        mode = d.stat().st_mode
        d.chmod(0o555)
        try:
            yield d
        finally:
            d.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(d)], capture_output=True).returncode != 0:
        pytest.skip("running as root and `chattr +i` is not available: no way to make a read-only directory")
    try:
        if not _refuses_writes(d):
            pytest.skip("`chattr +i` did not stop writes on this file system")
        yield d
    finally:
        subprocess.run([chattr, "-i", str(d)], check=True)
