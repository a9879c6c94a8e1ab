"""How a kit's flash and SRAM are split between the CM0+ and the CM4: computed here, once.

The BSP's default linker scripts give the CM0+ 8 KB of flash and RAM (room for the prebuilt
sleep image). A generated project ships its own GCC_ARM linker scripts whose regions are the
numbers below; the templates only print them.

    flash  0x10000000 ┬ CM0+ image: code + the models of its stages    (FLASH_CM0P_SIZE)
                      ┴ CM4 image from CY_CORTEX_M4_APPL_ADDR = flash base + FLASH_CM0P_SIZE
    SRAM   0x08000000 ┬ CM0+ ram: .data/.bss (its arena, input buffer), heap, stack
                      ├ shared (.cy_sharedmem, NOLOAD): mailbox, feature map(s), scores,
                      │   the input buffer when stage 0 runs on the CM4, IPC semaphore words
                      ├ CM4 ram: .data/.bss (its arena), heap, stack
                      ┴ top 2 KB reserved for the system

Each core holds the models of all its stages (summed) and one tensor arena, the largest of its
stages' (codegen/cores.py). Two feature-map buffers (ping-pong) when there are more than two
stages, else one. A core that runs no stage links no TFLite Micro: its code budget is
`CODE_BUDGET_NO_TFLM`.

Code and static data are not known before the project is compiled, so they are budgets
(`CODE_BUDGET`, `DATA_BUDGET`): what TFLite Micro (interpreter + the kernels used), the PDL and
the eenn runtime take at -Os, with room to spare (see the README of a generated project for how
they were measured). The CM0+ region is made just large enough for its budget and stage 0; the
CM4 gets everything else and must hold its own budget and stage 1, or generation fails with the
figures.
"""
from __future__ import annotations

from dataclasses import dataclass

from eenn.codegen.kits import Kit
from eenn.errors import EennError

FLASH_ALIGN = 0x2000  # CM0+/CM4 flash boundary: 8 KB steps (BSP default FLASH_CM0P_SIZE granularity)
RAM_ALIGN = 0x400  # region boundaries in SRAM: 1 KB
MODEL_ALIGN = 16  # alignas(16) model arrays

# Budgets for what is not the model (bytes). Code: TFLite Micro interpreter + used kernels +
# flatbuffers + PDL + eenn runtime, -Os. Data: .data/.bss of the same (interpreter object,
# resolver, UART ring, PDL state), without the arena and the I/O buffers which are counted apart.
CODE_BUDGET = {"cm0p": 160 * 1024, "cm4": 256 * 1024}
DATA_BUDGET = {"cm0p": 6 * 1024, "cm4": 8 * 1024}
# A core without a stage: PDL start-up, UART/IPC drivers, the eenn runtime and protocol, -Os (the
# runtime, protocol and config link to about 17 KB of .text for the CM0+ with arm-none-eabi-gcc -Os and
# newlib-nano; the PDL drivers and start-up come on top).
CODE_BUDGET_NO_TFLM = {"cm0p": 48 * 1024, "cm4": 48 * 1024}
STACK_SIZE = {"cm0p": 0x2000, "cm4": 0x2000}
HEAP_SIZE = {"cm0p": 0x400, "cm4": 0x1000}

# ee_mailbox_t on a 32-bit target: 10 words, 2 pointers, cap, pointer, cap, pointer, cap
# (17 · 4 = 68), then ticks[4] as uint64 aligned to 8 → 72 + 32 = 104 bytes,
# + flags, the op-table pointer and stage_ticks[8] (uint64): 176 bytes; 256 leaves room.
# The per-operator table (ee_opprof.h ee_op_table_t: 2 words + 96 records of 2 words, 24 chars and
# a uint64 = 8 + 96 · 40) sits beside it and is counted with it.
OP_TABLE_BYTES = 8 + 96 * 40
MAILBOX_BYTES = 256 + OP_TABLE_BYTES
# The IPC semaphore flags (CY_IPC_SEMA_COUNT = 128 bits, 16 B) and what the PDL itself puts in
# .cy_sharedmem on the CM0+ (CY_SECTION_SHAREDMEM: cy_ipc_sema.c's control data, 8 B; cy_flash.c's
# notify message, 4 B; seen in a linked DS-CNN image), rounded up to 16.
IPC_SEMA_BYTES = 16 + 16


def align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


@dataclass(frozen=True)
class Region:
    origin: int
    size: int

    @property
    def end(self) -> int:
        return self.origin + self.size

    def to_dict(self) -> dict:
        return {"origin": self.origin, "size": self.size, "origin_hex": f"0x{self.origin:08X}",
                "size_hex": f"0x{self.size:X}"}


