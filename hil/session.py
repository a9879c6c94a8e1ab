"""A HIL session directory: what a run has done so far, safe against being killed at any point.

    SESSION/
      session.json    what is being run: bundle hash, data file (+ SHA-256, sample count), project,
                      and one entry per start of `eenn hil run` (port, board identity, time)
      results.jsonl   one JSON object per sample, appended and fsync'ed as it arrives
      run.log         the run's log (appended across restarts)
      summary.json    written at the end of a complete pass (hil/summary.py, docs/hil.md)
      .lock           held (flock) by the one run writing the session; the kernel frees it if that run dies

`results.jsonl` is append-only. A run killed mid-write leaves at most a torn last line (no
newline): it is cut off when the session is opened again, and the samples already recorded are
skipped, so a restarted run records each sample exactly once. A malformed line that is *not*
the last one is not guessed at: opening fails and names the line.
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from eenn.atomic import write_json_atomic, writing
from eenn.errors import EennError

RESULTS = "results.jsonl"
META = "session.json"
LOG = "run.log"
LOCK = ".lock"
SCHEMA_VERSION = 1
# session.json keys that must match for a restart to continue the same session
IDENTITY_KEYS = ("bundle_hash", "data_sha256", "n_samples")


def read_results(path: Path) -> tuple[list[dict], int, bool]:
    """(records, byte length of the good prefix, whether a torn tail was found) of a results file."""
    data = path.read_bytes() if path.exists() else b""
    records: list[dict] = []
    good = 0
    pos = 0
    lineno = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:  # no newline: a write cut short by a kill
            return records, good, True
        lineno += 1
        line = data[pos:nl]
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("index"), int):
                raise ValueError("not an object with an integer 'index'")
        except ValueError as exc:
            if data[nl + 1:].strip():
                raise EennError(f"{path}: line {lineno} is not a result record ({exc}); the file was edited or "
                                "damaged. Remove that line (its sample will be run again) or start a new session") from None
            return records, good, True  # a damaged last line: treat as torn
        records.append(rec)
        pos = good = nl + 1
    return records, good, False


def _lock(root: Path) -> int:
    """One writer per session: an exclusive flock on SESSION/.lock, released when the holder dies."""
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _busy(root, fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _read_meta(root: Path, identity: dict[str, Any]) -> dict | None:
    """SESSION/session.json if there is one, checked to describe the same run as `identity`."""
    meta_path = root / META
    if not meta_path.exists():
        if (root / RESULTS).exists():
            raise EennError(f"{root}: has {RESULTS} but no {META}; not a session eenn wrote")
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise EennError(f"{meta_path}: unreadable ({exc}); use a new --out directory") from exc
    for key in IDENTITY_KEYS:
        if meta.get(key) != identity.get(key):
            raise EennError(f"{root}: this session ran {key} = {meta.get(key)!r}, this run has "
                            f"{identity.get(key)!r}; results of different runs are not mixed: "
                            "use a new --out directory (or delete this one)")
    return meta


def _busy(root: Path, fd: int) -> None:
    holder = os.read(fd, 64).decode(errors="replace").strip()
    os.close(fd)
    raise EennError(f"{root}: another `eenn hil run` is using this session{f' (pid {holder})' if holder else ''}; "
                    "wait for it or use another --out") from None


def _check_not_busy(root: Path) -> None:
    """Fail as `_lock` would if another run holds SESSION/.lock, without taking it or writing."""
    try:
        fd = os.open(root / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _busy(root, fd)
    os.close(fd)  # releases the probe's lock


class Session:
    """An open session: `done` holds the sample indices already recorded."""

    def __init__(self, root: Path, meta: dict, records: dict[int, dict], torn: bool, duplicates: int,
                 lock_fd: int | None = None):
        self._lock_fd = lock_fd
        self.root = root
        self.meta = meta
        self.records = records
        self.recovered_torn_line = torn
        self.duplicates = duplicates
        self._fd: int | None = None

    @property
    def results_path(self) -> Path:
        return self.root / RESULTS

    @property
    def done(self) -> set[int]:
        return set(self.records)

    @classmethod
    def open(cls, root: str | Path, identity: dict[str, Any], extra: dict[str, Any] | None = None) -> Session:
        """Open or create SESSION for a run described by `identity` (IDENTITY_KEYS and more)."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise EennError(f"{root}: exists and is not a directory (a session is a directory)")
        with writing(root):
            root.mkdir(parents=True, exist_ok=True)
            lock_fd = _lock(root)
        try:
            return cls._open_locked(root, identity, extra, lock_fd)
        except BaseException:
            os.close(lock_fd)
            raise

    @classmethod
    def recorded(cls, root: str | Path, identity: dict[str, Any]) -> set[int]:
        """The samples SESSION already holds for this run, read without creating or locking
        anything (so that a run can reach the board before it writes a session); raises the
        same errors as `open` for a session of another run. `open` reads them again, locked."""
        root = Path(root)
        if not root.is_dir():
            return set()
        _check_not_busy(root)  # before the caller talks to a board another run may be using
        _read_meta(root, identity)
        return {rec["index"] for rec in read_results(root / RESULTS)[0]}

    @classmethod
    def _open_locked(cls, root: Path, identity: dict[str, Any], extra: dict[str, Any] | None,
                     lock_fd: int) -> Session:
        meta_path = root / META
        meta = _read_meta(root, identity)
        if meta is None:
            meta = {"schema_version": SCHEMA_VERSION, **identity, "starts": []}
        meta.update({k: v for k, v in (extra or {}).items() if k not in IDENTITY_KEYS})
        path = root / RESULTS
        records_list, good, torn = read_results(path)
        if torn:
            with open(path, "r+b") as fh:
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())
        records: dict[int, dict] = {}
        dup = 0
        n = identity.get("n_samples")
        for rec in records_list:
            i = rec["index"]
            if n is not None and not 0 <= i < n:
                raise EennError(f"{path}: record for sample {i}, the data has {n} samples")
            if i in records:
                dup += 1  # cannot happen through this class; keep the first if a file was concatenated
                continue
            records[i] = rec
        write_json_atomic(meta_path, meta)
        return cls(root, meta, records, torn, dup, lock_fd)

    def note_start(self, entry: dict[str, Any]) -> None:
        self.meta.setdefault("starts", []).append(entry)
        write_json_atomic(self.root / META, self.meta)

    def append(self, record: dict[str, Any]) -> None:
        """Record one sample durably (one write, then fsync) before the next is run."""
        i = record["index"]
        if i in self.records:
            raise EennError(f"sample {i} is already recorded in {self.results_path}")
        line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
        with writing(self.results_path):  # a full disk: one EennError, the samples so far are kept
            if self._fd is None:
                self._fd = os.open(self.results_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            view = memoryview(line)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
        self.records[i] = record

    def ordered(self) -> list[dict]:
        return [self.records[i] for i in sorted(self.records)]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock (so does the process's death)
            self._lock_fd = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
