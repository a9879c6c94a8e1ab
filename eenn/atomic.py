"""Writing a whole output directory (bundle, trained exit, generated project) or JSON file at once.

Why: a search or a generation can be killed at any moment; whoever reads the output later must
find either the previous complete directory or the new complete one, never a half-written one.
A write that the file system refuses (a read-only directory, a full disk) is the user's
environment, not a bug: it becomes one EennError naming the path and the OS's reason.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from eenn.errors import EennError

# errors that say "this disk / directory cannot take the write", whatever file the call named
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_HINTS = {errno.ENOSPC: "free some space or write elsewhere", errno.EDQUOT: "free some space or write elsewhere",
          errno.EFBIG: "the file system or a ulimit caps the file size",
          errno.EROFS: "the file system is mounted read-only: write elsewhere",
          errno.EACCES: "write elsewhere or fix the permissions", errno.EPERM: "write elsewhere or fix the permissions"}


def write_error(path: Path | str, exc: OSError) -> EennError:
    """The EennError for a refused write of `path`: the path, the OS's reason and what to do."""
    reason = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno)
    # name the file only when it is not ours (the staging directory beside `path` is gone by now)
    where = f" ({exc.filename})" if exc.filename and not _is_under(exc.filename, (Path(path).parent.absolute(),)) else ""
    return EennError(f"cannot write {path}: {reason}{where}" + (f"; {hint}" if hint else ""))


def _is_under(name: object, roots: tuple[Path, ...]) -> bool:
    if not isinstance(name, (str, bytes, os.PathLike)):
        return False
    p = Path(os.fsdecode(name)).absolute()
    return any(p == r or r in p.parents for r in roots)


def is_write_failure(exc: OSError, *roots: Path) -> bool:
    """Whether `exc` is the file system refusing a write: no space, a read-only mount or a size
    cap anywhere, or any error on a path inside one of `roots` (permission denied, ...)."""
    if exc.errno in _STORAGE_ERRNOS:
        return True
    absolute = tuple(Path(r).absolute() for r in roots)
    return any(_is_under(n, absolute) for n in (exc.filename, exc.filename2) if n is not None)


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Turn a refused write of `path` (or of files under it) into `write_error`."""
    try:
        yield
    except OSError as exc:
        if is_write_failure(exc, Path(path)):
            raise write_error(path, exc) from exc
        raise


def _missing_parents(out: Path) -> list[Path]:
    """The ancestors of `out` that do not exist yet, deepest first."""
    missing = []
    for p in out.absolute().parents:
        if p.exists():
            break
        missing.append(p)
    return missing


@contextmanager
def staged_directory(out: Path, prefix: str) -> Iterator[Path]:
    """Yield a fresh directory beside `out`. When the block ends normally it replaces `out` (a
    rename on the same file system); when it raises, it is removed and `out` is left as it was.

    A write refused by the file system (read-only, full, no permission), in the block or while
    staging, raises `write_error` naming `out`, and leaves nothing behind: no staging directory
    and none of the parent directories this call created.
    """
    out = Path(out)
    created = _missing_parents(out)
    tmp: Path | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=out.parent))
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for p in created:  # deepest first; only if still empty (nothing else wrote there meanwhile)
            try:
                p.rmdir()
            except OSError:
                break
        if isinstance(exc, OSError) and is_write_failure(exc, out.parent, *(created[-1:])):
            raise write_error(out, exc) from exc
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary sibling, fsync, rename: readers never see half a file."""
    path = Path(path)
    with writing(path):  # a read-only directory or a full disk: one EennError naming the file
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(obj, fh, indent=2, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