@dataclass(frozen=True)
class CoreLayout:
    name: str  # cm0p / cm4
    flash: Region
    ram: Region
    stack_bytes: int
    heap_bytes: int
    # what must fit (bytes)
    code_budget: int
    model_bytes: int
    arena_bytes: int
    io_bytes: int  # private buffers (the input buffer on core 0)
    data_budget: int
    stages_text: str = "stage 0"  # which stages it runs, for messages ("stage 1", "stages 0, 1", "no stage")

    @property
    def flash_need(self) -> int:
        return self.code_budget + align_up(self.model_bytes, MODEL_ALIGN)

    @property
    def ram_need(self) -> int:
        return self.data_budget + self.arena_bytes + self.io_bytes + self.heap_bytes + self.stack_bytes

    def to_dict(self) -> dict:
        return {"flash": self.flash.to_dict(), "ram": self.ram.to_dict(), "stack_bytes": self.stack_bytes,
                "heap_bytes": self.heap_bytes, "code_budget": self.code_budget, "model_bytes": self.model_bytes,
                "arena_bytes": self.arena_bytes, "io_bytes": self.io_bytes, "data_budget": self.data_budget,
                "flash_need": self.flash_need, "ram_need": self.ram_need}


@dataclass(frozen=True)
class SharedLayout:
    region: Region
    mailbox_bytes: int
    fm_bytes: int  # each feature-map buffer
    fm_buffers: int
    scores_bytes: int
    sema_bytes: int
    input_bytes: int = 0  # the input buffer, here when stage 0 runs off the CM0+

    @property
    def need(self) -> int:
        return (self.mailbox_bytes + self.fm_buffers * align_up(self.fm_bytes, 4) + align_up(self.scores_bytes, 4)
                + align_up(self.input_bytes, 4) + self.sema_bytes)

    def to_dict(self) -> dict:
        d = {**self.region.to_dict(), "mailbox_bytes": self.mailbox_bytes, "fm_bytes": self.fm_bytes,
             "fm_buffers": self.fm_buffers, "scores_bytes": self.scores_bytes, "sema_bytes": self.sema_bytes,
             "need": self.need, "section": ".cy_sharedmem"}
        if self.input_bytes:
            d["input_bytes"] = self.input_bytes
        return d


@dataclass(frozen=True)
class MemoryLayout:
    kit: str
    flash: Region
    sram: Region  # usable SRAM (system reserve excluded)
    cm0p: CoreLayout
    shared: SharedLayout
    cm4: CoreLayout

    @property
    def flash_cm0p_size(self) -> int:
        return self.cm0p.flash.size

    @property
    def cm4_appl_addr(self) -> int:
        return self.cm4.flash.origin

    def to_dict(self) -> dict:
        return {"kit": self.kit, "flash": self.flash.to_dict(), "sram": self.sram.to_dict(),
                "cm0p": self.cm0p.to_dict(), "shared": self.shared.to_dict(), "cm4": self.cm4.to_dict(),
                "flash_cm0p_size": self.flash_cm0p_size, "cy_cortex_m4_appl_addr": f"0x{self.cm4_appl_addr:08X}"}

    def check(self) -> None:
        """The invariants the linker scripts rely on (also asserted by tests)."""
        regions = [("cm0p ram", self.cm0p.ram), ("shared", self.shared.region), ("cm4 ram", self.cm4.ram)]
        for (na, a), (nb, b) in zip(regions, regions[1:]):
            assert a.end == b.origin, f"{na} and {nb} are not adjacent"
        assert self.cm0p.ram.origin == self.sram.origin and self.cm4.ram.end == self.sram.end
        assert self.cm0p.flash.origin == self.flash.origin and self.cm0p.flash.end == self.cm4.flash.origin
        assert self.cm4.flash.end == self.flash.end
        assert self.cm4_appl_addr == self.flash.origin + self.flash_cm0p_size


def _fail(kit: Kit, what: str, layout_lines: list[str]) -> EennError:
    return EennError(f"the model does not fit {kit.name}: {what}\n  " + "\n  ".join(layout_lines))


