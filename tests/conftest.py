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


def missing_tool(reason: str):
    """Skip a test whose tool (compiler, fuzzer runtime) is not installed, or fail it where the
    tools are promised: `.ci/run` installs them and sets EENN_REQUIRE_TOOLS=1, so in CI a missing
    tool is a failure, not a silent skip."""
    if os.environ.get("EENN_REQUIRE_TOOLS"):
        pytest.fail(f"{reason} (EENN_REQUIRE_TOOLS is set)")
    pytest.skip(reason)


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


# ------------------------------------------------------------------ code generation fixtures
# Solution bundles built from small Keras models (tests/bundles.py) and the projects
# `eenn generate` writes from them, built once per session and shared read-only.
_codegen_cache: dict = {}


def _cached(key, build):
    if key not in _codegen_cache:
        _codegen_cache[key] = build()
    return _codegen_cache[key]


@pytest.fixture(scope="session")
def digits_bundle(tmp_path_factory):
    from tests.bundles import digits_bundle as build

    return _cached("digits_bundle", lambda: build(tmp_path_factory.mktemp("bundles") / "digits"))


@pytest.fixture(scope="session")
def ecg_bundle(tmp_path_factory):
    from tests.bundles import ecg_bundle as build

    return _cached("ecg_bundle", lambda: build(tmp_path_factory.mktemp("bundles") / "ecg"))


def _generated(tmp_path_factory, info: dict, kit: str, name: str):
    from eenn.codegen.generate import generate

    return _cached(("project", name, kit), lambda: generate(info["path"], kit, tmp_path_factory.mktemp("projects") / name))


@pytest.fixture(scope="session")
def digits_project(tmp_path_factory, digits_bundle):
    """GenerateResult of the 2-D bundle for CY8CKIT-062S2-43012."""
    return _generated(tmp_path_factory, digits_bundle, "CY8CKIT-062S2-43012", "digits")


@pytest.fixture(scope="session")
def ecg_project(tmp_path_factory, ecg_bundle):
    """GenerateResult of the 1-D bundle for CY8CPROTO-062-4343W."""
    return _generated(tmp_path_factory, ecg_bundle, "CY8CPROTO-062-4343W", "ecg")


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """The built-in digits example, trained briefly (a search only needs a sensible backbone):
    (model.keras, data.npz), shared by the search and deploy tests."""
    import keras
    import numpy as np

    from eenn.examples import digits_cnn, digits_dataset

    out = tmp_path_factory.mktemp("digits")
    data = digits_dataset(0)
    keras.utils.set_random_seed(0)
    model = digits_cnn()
    model.compile(optimizer=keras.optimizers.Adam(5e-3), loss="sparse_categorical_crossentropy")
    model.fit(data["x_train"], data["y_train"], epochs=6, batch_size=32, verbose=0)
    model.save(out / "model.keras")
    np.savez(out / "data.npz", **data)
    return out / "model.keras", out / "data.npz"
