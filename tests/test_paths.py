"""eenn.paths: one cache root for every stage, with a stated precedence."""
from __future__ import annotations

from pathlib import Path

from eenn.paths import cache_dir, firmware_dir


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EENN_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "eenn"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "eenn"
    monkeypatch.setenv("EENN_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_search_and_host_build_share_the_cache_root(monkeypatch, tmp_path):
    import eenn.augment.search as search
    import eenn.hil.host_build as host_build

    monkeypatch.delenv("EENN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert search.SearchConfig().cache_dir == host_build.cache_dir() == tmp_path / "xdg" / "eenn"


def test_firmware_dir_holds_the_runtime():
    root = firmware_dir()
    assert (root / "include" / "ee_port.h").is_file() and isinstance(root, Path)
