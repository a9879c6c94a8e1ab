"""`eenn hil virtual` as a user runs it: a process that prints its pty, serves, and stops on signals."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import serial
from click.testing import CliRunner

from eenn.cli import main
from tests.int8_project import int8_project

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")


def _start(project, *extra):
    proc = subprocess.Popen(
        [sys.executable, "-c", "from eenn.cli import main; main()", "hil", "virtual", str(project), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("serving"):
            return proc, lines
    proc.kill()
    raise AssertionError(f"no 'serving' line: {lines} {proc.stderr.read()}")


def _ask(port, command: bytes) -> bytes:
    with serial.serial_for_url(port, baudrate=115200, timeout=10) as ser:
        ser.write(b"%sync-x%")
        ser.read_until(b"e-[Unknown command: sync-x]\r\nm-ready\r\n")
        ser.write(command)
        return ser.read_until(b"m-ready\r\n")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_pty_and_socket_and_exits_cleanly_on_signals(tmp_path_factory, sig):
    project = int8_project(tmp_path_factory, "plain")
    proc, lines = _start(project, "--socket", "0")
    try:
        pty = next(line.removeprefix("pty: ") for line in lines if line.startswith("pty: "))
        url = next(line.removeprefix("socket: ") for line in lines if line.startswith("socket: "))
        assert pty.startswith("/dev/")
        assert url.startswith("socket://127.0.0.1:")
        assert "cost model" in lines[0]
        assert _ask(pty, b"name%") == b"m-name-dut-[eenn]\r\nm-ready\r\n"
        assert _ask(url, b"name%") == b"m-name-dut-[eenn]\r\nm-ready\r\n"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out
    assert "Traceback" not in err


def test_cli_refuses_a_bundle_with_the_command_to_run(tmp_path):
    (tmp_path / "solution.json").write_text("{}")
    res = CliRunner().invoke(main, ["hil", "virtual", str(tmp_path)])
    assert res.exit_code == 2
    assert "solution bundle" in res.output and f"eenn generate {tmp_path}" in res.output


def test_cli_refuses_a_plain_directory(tmp_path):
    res = CliRunner().invoke(main, ["hil", "virtual", str(tmp_path)])
    assert res.exit_code == 2
    assert "eenn/project.json" in res.output
