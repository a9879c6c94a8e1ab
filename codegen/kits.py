"""The PSoC 6 kits `eenn generate` supports, as facts taken from their BSPs.

Memory figures come from each BSP's GCC_ARM linker scripts (`COMPONENT_CM0P/TOOLCHAIN_GCC_ARM`
and `COMPONENT_CM4/TOOLCHAIN_GCC_ARM`, BSP 4.x/5.x): flash at 0x10000000, SRAM at 0x08000000,
the last 2 KB of SRAM reserved for the system (the CM4 `ram` region of the BSP stops there).
Pins come from the BSP's `design.modus` (KitProg3 USB-UART = `CYBSP_DEBUG_UART_RX/TX`), and so
does the BSP's clock set-up: all three BSPs drive CLK_HF0 from the FLL (path 0, from the 8 MHz
IMO) at 100 MHz with the fast, peri and slow dividers at 1, so both the CM4 (CLK_FAST) and the
CM0+ (CLK_SLOW) run at 100 MHz; PLL0 (path 1) runs at 48 MHz and feeds no CLK_HF.
Clock plans: the hardware profile (`augment/profiles/psoc6.toml`, `[[clock_plan]]`) owns the plan
table, name and core clocks, and the search runs on it; a kit lists here how its CM0+ start-up
code realises each plan it can run (`ClockTree`: the registers), from which the core clocks
follow. `eenn generate` takes the plan the bundle was searched for, refuses it when the kit has
no tree of that name or the tree's clocks differ from the bundle's, and writes the tree's clocks
as the stages' `tick_hz` (the firmware refuses to start when `SystemCoreClock` differs).
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


IMO_HZ = 8_000_000  # the internal main oscillator, the source of every clock path here
CLK_PERI_MAX_HZ = 100_000_000  # CLK_PERI and CLK_SLOW (the CM0+) limit (datasheet, LP mode)
CLK_HF0_MAX_HZ = 150_000_000  # CLK_HF0 / CLK_FAST (the CM4) limit (datasheet, LP mode)
FLL_MAX_HZ = 100_000_000  # Cy_SysClk_FllConfigure: output 24 ... 100 MHz
BSP_DEFAULT = "bsp-default"


@dataclass(frozen=True)
class ClockTree:
    """How the CM0+ sets one clock plan at start-up, on top of the BSP's configuration.

    `source` "bsp": the BSP's own set-up is the plan, no clock call is generated. "pll": CLK_HF0
    moves to the PLL on clock path `pll_path` (fed by the IMO), `clk_hf0_hz` from it."""
    plan: str
    clk_hf0_hz: int
    source: str = "bsp"  # "bsp" | "pll"
    pll_path: int = 0  # clock path of the PLL (CAT1A: path 0 is the FLL, paths 1..n the PLLs)
    peri_div: int = 1  # CLK_PERI = CLK_HF0 / peri_div
    slow_div: int = 1  # CLK_SLOW = CLK_PERI / slow_div (the CM0+)
    fast_div: int = 1  # CLK_FAST = CLK_HF0 / fast_div (the CM4)

    @property
    def clk_peri_hz(self) -> int:
        return self.clk_hf0_hz // self.peri_div

    def core_clock_hz(self, core: str) -> int:
        """SystemCoreClock of 'cortex-m0plus' (CLK_SLOW) or 'cortex-m4' (CLK_FAST) under this tree."""
        clocks = {"cortex-m0plus": self.clk_peri_hz // self.slow_div, "cortex-m4": self.clk_hf0_hz // self.fast_div}
        if core not in clocks:
            raise EennError(f"clock plan {self.plan}: no {core} core: expected one of {', '.join(clocks)}")
        return clocks[core]

    def problems(self) -> list[str]:
        """What makes this tree impossible on a PSoC 6 (empty: none)."""
        out = []
        if self.clk_hf0_hz > CLK_HF0_MAX_HZ:
            out.append(f"CLK_HF0 {self.clk_hf0_hz} Hz > {CLK_HF0_MAX_HZ}")
        if self.clk_peri_hz > CLK_PERI_MAX_HZ:
            out.append(f"CLK_PERI {self.clk_peri_hz} Hz > {CLK_PERI_MAX_HZ}")
        for name, div in (("peri", self.peri_div), ("slow", self.slow_div), ("fast", self.fast_div)):
            if not 1 <= div <= 256:
                out.append(f"{name} divider {div}: expected 1 ... 256")
        for name, hz, div in (("CLK_PERI", self.clk_hf0_hz, self.peri_div),
                              ("CLK_SLOW", self.clk_peri_hz, self.slow_div),
                              ("CLK_FAST", self.clk_hf0_hz, self.fast_div)):
            if div >= 1 and hz % div:
                out.append(f"{name}: {hz} Hz / {div} is not a whole number of Hz")
        if self.source == "bsp" and (self.clk_hf0_hz, self.peri_div, self.slow_div, self.fast_div) != (FLL_MAX_HZ, 1, 1, 1):
            out.append("source 'bsp' is the BSP's own set-up: CLK_HF0 100 MHz, dividers 1")
        if self.source == "pll" and self.pll_path < 1:
            out.append(f"pll_path {self.pll_path}: expected a PLL's clock path (1 or more)")
        if self.source not in ("bsp", "pll"):
            out.append(f"source {self.source!r}: expected 'bsp' or 'pll'")
        return out

    @property
    def wait_states_mhz(self) -> int:
        """CLK_HF0 in MHz, as Cy_SysLib_SetWaitStates takes it (rounded up)."""
        return -(-self.clk_hf0_hz // 1_000_000)


_BSP_TREE = ClockTree(plan=BSP_DEFAULT, clk_hf0_hz=100_000_000)
# CLK_HF0 150 MHz: above the FLL's range, so from PLL1 (path 2; PLL0 on path 1 keeps the BSP's
# 48 MHz); CLK_PERI must stay at or below 100 MHz: divider 2, so the CM0+ (CLK_SLOW) runs 75 MHz.
_CM4_150_TREE = ClockTree(plan="cm4-150", clk_hf0_hz=150_000_000, source="pll", pll_path=2, peri_div=2)


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
    clock_trees: tuple[ClockTree, ...] = (_BSP_TREE,)  # the clock plans its project can run

    def plan_names(self) -> list[str]:
        return [t.plan for t in self.clock_trees]

    def clock_tree(self, plan: str) -> ClockTree:
        for t in self.clock_trees:
            if t.plan == plan:
                return t
        raise EennError(f"kit {self.name} cannot run clock plan '{plan}': its plans are {', '.join(self.plan_names())}")

    def core_clock_hz(self, core: str, plan: str = BSP_DEFAULT) -> int:
        """SystemCoreClock of a core ('cortex-m0plus' or 'cortex-m4') under clock plan `plan`."""
        return self.clock_tree(plan).core_clock_hz(core)

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


KITS: dict[str, Kit] = {
    k.name: k
    for k in (
        Kit(name="CY8CKIT-062S2-43012", device="CY8C624ABZI-S2D44", die="PSoC6A2M", flash_bytes=0x200000,
            sram_bytes=0x100000, bsp_version="latest-v4.X", uart_scb=5, uart_rx=Pin(5, 0), uart_tx=Pin(5, 1),
            timestamp_pin=Pin(5, 7), clock_trees=(_BSP_TREE, _CM4_150_TREE),
            description="PSoC 62S2 Wi-Fi BT Pioneer Kit (2 MB flash, 1 MB SRAM); timestamp on Arduino D7 (P5_7)"),
        Kit(name="CY8CPROTO-062-4343W", device="CY8C624ABZI-S2D44", die="PSoC6A2M", flash_bytes=0x200000,
            sram_bytes=0x100000, bsp_version="latest-v4.X", uart_scb=5, uart_rx=Pin(5, 0), uart_tx=Pin(5, 1),
            timestamp_pin=None, clock_trees=(_BSP_TREE, _CM4_150_TREE),
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
