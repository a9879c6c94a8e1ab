"""staged_directory: the reader sees the old complete directory or the new one, never a mix."""
import errno
import os
import re
import tempfile

import pytest

from eenn.atomic import staged_directory
from eenn.errors import EennError
from tests.readonly import read_only_dir


def test_success_replaces_the_old_directory(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with staged_directory(out, prefix=".out-") as tmp:
        assert tmp.parent == tmp_path and tmp != out
        (tmp / "new.txt").write_text("new")
        assert (out / "old.txt").is_file()  # untouched until the block ends
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left behind


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_keeps_the_old_directory_and_removes_the_partial_one(tmp_path, exc):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(type(exc)):
        with staged_directory(out, prefix=".out-") as tmp:
            (tmp / "half.txt").write_text("half")
            raise exc
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_creates_missing_parents(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with staged_directory(out, prefix=".out-") as tmp:
        (tmp / "f").write_text("x")
    assert (out / "f").read_text() == "x"


# ---------------------------------------------------------------- a file system that refuses the write


def test_a_read_only_directory_is_one_clear_error_and_nothing_is_left(tmp_path):
    parent = tmp_path / "ro"
    with read_only_dir(parent):
        with pytest.raises(EennError) as err:
            with staged_directory(parent / "a" / "out", prefix=".out-") as tmp:
                (tmp / "f").write_text("x")
        assert list(parent.iterdir()) == []
    msg = str(err.value)
    assert f"cannot write {parent / 'a' / 'out'}" in msg
    assert "Permission denied" in msg or "Operation not permitted" in msg
    assert err.value.exit_code == 2


@pytest.mark.parametrize("where", ["mkdtemp", "in the block", "no file named"])
def test_a_full_disk_is_one_clear_error_and_the_old_directory_stays(tmp_path, monkeypatch, where):
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("old")
    if where == "mkdtemp":
        def full(prefix=None, dir=None):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(dir, prefix + "abc"))
        monkeypatch.setattr(tempfile, "mkdtemp", full)
    with pytest.raises(EennError, match=re.escape(f"cannot write {out}: No space left on device; free some space")):
        with staged_directory(out, prefix=".out-") as tmp:
            (tmp / "half.txt").write_text("half")
            if where == "in the block":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "big.bin"))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a plain write() reports it
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]


def test_parents_created_for_a_failed_write_are_removed(tmp_path, monkeypatch):
    def denied(prefix=None, dir=None):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)
    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(EennError, match="Permission denied"):
        with staged_directory(tmp_path / "a" / "b" / "out", prefix=".out-"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_an_error_about_another_file_is_not_disguised(tmp_path):
    """Reading a missing input inside the block is not a write failure of the output."""
    with pytest.raises(FileNotFoundError):
        with staged_directory(tmp_path / "out", prefix=".out-"):
            open(tmp_path.parent / "no-such-input-eenn.npz", "rb")
    assert list(tmp_path.iterdir()) == []


def test_a_real_size_limit_of_the_os_is_one_clear_error(tmp_path):
    """The kernel itself refusing the write (RLIMIT_FSIZE, as a quota would), in a child process."""
    import subprocess
    import sys

    code = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from eenn.atomic import staged_directory\n"
        "from eenn.errors import EennError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "try:\n"
        "    with staged_directory(Path(sys.argv[1]), prefix='.out-') as tmp:\n"
        "        (tmp / 'model.bin').write_bytes(bytes(1 << 20))\n"
        "except EennError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(exc.exit_code)\n"
    )
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stdout.startswith(f"cannot write {out}: File too large")
    assert list(tmp_path.iterdir()) == []
