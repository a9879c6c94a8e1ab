"""Run the MLPerf Tiny runner (mlcommons/tiny `benchmark/runner`, unmodified) against a virtual board.

The runner finds its DUT by USB vendor/product id (`devices.yaml`, matched against pyserial's
port list), which a pseudo-terminal does not have, and it also scans USB with pyusb, which
fails outright where libusb is missing (CI containers). This launcher runs the runner's
`main.py` in this process with the virtual board's port listed as a KitProg3 port (the ids of
the `devices.yaml` entry in docs/hil.md) and, only when pyusb has no backend, with that USB
scan finding nothing. Nothing of the runner is changed or copied; see docs/hil.md.
"""
from __future__ import annotations

import os
import runpy
import sys
from contextlib import contextmanager
from pathlib import Path

from eenn.errors import EennError

KITPROG3_VID = 0x04B4
KITPROG3_PID = 0xF155  # KitProg3 CMSIS-DAP bulk, its default mode (0xF154 HID, 0xF166 bulk with two UARTs)


@contextmanager
def listed_as_kitprog3(port: str, vid: int = KITPROG3_VID, pid: int = KITPROG3_PID):
    """pyserial's comports() also lists `port` with KitProg3's USB ids while the block runs."""
    import serial.tools.list_ports as lp
    from serial.tools.list_ports_common import ListPortInfo

    real = lp.comports

    def comports(include_links: bool = False):
        info = ListPortInfo(port, skip_link_detection=True)
        info.vid, info.pid = vid, pid
        info.serial_number, info.manufacturer = "EENNVIRTUAL", "eenn"
        info.description = info.product = "eenn virtual board (KitProg3 ids)"
        return [*real(include_links), info]

    lp.comports = comports
    try:
        yield
    finally:
        lp.comports = real


@contextmanager
def usb_scan_without_backend():
    """pyusb's usb.core.find() returns no device instead of raising NoBackendError (no libusb)."""
    try:
        import usb.core
    except ImportError:
        yield  # the runner itself will say that it needs pyusb
        return
    try:
        usb.core.find(find_all=True)
        yield
        return
    except usb.core.NoBackendError:
        pass
    real = usb.core.find

    def find(*args, find_all: bool = False, **kwargs):
        return iter(()) if find_all else None

    usb.core.find = find
    try:
        yield
    finally:
        usb.core.find = real


def run_runner(runner_dir: str | Path, port: str, argv: list[str]) -> int:
    """The runner's main.py with `argv`, in `runner_dir` (its sessions/ and default yaml files are there)."""
    runner = Path(runner_dir).resolve()
    main = runner / "main.py"
    if not main.is_file():
        raise EennError(f"{main} not found: --runner must be mlcommons/tiny's benchmark/runner directory")
    old_argv, old_path, old_cwd = sys.argv, list(sys.path), os.getcwd()
    sys.argv = [str(main), *argv]
    sys.path.insert(0, str(runner))
    os.chdir(runner)
    try:
        with listed_as_kitprog3(port), usb_scan_without_backend():
            runpy.run_path(str(main), run_name="__main__")
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
        os.chdir(old_cwd)
