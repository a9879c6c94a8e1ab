"""Shared fixtures: where the real data lives, and the --run-slow switch."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets and models (../shared/data, or $EENN_DATA_DIR); skip when absent."""
    root = Path(os.environ.get("EENN_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set EENN_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def ds_cnn_path(shared_data: Path) -> Path:
    path = shared_data / "kws" / "ds_cnn_l.h5"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path
