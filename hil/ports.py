"""Serial port discovery: `eenn hil ports` lists ports and marks KitProg3 probes.

KitProg3 (the on-board programmer of the PSoC 6 kits) enumerates with Cypress/Infineon's USB
vendor ID 0x04B4; its USB-UART bridge is the port the HIL protocol runs on, and its USB serial
number is what `eenn flash --probe-serial` and ModusToolbox's `MTB_PROBE_SERIAL` take.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

INFINEON_VID = 0x04B4


@dataclass(frozen=True)
class PortInfo:
    device: str
    description: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    manufacturer: str | None
    product: str | None
    interface: str | None

    @property
    def kitprog3(self) -> bool:
        return self.vid == INFINEON_VID

    def to_dict(self) -> dict:
        return {**asdict(self), "kitprog3": self.kitprog3}


def list_ports(comports=None) -> list[PortInfo]:
    """Serial ports, KitProg3 first (then by device name)."""
    if comports is None:
        from serial.tools.list_ports import comports
    out = []
    for p in comports():
        out.append(PortInfo(device=p.device, description=p.description or "", vid=p.vid, pid=p.pid,
                            serial_number=p.serial_number, manufacturer=p.manufacturer, product=p.product,
                            interface=getattr(p, "interface", None)))
    return sorted(out, key=lambda p: (not p.kitprog3, p.device))


def format_ports(ports: list[PortInfo]) -> str:
    if not ports:
        return ("no serial ports found. Connect the kit's KitProg3 USB port; on Linux, check that you are in the "
                "'dialout' group and that the udev rules of ModusToolbox (or fw-loader) are installed.")
    lines = []
    for p in ports:
        ids = f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else "-"
        mark = "KitProg3" if p.kitprog3 else ""
        sn = f" serial {p.serial_number}" if p.serial_number else ""
        lines.append(f"{p.device:<16} {ids:<10} {mark:<9} {p.description}{sn}".rstrip())
    n = sum(p.kitprog3 for p in ports)
    lines.append(f"{n} KitProg3 probe(s): use the port with `eenn hil run --port`, the serial with "
                 "`eenn flash --probe-serial`" if n else "no KitProg3 probe (USB vendor 0x04B4) among them")
    return "\n".join(lines)
