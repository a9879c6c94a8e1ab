"""The session file: durable appends, resume after a kill at any byte, no sample counted twice."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eenn.errors import EennError
from eenn.hil.session import META, RESULTS, Session

ID = {"bundle_hash": "ab" * 32, "data_sha256": "cd" * 32, "n_samples": 50}


def _rec(i: int, cls: int = 0) -> dict:
    return {"index": i, "class": cls, "exit": i % 2, "ticks": [i, 2 * i], "elapsed_us": 100 + i}


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(list(range(50))), n_first=st.integers(0, 50), cut=st.floats(0, 1))
def test_resume_after_a_cut_at_any_byte_records_each_sample_once(tmp_path_factory, order, n_first, cut):
    # on tmpfs where there is one: this tests the parsing and truncation, not the disk's fsync speed
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    root = Path(tempfile.mkdtemp(dir=shm)) if shm else tmp_path_factory.mktemp("s")
    with Session.open(root, ID) as s:
        for i in order[:n_first]:
            s.append(_rec(i))
    path = root / RESULTS
    data = path.read_bytes() if path.exists() else b""
    cut_at = int(len(data) * cut)
    path.write_bytes(data[:cut_at])  # the kill: everything after this byte never reached the disk
    survived = {json.loads(line)["index"] for line in data[:cut_at].split(b"\n")[:-1]}
    with Session.open(root, ID) as s:
        assert s.done == survived
        assert s.recovered_torn_line == (cut_at > 0 and data[cut_at - 1:cut_at] != b"\n")
        for i in order:
            if i not in s.done:
                s.append(_rec(i))
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    indices = [json.loads(line)["index"] for line in lines[:-1]]
    assert sorted(indices) == list(range(50))  # exactly one per sample
    with Session.open(root, ID) as s:
        assert [r["index"] for r in s.ordered()] == list(range(50))
        assert s.ordered()[7] == _rec(7)
    if shm:
        import shutil

        shutil.rmtree(root)


def test_a_different_run_is_not_mixed_in(tmp_path):
    Session.open(tmp_path, ID).close()
    with pytest.raises(EennError, match="data_sha256.*new --out"):
        Session.open(tmp_path, {**ID, "data_sha256": "ee" * 32})


def test_a_damaged_line_in_the_middle_is_reported(tmp_path):
    with Session.open(tmp_path, ID) as s:
        for i in range(3):
            s.append(_rec(i))
    p = tmp_path / RESULTS
    lines = p.read_text().splitlines()
    lines[1] = lines[1][:10]
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(EennError, match="line 2"):
        Session.open(tmp_path, ID)


def test_appending_a_recorded_sample_is_refused(tmp_path):
    with Session.open(tmp_path, ID) as s:
        s.append(_rec(1))
        with pytest.raises(EennError, match="already recorded"):
            s.append(_rec(1))


def test_starts_are_kept_in_session_json(tmp_path):
    with Session.open(tmp_path, ID) as s:
        s.note_start({"port": "virtual"})
    with Session.open(tmp_path, ID) as s:
        s.note_start({"port": "/dev/ttyACM0"})
    meta = json.loads((tmp_path / META).read_text())
    assert [e["port"] for e in meta["starts"]] == ["virtual", "/dev/ttyACM0"]
    assert meta["n_samples"] == 50


def test_one_writer_at_a_time(tmp_path):
    first = Session.open(tmp_path, ID)
    with pytest.raises(EennError, match=f"another `eenn hil run` is using this session \\(pid {os.getpid()}\\)"):
        Session.open(tmp_path, ID)
    first.close()
    Session.open(tmp_path, ID).close()  # released on close (and by the kernel when a process dies)


def test_a_read_only_place_for_the_session_is_one_clear_error(tmp_path):
    from tests.readonly import read_only_dir

    with read_only_dir(tmp_path / "ro") as ro:
        with pytest.raises(EennError, match=f"cannot write {ro / 's'}: (Permission denied|Operation not permitted)"):
            Session.open(ro / "s", ID)
        assert list(ro.iterdir()) == []


def test_a_disk_full_while_recording_is_one_clear_error_and_keeps_what_was_recorded(tmp_path, monkeypatch):
    import errno

    from eenn.hil import session as session_mod

    with Session.open(tmp_path / "s", ID) as s:
        s.append(_rec(0))
        real_write = os.write

        def full(fd, data):
            if fd == s._fd:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        monkeypatch.setattr(session_mod.os, "write", full)
        with pytest.raises(EennError, match=f"cannot write {tmp_path / 's' / RESULTS}: No space left on device"):
            s.append(_rec(1))
        with pytest.raises(EennError, match="cannot write .*session.json: No space left on device"):
            monkeypatch.setattr(session_mod.os, "fsync", lambda fd: (_ for _ in ()).throw(
                OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
            s.note_start({"port": "x"})
    monkeypatch.undo()
    with Session.open(tmp_path / "s", ID) as s:
        assert s.done == {0}
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted([".lock", META, RESULTS])
