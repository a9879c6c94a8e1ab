"""`eenn hil mlperf`: the MLPerf Tiny runner finds the virtual board by KitProg3's USB ids.

The real runner (mlcommons/tiny) is not part of this repository; a stand-in main.py does what
its DeviceManager does first (pyserial's port list, matched on VID/PID; `name%` on the match).
"""
from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from eenn.hil.mlperf import KITPROG3_PID, KITPROG3_VID, listed_as_kitprog3
from tests.int8_project import int8_project

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")

STAND_IN = textwrap.dedent("""
    import json, sys
    import serial
    from serial.tools import list_ports

    found = [p.device for p in list_ports.comports(True) if p.vid == 0x04B4 and p.pid == 0xF155]
    with serial.Serial(found[-1], 115200, timeout=5) as port:
        port.write(b"%sync-1%name%profile%")
        got = port.read_until(b"m-eenn-protocol")
    json.dump({"argv": sys.argv[1:], "found": found, "reply": got.decode()}, open("out.json", "w"))
    sys.exit(3)
""")


def test_runner_finds_the_virtual_board_as_a_kitprog3_port(tmp_path_factory, tmp_path):
    from eenn.hil.commands import hil

    project = int8_project(tmp_path_factory, "plain")
    (tmp_path / "main.py").write_text(STAND_IN)
    res = CliRunner().invoke(hil, ["mlperf", "--runner", str(tmp_path), "--port", f"virtual:{project}", "--",
                                   "--mode=p", "--device_list=devices.yaml"])
    assert res.exit_code == 3, res.output  # the runner's own exit status
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["argv"] == ["--mode=p", "--device_list=devices.yaml"]
    assert len(out["found"]) == 1
    assert "m-name-dut-[eenn]" in out["reply"] and "m-model-[eenn]" in out["reply"]


def test_the_port_list_is_restored():
    from serial.tools import list_ports

    before = [p.device for p in list_ports.comports()]
    with listed_as_kitprog3("/dev/pts/999"):
        ports = [p for p in list_ports.comports(True) if p.device == "/dev/pts/999"]
        assert [(p.vid, p.pid) for p in ports] == [(KITPROG3_VID, KITPROG3_PID)]
    assert [p.device for p in list_ports.comports()] == before