def compute_layout(kit: Kit, *, model_bytes: tuple[int, int], arena_bytes: tuple[int, int], input_len: int,
                   fm_len: int, n_scores: int, fm_buffers: int = 1, input_shared: bool = False,
                   tflm: tuple[bool, bool] = (True, True),
                   stages_text: tuple[str, str] = ("stage 0", "stage 1")) -> MemoryLayout:
    """Split `kit`'s memories between the CM0+ and the CM4: per core, the summed models of its
    stages and its arena (`model_bytes`, `arena_bytes`); `fm_buffers` shared feature-map buffers of
    `fm_len` bytes; the input buffer in the shared region when `input_shared` (stage 0 on the
    CM4); `tflm[c]` False for a core that runs no stage (no TFLite Micro linked)."""
    flash = Region(kit.flash_base, kit.flash_bytes)
    sram = Region(kit.sram_base, kit.sram_usable)
    io0 = 0 if input_shared else align_up(input_len, 4)
    code = {c: (CODE_BUDGET if t else CODE_BUDGET_NO_TFLM)[c] for c, t in zip(("cm0p", "cm4"), tflm)}

    cm0p_flash_size = align_up(code["cm0p"] + align_up(model_bytes[0], MODEL_ALIGN), FLASH_ALIGN)
    cm0p_ram_need = DATA_BUDGET["cm0p"] + arena_bytes[0] + io0 + HEAP_SIZE["cm0p"] + STACK_SIZE["cm0p"]
    cm0p_ram_size = align_up(cm0p_ram_need, RAM_ALIGN)
    shared_layout_input = input_len if input_shared else 0
    shared_need = (MAILBOX_BYTES + fm_buffers * align_up(fm_len, 4) + align_up(n_scores, 4)
                   + align_up(shared_layout_input, 4) + IPC_SEMA_BYTES)
    shared_size = align_up(shared_need, RAM_ALIGN)

    cm0p_flash = Region(flash.origin, cm0p_flash_size)
    cm0p_ram = Region(sram.origin, cm0p_ram_size)
    shared = Region(cm0p_ram.end, shared_size)
    cm4_flash = Region(cm0p_flash.end, max(flash.end - cm0p_flash.end, 0))
    cm4_ram = Region(shared.end, max(sram.end - shared.end, 0))

    cm0p = CoreLayout("cm0p", cm0p_flash, cm0p_ram, STACK_SIZE["cm0p"], HEAP_SIZE["cm0p"], code["cm0p"],
                      model_bytes[0], arena_bytes[0], io0, DATA_BUDGET["cm0p"], stages_text[0])
    cm4 = CoreLayout("cm4", cm4_flash, cm4_ram, STACK_SIZE["cm4"], HEAP_SIZE["cm4"], code["cm4"],
                     model_bytes[1], arena_bytes[1], 0, DATA_BUDGET["cm4"], stages_text[1])
    layout = MemoryLayout(kit=kit.name, flash=flash, sram=sram, cm0p=cm0p,
                          shared=SharedLayout(shared, MAILBOX_BYTES, fm_len, fm_buffers, n_scores, IPC_SEMA_BYTES,
                                              shared_layout_input), cm4=cm4)

    lines = describe(layout)
    if cm0p_flash.end > flash.end or cm0p.flash_need + cm4.flash_need > flash.size:
        raise _fail(kit, f"flash: CM0+ needs {cm0p.flash_need} B ({stages_text[0]} model {model_bytes[0]} B + code "
                         f"{cm0p.code_budget} B), CM4 needs {cm4.flash_need} B ({stages_text[1]} model {model_bytes[1]} B + "
                         f"code {cm4.code_budget} B); the kit has {flash.size} B", lines)
    if shared.end > sram.end or cm0p.ram_need + shared_need + cm4.ram_need > sram.size:
        raise _fail(kit, f"SRAM: CM0+ needs {cm0p.ram_need} B ({stages_text[0]} arena {arena_bytes[0]} B, input {io0} B, "
                         f"data {cm0p.data_budget} B, heap + stack {cm0p.heap_bytes + cm0p.stack_bytes} B), shared "
                         f"buffers {shared_need} B, CM4 needs {cm4.ram_need} B ({stages_text[1]} arena {arena_bytes[1]} B); "
                         f"the kit has {sram.size} B usable", lines)
    if cm4.flash_need > cm4_flash.size:
        raise _fail(kit, f"CM4 flash: needs {cm4.flash_need} B, {cm4_flash.size} B left after the CM0+", lines)
    if cm4.ram_need > cm4_ram.size:
        raise _fail(kit, f"CM4 SRAM: needs {cm4.ram_need} B, {cm4_ram.size} B left after the CM0+ and the "
                         "shared buffers", lines)
    layout.check()
    return layout


def describe(layout: MemoryLayout) -> list[str]:
    """The memory map, one line per region (printed by `eenn generate`)."""
    def row(name: str, r: Region, need: int, what: str) -> str:
        return (f"{name:<10} 0x{r.origin:08X}-0x{r.end:08X} {r.size // 1024:>5} KB  need {need:>8} B  {what}")

    c0, c4, sh = layout.cm0p, layout.cm4, layout.shared
    return [
        row("cm0p flash", c0.flash, c0.flash_need, f"code budget {c0.code_budget} + {c0.stages_text} model {c0.model_bytes}"),
        row("cm4 flash", c4.flash, c4.flash_need,
            f"code budget {c4.code_budget} + {c4.stages_text} model {c4.model_bytes}; "
            f"CY_CORTEX_M4_APPL_ADDR=0x{layout.cm4_appl_addr:08X}"),
        row("cm0p ram", c0.ram, c0.ram_need,
            f"arena {c0.arena_bytes} + input {c0.io_bytes} + data {c0.data_budget} + heap {c0.heap_bytes} "
            f"+ stack {c0.stack_bytes}"),
        row("shared", sh.region, sh.need,
            f".cy_sharedmem: mailbox {sh.mailbox_bytes} + feature map {sh.fm_bytes}"
            + (f" x {sh.fm_buffers}" if sh.fm_buffers > 1 else "") + f" + scores {sh.scores_bytes} "
            + (f"+ input {sh.input_bytes} " if sh.input_bytes else "") + f"+ IPC semaphores {sh.sema_bytes}"),
        row("cm4 ram", c4.ram, c4.ram_need,
            f"arena {c4.arena_bytes} + data {c4.data_budget} + heap {c4.heap_bytes} + stack {c4.stack_bytes}"),
    ]
