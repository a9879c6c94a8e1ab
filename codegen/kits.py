"""The PSoC 6 kits `eenn generate` supports, as facts taken from their BSPs.

Memory figures come from each BSP's GCC_ARM linker scripts (`COMPONENT_CM0P/TOOLCHAIN_GCC_ARM`
and `COMPONENT_CM4/TOOLCHAIN_GCC_ARM`, BSP 4.x/5.x): flash at 0x10000000, SRAM at 0x08000000,
the last 2 KB of SRAM reserved for the system (the CM4 `ram` region of the BSP stops there).
Pins come from the BSP's `design.modus` (KitProg3 USB-UART = `CYBSP_DEBUG_UART_RX/TX`).
Nothing else in the generator knows a kit: `codegen/memory.py` splits these regions between the
cores, the templates render what these objects carry.
"""
from __future__ import annotations

from dataclasses import dataclass

from eenn.errors import EennError

FLASH_BASE = 0x10000000
SRAM_BASE = 0x08000000
SRAM_SYSTEM_RESERVED = 0x800  # top 2 KB of SRAM: system use (BSP linker scripts, CM4 ram region)
FLASH_ROW = 0x200  # flash row size (the `__cy_memory_0_row_size` of the BSP scripts)


@dataclass(frozen=True)
class Pin:
    port: int
    pin: int

    @property
    def c_port(self) -> str:
        return f"GPIO_PRT{self.port}"


@dataclass(frozen=True)
class Kit:
    name: str  # the ModusToolbox TARGET, e.g. "CY8CKIT-062S2-43012"
    device: str  # MPN of the PSoC 6 on it
    die: str  # PSoC6A2M, PSoC6ABLE2 (device family: 2 MB / 1 MB flash parts)
    flash_bytes: int
    sram_bytes: int
    bsp_version: str  # the `latest-vN.X` line of the BSP's .mtb dependency
    # HIL UART (KitProg3 bridge): SCB block, its RX/TX pins
    uart_scb: int
    uart_rx: Pin
    uart_tx: Pin
    timestamp_pin: Pin | None  # open-drain timestamp output for the energy monitor (None: none)
    description: str = ""

    @property
    def flash_base(self) -> int:
        return FLASH_BASE

    @property
    def sram_base(self) -> int:
        return SRAM_BASE

    @property
    def sram_usable(self) -> int:
        """SRAM the cores may use (the system's top 2 KB excluded)."""
        return self.sram_bytes - SRAM_SYSTEM_RESERVED

    @property
    def macro(self) -> str:
        """The kit as a C identifier fragment: CY8CKIT_062S2_43012."""
        return self.name.replace("-", "_")


KITS: dict[str, Kit] = {
    k.name: k
    for k in (
        Kit(name="CY8CKIT-062S2-43012", device="CY8C624ABZI-S2D44", die="PSoC6A2M", flash_bytes=0x200000,
            sram_bytes=0x100000, bsp_version="latest-v4.X", uart_scb=5, uart_rx=Pin(5, 0), uart_tx=Pin(5, 1),
            timestamp_pin=Pin(5, 7),
            description="PSoC 62S2 Wi-Fi BT Pioneer Kit (2 MB flash, 1 MB SRAM); timestamp on Arduino D7 (P5_7)"),
        Kit(name="CY8CPROTO-062-4343W", device="CY8C624ABZI-S2D44", die="PSoC6A2M", flash_bytes=0x200000,
            sram_bytes=0x100000, bsp_version="latest-v4.X", uart_scb=5, uart_rx=Pin(5, 0), uart_tx=Pin(5, 1),
            timestamp_pin=None,
            description="PSoC 6 Wi-Fi BT Prototyping Kit (2 MB flash, 1 MB SRAM); no Arduino header: "
                        "no timestamp pin by default"),
        Kit(name="CY8CKIT-062-BLE", device="CY8C6347BZI-BLD53", die="PSoC6ABLE2", flash_bytes=0x100000,
            sram_bytes=0x48000, bsp_version="latest-v4.X", uart_scb=5, uart_rx=Pin(5, 0), uart_tx=Pin(5, 1),
            timestamp_pin=Pin(0, 2),
            description="PSoC 6 BLE Pioneer Kit (1 MB flash, 288 KB SRAM); timestamp on Arduino D7 (P0_2)"),
    )
}


def get_kit(name: str) -> Kit:
    try:
        return KITS[name]
    except KeyError:
        raise EennError(f"unknown kit '{name}': supported kits are {', '.join(sorted(KITS))}") from None
