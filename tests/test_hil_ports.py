"""Port discovery: KitProg3 (USB vendor 0x04B4) marked and listed first."""
from __future__ import annotations

from serial.tools.list_ports_common import ListPortInfo

from eenn.hil.ports import format_ports, list_ports


def _port(device, vid=None, pid=None, sn=None, desc="n/a"):
    p = ListPortInfo(device, skip_link_detection=True)
    p.vid, p.pid, p.serial_number, p.description = vid, pid, sn, desc
    return p


def test_kitprog3_is_marked_and_first():
    ports = list_ports(lambda: [_port("/dev/ttyS0"), _port("/dev/ttyUSB0", 0x0403, 0x6001, "FT1"),
                                _port("/dev/ttyACM0", 0x04B4, 0xF155, "0B0B0F9C01139400", "KitProg3 USB-UART")])
    assert [p.device for p in ports] == ["/dev/ttyACM0", "/dev/ttyS0", "/dev/ttyUSB0"]
    assert [p.kitprog3 for p in ports] == [True, False, False]
    text = format_ports(ports)
    first = text.splitlines()[0]
    assert first.startswith("/dev/ttyACM0") and "04b4:f155" in first and "KitProg3" in first
    assert "serial 0B0B0F9C01139400" in first
    assert "1 KitProg3 probe(s)" in text
    assert "KitProg3" not in text.splitlines()[2]  # the FTDI adapter is not marked


def test_no_ports_says_what_to_check():
    assert "dialout" in format_ports(list_ports(lambda: []))
