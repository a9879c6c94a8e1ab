"""staged_directory: the reader sees the old complete directory or the new one, never a mix."""
import pytest

from eenn.atomic import staged_directory


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
