"""Where eenn's files live on this machine: the firmware sources and the cache root.

Owned here, below every stage, so that each stage may import it (augment <- codegen <- hil <-
eenn runs one way; a location one stage needs must not be owned by a later one).
"""
from __future__ import annotations

import os
from pathlib import Path


def firmware_dir() -> Path:
    """The firmware source tree (the repository's `firmware/`, installed as `eenn.firmware`)."""
    import eenn.firmware

    return Path(eenn.firmware.__file__).resolve().parent


def cache_dir() -> Path:
    """The root of eenn's caches (trained exits, int8 scores, the host firmware build).

    Precedence: `$EENN_CACHE_DIR` when set and non-empty; else `$XDG_CACHE_HOME/eenn` when
    `XDG_CACHE_HOME` is set and non-empty; else `~/.cache/eenn`."""
    root = os.environ.get("EENN_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                            os.path.expanduser("~/.cache"), "eenn")
    return Path(root)
