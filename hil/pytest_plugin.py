"""pytest plugin: hardware-in-the-loop tests as ordinary pytest tests (entry point `pytest11`).

    pytest tests/hil --eenn-port /dev/ttyACM0 --eenn-bundle runs/bundle [--eenn-project runs/project]
    pytest tests/hil --eenn-port virtual --eenn-bundle runs/bundle         # the virtual board

A test asks for the `eenn_board` fixture (one connection per pytest session, identified and
checked against the bundle's hash) and talks to the board through it:

    def test_board_answers_like_the_reference(eenn_board):
        x, y = eenn_board.test_data()
        res = eenn_board.infer(x[0])
        assert res.cls == y[0]

Without `--eenn-port` the tests that use `eenn_board` are skipped (with the reason), and the
plugin does nothing else: test runs that do not pass its options are not affected. Nothing
heavy is imported until the fixture is first used.
"""
from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("eenn", "eenn hardware-in-the-loop")
    group.addoption("--eenn-port", default=None, metavar="PORT",
                    help="Board serial port, pyserial URL, or 'virtual' / 'virtual:PROJECT' (eenn_board fixture).")
    group.addoption("--eenn-bundle", default=None, metavar="DIR", help="Solution bundle the board must run.")
    group.addoption("--eenn-project", default=None, metavar="DIR",
                    help="Generated project (default: found inside or beside the bundle).")
    group.addoption("--eenn-timeout", type=float, default=5.0, metavar="S", help="Reply timeout in seconds.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "eenn_hil: a test that needs a board (uses the eenn_board fixture)")


def pytest_report_header(config: pytest.Config) -> str | None:
    port = config.getoption("--eenn-port", default=None)
    if port:
        return f"eenn HIL: port {port}, bundle {config.getoption('--eenn-bundle')}"
    return None


class EennBoard:
    """A connected, identified board and what it was generated from."""

    def __init__(self, port: str, bundle: str | None, project: str | None, timeout: float):
        from eenn.codegen.manifest import check_same_bundle, load_manifest
        from eenn.errors import EennError
        from eenn.hil.client import BoardClient, resolve_port
        from eenn.hil.run import find_project

        self.port = port
        self.bundle = None
        if bundle:
            from eenn.augment.bundle import load_bundle

            self.bundle = load_bundle(bundle)
        if project is None and port.startswith("virtual:"):
            project = port.partition(":")[2]
        if project is None:
            if self.bundle is None:
                raise pytest.UsageError("eenn_board needs --eenn-bundle DIR and/or --eenn-project DIR")
            project = find_project(Path(bundle), self.bundle.hash)
        self.project = Path(project)
        self.manifest = load_manifest(self.project)
        if self.bundle is not None:
            try:
                check_same_bundle(self.project, self.manifest.bundle_hash, bundle, self.bundle.hash)
            except EennError as exc:
                raise pytest.UsageError(str(exc)) from exc
        target, self._vport = resolve_port(port, self.project)
        self.client = BoardClient(target, expected_hash=self.manifest.bundle_hash, timeout=timeout)
        self.info = self.client.open()

    def quantize(self, x):
        """The int8 bytes the board gets for one float sample."""
        from eenn.hil.run import quantized_inputs

        return quantized_inputs(self.manifest, [x])[0]

    def infer(self, x):
        """One float sample (model input shape) → `eenn.hil.client.InferResult`."""
        return self.infer_bytes(self.quantize(x))

    def infer_bytes(self, data: bytes):
        res, _attempts = self.client.infer_sample(data)
        return res

    def test_data(self):
        """(x, y) of the bundle's test split."""
        import numpy as np

        if self.bundle is None:
            raise pytest.UsageError("test_data() needs --eenn-bundle")
        with np.load(self.bundle.path / "test.npz") as d:
            return d["x"], d["y"]

    def run(self, out: str | Path, *, data: str | Path | None = None, limit: int | None = None) -> dict:
        """A whole `eenn hil run` into session directory `out`; returns its summary.json content."""
        from eenn.hil.run import RunOptions, run

        self.client.close()  # one user of the port at a time
        try:
            port = self._vport.path if self._vport is not None else self.port
            res = run(RunOptions(port=port, out=Path(out), bundle=self.bundle.path if self.bundle else None,
                                 project=self.project, data=Path(data) if data else None, limit=limit,
                                 timeout=self.client.timeout, progress=False))
        finally:
            self.client.open()
        return res.summary.document

    def close(self) -> None:
        self.client.close()
        if self._vport is not None:
            self._vport.close()


@pytest.fixture(scope="session")
def eenn_board(request: pytest.FixtureRequest):
    """The board given by --eenn-port, checked to run --eenn-bundle's solution; skips without a port."""
    cfg = request.config
    port = cfg.getoption("--eenn-port")
    if not port:
        pytest.skip("no board: pass --eenn-port PORT (or 'virtual') and --eenn-bundle DIR")
    from eenn.errors import EennError

    try:
        board = EennBoard(port, cfg.getoption("--eenn-bundle"), cfg.getoption("--eenn-project"),
                          cfg.getoption("--eenn-timeout"))
    except EennError as exc:
        pytest.fail(f"eenn_board: {exc}", pytrace=False)
    yield board
    board.close()
