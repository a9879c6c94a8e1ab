"""The generated ModusToolbox application: Makefiles and .mtb lines in Infineon's dual-CPU
layout, linker scripts whose memory map adds up, C sources that cross-compile for both cores,
and the memory-layout computation itself."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eenn.codegen import memory as mem
from eenn.codegen.kits import KITS, SRAM_SYSTEM_RESERVED, get_kit
from eenn.errors import EennError
from tests.conftest import missing_tool

KIT = "CY8CKIT-062S2-43012"


def make_vars(text: str) -> dict[str, str]:
    """NAME=value assignments of a Makefile, continuation lines joined."""
    text = text.replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Z_0-9]+)\s*(\+?=)\s*(.*)$", line)
        if m:
            name, op, value = m.groups()
            value = " ".join(value.split())
            out[name] = (out.get(name, "") + " " + value).strip() if op == "+=" else value
    return out


def test_application_makefiles_follow_the_dual_cpu_layout(digits_project):
    out = digits_project.out
    top = make_vars((out / "Makefile").read_text())
    assert top["MTB_TYPE"] == "APPLICATION" and top["MTB_PROJECTS"] == "proj_cm0p proj_cm4"
    assert "include common_app.mk" in (out / "Makefile").read_text()
    assert "$(CY_TOOLS_DIR)/make/application.mk" in (out / "Makefile").read_text()
    common = make_vars((out / "common.mk").read_text())
    assert common == {"MTB_TYPE": "PROJECT", "TARGET": KIT, "TOOLCHAIN": "GCC_ARM", "CONFIG": "Release"}
    assert "CY_TOOLS_DIR" in make_vars((out / "common_app.mk").read_text())

    cm0 = make_vars((out / "proj_cm0p/Makefile").read_text())
    assert cm0["CORE"] == "CM0P" and cm0["CORE_NAME"] == "CM0P_0" and cm0["APPNAME"] == "proj_cm0p"
    assert cm0["DISABLE_COMPONENTS"].split() == ["CM0P_SLEEP", "CM0P_SECURE", "CM0P_CRYPTO", "CM0P_BLESS"]
    defines = cm0["DEFINES"].split()
    appl = digits_project.layout.cm4_appl_addr
    assert f"CY_CORTEX_M4_APPL_ADDR=0x{appl:08X}" in defines
    assert {"CY_IPC_DEFAULT_CFG_DISABLE=1", "TF_LITE_STATIC_MEMORY"} <= set(defines)
    assert cm0["VFP_SELECT"] == ""
    assert cm0["LINKER_SCRIPT"] == f"../templates/TARGET_{KIT}/COMPONENT_CM0P/TOOLCHAIN_GCC_ARM/linker.ld"
    assert cm0["CY_GETLIBS_SHARED_NAME"] == "mtb_shared"

    cm4 = make_vars((out / "proj_cm4/Makefile").read_text())
    assert cm4["CORE"] == "CM4" and cm4["CORE_NAME"] == "CM4_0"
    assert {"ML_TFLM", "ML_INT8x8", "IFX_CMSIS_NN"} <= set(cm4["COMPONENTS"].split())
    # ml-tflite-micro's prebuilt library has no MicroPrintf (release variant): the headers must strip it too
    assert {"CY_IPC_DEFAULT_CFG_DISABLE=1", "TF_LITE_STATIC_MEMORY", "TF_LITE_STRIP_ERROR_STRINGS"} <= set(
        cm4["DEFINES"].split())
    assert cm4["VFP_SELECT"] == "hardfp"
    for mk in (cm0, cm4):
        for src in mk["SOURCES"].split():
            if "$(wildcard" not in src and not src.endswith(")"):
                assert (out / "proj_cm0p" / src).resolve().is_file(), src
        for inc in mk["INCLUDES"].split():
            if not inc.startswith("$("):
                assert (out / "proj_cm0p" / inc).resolve().is_dir(), inc


MTB_ASSET = re.compile(r"^mtb://([\w.-]+)#(latest-v\d+\.X)#\$\$ASSET_REPO\$\$/\1/\2$")
MTB_GIT = re.compile(r"^https://github\.com/[\w.-]+/[\w.-]+#([\w.-]+)#\$\$ASSET_REPO\$\$/([\w.-]+)/\1$")


def test_deps_are_pinned_mtb_lines(digits_project):
    out = digits_project.out
    deps = {p.relative_to(out).as_posix(): p.read_text() for p in out.glob("proj_*/deps/*.mtb")}
    assert f"proj_cm0p/deps/TARGET_{KIT}.mtb" in deps and f"proj_cm4/deps/TARGET_{KIT}.mtb" in deps
    assert "proj_cm4/deps/ml-tflite-micro.mtb" in deps
    for name in ("tflite-micro", "flatbuffers", "gemmlowp", "ruy", "cmsis-nn"):
        line = deps[f"proj_cm0p/deps/{name}.mtb"].strip()
        m = MTB_GIT.match(line)
        assert m and m.group(2) == name, line
        assert re.fullmatch(r"[0-9a-f]{40}|v\d+\.\d+\.\d+", m.group(1)), "pinned to a commit or a tag"
    for rel, text in deps.items():
        assert text.count("\n") == 1 and text.endswith("\n")
        line = text.strip()
        assert MTB_ASSET.match(line) or MTB_GIT.match(line), (rel, line)
    # the CM0+ build keeps TFLite Micro's tests and other ports out
    ignore = (out / "proj_cm0p/.cyignore").read_text().splitlines()
    assert "$(SEARCH_tflite-micro)/tensorflow/lite/micro/examples" in ignore
    assert "$(SEARCH_tflite-micro)/tensorflow/lite/micro/micro_interpreter_test.cc" in ignore
    assert "$(SEARCH_tflite-micro)/tensorflow/lite/micro/kernels/conv.cc" in ignore  # CMSIS-NN's replaces it
    assert "$(SEARCH_flatbuffers)" in ignore
    # CMSIS-NN: int8 only, as TFLite Micro's own build takes it: the float kernels #error without
    # ARM_NN_ENABLE_F16/F32, the pybind11 bindings are host-only C++
    assert "$(SEARCH_cmsis-nn)/Source/Bindings" in ignore
    assert "$(SEARCH_cmsis-nn)/Source/ConvolutionFunctions/arm_convolve_f32.c" in ignore
    assert "$(SEARCH_cmsis-nn)/Source/TransposeFunctions/arm_transpose_f16.c" in ignore
    assert "$(SEARCH_cmsis-nn)/Source/NNSupportFunctions/arm_nntables_flt.c" in ignore
    cmsis = [ln for ln in ignore if ln.startswith("$(SEARCH_cmsis-nn)/Source/")]
    assert all(ln.endswith(("_f16.c", "_f32.c", "_flt.c", "/Bindings")) for ln in cmsis), cmsis
    assert not any(ln.endswith(("_s8.c", "_s16.c", "_s4.c")) for ln in ignore)


def linker_regions(text: str) -> dict[str, tuple[int, int]]:
    body = text[text.index("MEMORY"):]
    body = body[:body.index("}")]
    return {m.group(1): (int(m.group(2), 16), int(m.group(3), 16)) for m in
            re.finditer(r"^\s*(\w+)\s*\([rwx]+\)\s*:\s*ORIGIN\s*=\s*(0x[0-9A-Fa-f]+),\s*LENGTH\s*=\s*(0x[0-9A-Fa-f]+)",
                        body, re.M)}


def linker_symbol(text: str, name: str) -> int:
    return int(re.search(rf"^\s*{name}\s*=\s*(0x[0-9A-Fa-f]+);", text, re.M).group(1), 16)


@pytest.mark.parametrize("which", ["digits_project", "ecg_project"])
def test_memory_map_adds_up_in_the_linker_scripts(request, which):
    res = request.getfixturevalue(which)
    kit = get_kit(res.manifest.kit)
    base = res.out / f"templates/TARGET_{kit.name}"
    cm0 = (base / "COMPONENT_CM0P/TOOLCHAIN_GCC_ARM/linker.ld").read_text()
    cm4 = (base / "COMPONENT_CM4/TOOLCHAIN_GCC_ARM/linker.ld").read_text()
    r0, r4 = linker_regions(cm0), linker_regions(cm4)
    flash_cm0p = linker_symbol(cm4, "FLASH_CM0P_SIZE")
    # flash: the CM0+ image at the base, the CM4 image right after it, to the end of flash
    assert r0["flash"] == (kit.flash_base, flash_cm0p)
    assert r4["flash"] == (kit.flash_base, kit.flash_bytes)
    appl = int(re.search(r"CY_CORTEX_M4_APPL_ADDR=(0x[0-9A-F]+)", (res.out / "proj_cm0p/Makefile").read_text()).group(1), 16)
    assert appl == kit.flash_base + flash_cm0p == res.layout.cm4_appl_addr
    assert "ORIGIN(flash) + FLASH_CM0P_SIZE" in cm4
    # SRAM: CM0+ ram, shared, CM4 ram back to back, no overlap, system reserve untouched
    ram0, shared, ram4 = r0["ram"], r0["shared"], r4["ram"]
    assert ram0[0] == kit.sram_base
    assert ram0[0] + ram0[1] == shared[0] and shared[0] + shared[1] == ram4[0]
    assert ram4[0] + ram4[1] == kit.sram_base + kit.sram_bytes - SRAM_SYSTEM_RESERVED
    # the CM0+ region holds stage 0's weights + arena + stack (+ input, data, heap budgets)
    s0, s1 = res.manifest.stages
    stack0 = linker_symbol(cm0, "STACK_SIZE")
    assert ram0[1] >= s0.arena_bytes + stack0 + s0.input.size
    assert flash_cm0p >= (res.out / "eenn/models/stage0.tflite").stat().st_size + mem.CODE_BUDGET["cm0p"]
    assert shared[1] >= s0.feature_map.size + s0.scores.size + mem.MAILBOX_BYTES
    assert ram4[1] >= s1.arena_bytes + linker_symbol(cm4, "STACK_SIZE")
    assert kit.flash_bytes - flash_cm0p >= (res.out / "eenn/models/stage1.tflite").stat().st_size
    # the shared buffers are placed by the CM0+ script; the CM4 asserts it has none of its own, the
    # PDL's and HAL's per-core control blocks (cy_ipc_sema.c's cy_semaData, cyhal_ipc.c's queue heads,
    # in .cy_sharedmem on every core) aside
    assert re.search(r"\.cy_sharedmem \(NOLOAD\):\s*\{[^}]*KEEP\(\*\(\.cy_sharedmem\)\)[^}]*\} > shared", cm0)
    assert "ASSERT(SIZEOF(.cy_sharedmem) == 0" not in cm4
    m = re.search(r"\.cy_sharedmem \(NOLOAD\):\s*\{([^}]*)\} > ram", cm4)
    assert m
    body = m.group(1)
    for lib in ("mtb-pdl-cat1", "mtb-hal-cat1"):
        assert body.index(f"*{lib}*(.cy_sharedmem)") < body.index("__ee_cm4_sharedmem_start")
    # only what the image references counts (an unreferenced library buffer is collected, not asserted)
    assert "KEEP(*(.cy_sharedmem))" not in body
    assert "ASSERT(__ee_cm4_sharedmem_end == __ee_cm4_sharedmem_start" in cm4
    # the manifest records the same layout
    assert res.manifest.memory["shared"]["origin"] == shared[0]
    assert res.manifest.memory["cm4"]["ram"]["size"] == ram4[1]


def test_ecg_project_targets_its_kit(ecg_project):
    """The other 2 MB kit: its own TARGET, BSP dependency and linker-script directory."""
    out = ecg_project.out
    assert "TARGET=CY8CPROTO-062-4343W" in (out / "common.mk").read_text()
    assert (out / "proj_cm0p/deps/TARGET_CY8CPROTO-062-4343W.mtb").is_file()
    assert "ts_port = NULL" in (out / "proj_cm0p/main.c").read_text()


# ------------------------------------------------------------------------------ cross-compile
CPUS = {
    "cortex-m0plus": ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"],
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
}
TARGET_ONLY = ("cy", "tensorflow/", "ee_psoc6.h")  # PDL/BSP (cy_*.h, cybsp.h), TFLite Micro
_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def _portable_sources(out: Path) -> list[Path]:
    """Every generated .c/.h that includes neither TFLite Micro nor the PDL (directly)."""
    files = []
    for p in sorted(out.rglob("*")):
        if p.suffix not in (".c", ".h"):
            continue
        includes = _INCLUDE.findall(p.read_text())
        if not any(inc.startswith(TARGET_ONLY) for inc in includes):
            files.append(p)
    return files


@pytest.mark.arm
@pytest.mark.parametrize("cpu", sorted(CPUS))
def test_generated_c_compiles_for_both_cores(digits_project, cpu, tmp_path):
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        missing_tool("arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    out = digits_project.out
    files = _portable_sources(out)
    names = {p.relative_to(out).as_posix() for p in files}
    assert {"shared/include/ee_config.h", "shared/source/ee_config.c", "shared/include/ee_app.h",
            "proj_cm0p/ee_model_stage0.c", "proj_cm4/ee_model_stage1.h"} <= names
    incs = [f"-I{out / d}" for d in ("shared/include", "shared/eenn_runtime/include", "proj_cm0p", "proj_cm4")]
    flags = [*CPUS[cpu], "-std=c11", "-Os", "-Wall", "-Wextra", "-Werror", *incs]
    for p in files:
        src = p if p.suffix == ".c" else tmp_path / f"inc_{p.stem}.c"
        if p.suffix == ".h":
            src.write_text(f'#include "{p.name}"\n')
        cmd = [gcc, *flags, f"-I{p.parent}", "-c", str(src), "-o", str(tmp_path / "x.o")]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{p.relative_to(out)}:\n{r.stderr}"
    # ee_app_config passes the runtime's own consistency check (the config a target would boot with)
    main = tmp_path / "check.c"
    main.write_text('#include "ee_config.h"\n'
                    "int check(void) { return ee_config_check(&ee_app_config, (const ee_buffers_t *)0) != 0; }\n")
    r = subprocess.run([gcc, *flags, "-c", str(main), "-o", str(tmp_path / "check.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


_CALL = re.compile(r"\b(ee_\w+)\s*\(")
_DEFINITION = re.compile(r"\b(ee_\w+)\s*\([^;{)]*\)\s*\{")
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def undeclared_calls(source: Path, header_dirs: list[Path]) -> set[str]:
    """The eenn functions (`ee_*`) that `source` calls but no eenn header it includes (directly or
    through another) declares, nor the file itself defines: the target build's implicit
    declarations, found without the kit's SDK."""
    headers = {h.name: h for d in header_dirs for h in sorted(d.glob("*.h"))}
    declared: set[str] = set()
    todo, seen = list(_INCLUDE.findall(source.read_text())), set()
    while todo:
        name = todo.pop()
        if name in seen or name not in headers:  # SDK headers (cy_*.h, cybsp.h) declare no ee_*
            continue
        seen.add(name)
        text = _COMMENT.sub(" ", headers[name].read_text())  # a name in a comment declares nothing
        declared |= set(_CALL.findall(text))
        todo += _INCLUDE.findall(text)
    text = _COMMENT.sub(" ", source.read_text())
    return set(_CALL.findall(text)) - declared - set(_DEFINITION.findall(text))


def test_generated_main_declares_every_runtime_call(digits_project, tmp_path):
    """main.c includes the kit's SDK, so CI cannot compile it (test above); a call whose header it
    does not include only fails on the target (ee_port_init once did). Checked here from the
    includes, and shown to find such a call."""
    out = digits_project.out
    dirs = [out / "shared" / "include", out / "shared" / "eenn_runtime" / "include",
            out / "shared" / "eenn_runtime" / "ports" / "psoc6"]
    for core in ("proj_cm0p", "proj_cm4"):
        main = out / core / "main.c"
        assert "ee_port_init(" in main.read_text()
        assert undeclared_calls(main, [*dirs, out / core]) == set(), core
        broken = tmp_path / f"{core}.c"
        broken.write_text(main.read_text().replace('#include "ee_port.h"\n', ""))
        assert "ee_port_init" in undeclared_calls(broken, [*dirs, out / core])


# ------------------------------------------------------------------------------ the layout itself
sizes = st.integers(min_value=1, max_value=3 << 20)


@settings(max_examples=300, deadline=None)
@given(kit=st.sampled_from(sorted(KITS)), m0=sizes, m1=sizes, a0=sizes, a1=sizes,
       inp=st.integers(1, 200_000), fm=st.integers(1, 400_000), ns=st.integers(1, 1000))
def test_layout_fits_or_fails_with_figures(kit, m0, m1, a0, a1, inp, fm, ns):
    k = get_kit(kit)
    try:
        lay = mem.compute_layout(k, model_bytes=(m0, m1), arena_bytes=(a0, a1), input_len=inp, fm_len=fm,
                                 n_scores=ns)
    except EennError as exc:
        assert f"does not fit {kit}" in str(exc) and "cm0p ram" in str(exc)
        # it really does not fit: the needs exceed a memory
        flash_need = mem.CODE_BUDGET["cm0p"] + m0 + mem.CODE_BUDGET["cm4"] + m1
        ram_need = (a0 + a1 + inp + fm + ns + sum(mem.DATA_BUDGET.values()) + sum(mem.STACK_SIZE.values())
                    + sum(mem.HEAP_SIZE.values()) + mem.MAILBOX_BYTES + mem.IPC_SEMA_BYTES)
        assert flash_need > k.flash_bytes - mem.FLASH_ALIGN or ram_need > k.sram_usable - 4 * mem.RAM_ALIGN
        return
    lay.check()
    assert lay.cm0p.flash.size % mem.FLASH_ALIGN == 0 and lay.cm0p.ram.size % mem.RAM_ALIGN == 0
    assert lay.cm0p.flash.size >= lay.cm0p.flash_need and lay.cm0p.ram.size >= lay.cm0p.ram_need
    assert lay.cm4.flash.size >= lay.cm4.flash_need and lay.cm4.ram.size >= lay.cm4.ram_need
    assert lay.shared.region.size >= lay.shared.need
    assert lay.cm0p.ram.size >= a0 + inp + mem.STACK_SIZE["cm0p"]
    assert lay.cm4_appl_addr == k.flash_base + lay.flash_cm0p_size


def test_stage0_too_large_for_the_cm0p_is_refused_with_figures():
    k = get_kit("CY8CKIT-062-BLE")
    with pytest.raises(EennError) as e:
        mem.compute_layout(k, model_bytes=(20_000, 20_000), arena_bytes=(300_000, 10_000), input_len=1000,
                           fm_len=4000, n_scores=10)
    msg = str(e.value)
    assert "does not fit CY8CKIT-062-BLE" in msg and "stage 0 arena 300000 B" in msg and str(k.sram_usable) in msg


# Stand-ins for what the BSP start-up and the PDL contribute to .cy_sharedmem (no fetched code):
# a Reset_Handler, a vector table, and cy_ipc_sema.c's CY_SECTION_SHAREDMEM control block.
_LINK_MAIN = """
__attribute__((section(".vectors"), used)) static const unsigned vectors[2] = {0u, 0u};
void Reset_Handler(void) { for (;;) { } }
int main(void) { return 0; }
"""
_LINK_PDL_SEMA = """
__attribute__((section(".cy_sharedmem"))) static unsigned cy_semaData[2];
unsigned *Cy_IPC_Sema_Init(void) { return cy_semaData; }
"""
_LINK_HAL_IPC = """
__attribute__((section(".cy_sharedmem"))) static void *queue_heads[4];
void **cyhal_ipc_queues(void) { return queue_heads; }
"""
_LINK_APP_SHARED = """
__attribute__((section(".cy_sharedmem"))) unsigned char app_buffer[64];
"""


@pytest.mark.arm
def test_cm4_linker_script_takes_the_pdl_sharedmem_and_refuses_the_apps(digits_project, tmp_path):
    """The real PDL puts cy_ipc_sema.c's control data in .cy_sharedmem on every core, the CM4 too
    (Cy_IPC_Sema_Init references it), and so does the HAL the BSP builds (cyhal_ipc.c): the CM4
    script must link those, and still refuse a buffer of the application's own there (it would be
    a second, unshared copy)."""
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        missing_tool("arm-none-eabi-gcc not installed")
    ld = next((digits_project.out / "templates").glob("TARGET_*/COMPONENT_CM4/TOOLCHAIN_GCC_ARM/linker.ld"))
    flags = [*CPUS["cortex-m4"], "-Os", "-ffunction-sections", "-fdata-sections"]

    def obj(rel: str, text: str) -> Path:
        src = tmp_path / rel
        src.parent.mkdir(parents=True, exist_ok=True)
        src.with_suffix(".c").write_text(text)
        o = src.with_suffix(".o")
        r = subprocess.run([gcc, *flags, "-c", str(src.with_suffix(".c")), "-o", str(o)], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        return o

    main = obj("app/main", _LINK_MAIN + "unsigned *Cy_IPC_Sema_Init(void);\n"
               "unsigned *keep(void) { return Cy_IPC_Sema_Init(); }\n")
    sema = obj("mtb_shared/mtb-pdl-cat1/drivers/source/cy_ipc_sema", _LINK_PDL_SEMA)
    hal = obj("mtb_shared/mtb-hal-cat1/source/cyhal_ipc", _LINK_HAL_IPC)
    app = obj("app/shared_buffer", _LINK_APP_SHARED + "unsigned char *buf(void) { return app_buffer; }\n")

    def link(*objs: Path, keep: tuple[str, ...] = ("keep", "buf", "cyhal_ipc_queues")):
        return subprocess.run([gcc, *flags, "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections",
                               *(f"-Wl,-u,{k}" for k in keep), f"-T{ld}", "-o", str(tmp_path / "cm4.elf"),
                               *map(str, objs)], capture_output=True, text=True)

    r = link(main, sema, hal)
    assert r.returncode == 0, r.stderr
    # ... in the CM4's RAM below its heap, clear of the stack (ld overlapped them with .stack_dummy
    # when .cy_sharedmem came after it)
    nm = shutil.which("arm-none-eabi-nm")
    if nm is not None:
        syms = {}
        for line in subprocess.run([nm, str(tmp_path / "cm4.elf")], capture_output=True, text=True).stdout.splitlines():
            parts = line.split()
            if len(parts) == 3:
                syms[parts[2].split(".")[0]] = int(parts[0], 16)
        ram = linker_regions(ld.read_text())["ram"]
        assert ram[0] <= syms["cy_semaData"] < syms["__HeapBase"] <= syms["__HeapLimit"] < syms["__StackTop"]
        assert ram[0] <= syms["queue_heads"] < syms["__HeapBase"]
        # the stack limit is the whole budgeted stack, not the startup file's own reservation
        assert syms["__StackTop"] - syms["__StackLimit"] == linker_symbol(ld.read_text(), "STACK_SIZE")
        assert syms["__StackLimit"] == syms["__HeapLimit"]
    r = link(main, sema, hal, app)
    assert r.returncode != 0 and "shared buffers belong to proj_cm0p" in r.stderr, r.stderr
    # a buffer nothing references is collected, not mistaken for one
    r = link(main, sema, hal, app, keep=("keep", "cyhal_ipc_queues"))
    assert r.returncode == 0, r.stderr


_PRINT_CONFIG = r"""
#include <stdio.h>
#include "ee_config.h"
#include "ee_runtime.h"

int main(void)
{
    const ee_config_t *c = &ee_app_config;
    const char *bad = ee_config_check(c, NULL);
    printf("{\"check\": \"%s\", \"n_stages\": %u, \"confidence\": %u, \"hash\": \"%s\", \"model_id\": \"%s\", "
           "\"input_scale\": %.9g, \"input_zero_point\": %d, \"input_type\": %u, \"stages\": [", bad ? bad : "ok",
           (unsigned)c->n_stages, (unsigned)c->confidence, c->solution_hash, c->model_id, (double)c->input_scale,
           (int)c->input_zero_point, (unsigned)c->input_type);
    for (uint32_t k = 0; k < c->n_stages; k++) {
        const ee_stage_config_t *s = &c->stages[k];
        printf("%s{\"input_len\": %u, \"fm_len\": %u, \"n_scores\": %u, \"threshold_q\": %d, \"scores_scale\": %.9g, "
               "\"scores_zero_point\": %d, \"requant\": [%d, %d, %d, %d, %d], \"tick_hz\": %u}", k ? ", " : "",
               (unsigned)s->input_len, (unsigned)s->fm_len, (unsigned)s->n_scores, (int)s->threshold_q,
               (double)s->scores_scale, (int)s->scores_zero_point, (int)s->requant.enabled,
               (int)s->requant.multiplier, (int)s->requant.shift, (int)s->requant.in_zero_point,
               (int)s->requant.out_zero_point, (unsigned)s->tick_hz);
    }
    printf("]}\n");
    return bad != NULL;
}
"""


@pytest.fixture(scope="module")
def requant_project(digits_bundle, tmp_path_factory):
    """The digits bundle generated with the CM4 requantizing its input (as when the two sides'
    calibrated scales differ by more than float rounding), so the requant branch is rendered."""
    from eenn.codegen import subgraphs
    from eenn.codegen.generate import generate
    from eenn.augment.tflite_model import TfliteModel

    def always_requant(producer_fm, consumer):
        cin = TfliteModel(consumer).inputs[0]
        return consumer, subgraphs._requant_constants(producer_fm, float(cin.scale) * 1.01, int(cin.zero_point)), False

    real = subgraphs.link_quantization
    subgraphs.link_quantization = always_requant
    try:
        return generate(digits_bundle["path"], "CY8CKIT-062S2-43012", tmp_path_factory.mktemp("rq") / "project")
    finally:
        subgraphs.link_quantization = real


@pytest.mark.parametrize("which", ["digits_project", "ecg_project", "requant_project"])
def test_generated_config_runs_on_the_host_and_says_what_project_json_says(request, which, tmp_path):
    """The project's own ee_config.c and runtime copy, built for the host and run: the values the
    firmware boots with are those of eenn/project.json, and they pass the runtime's check."""
    import json

    from eenn.hil.host_build import find_compiler
    from eenn.paths import firmware_dir

    res = request.getfixturevalue(which)
    out, m = res.out, res.manifest
    if which == "requant_project":
        assert m.stages[1].requant is not None
    cc = find_compiler()
    runtime = out / "shared" / "eenn_runtime"
    host_port = firmware_dir() / "ports" / "host"
    main = tmp_path / "print_config.c"
    main.write_text(_PRINT_CONFIG)
    exe = tmp_path / "print_config"
    cmd = [cc, "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{out / 'shared' / 'include'}", f"-I{runtime / 'include'}",
           f"-I{host_port}", str(out / "shared" / "source" / "ee_config.c"), *map(str, sorted((runtime / "src").glob("*.c"))),
           *map(str, sorted(host_port.glob("*.c"))), str(main), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    got = json.loads(run.stdout)
    assert got["check"] == "ok" and got["n_stages"] == len(m.stages) and got["hash"] == m.bundle_hash
    assert got["confidence"] == (0 if m.confidence == "max" else 1) and got["model_id"] == m.firmware.model_id
    # the model input's quantization, for `eenn-input float32` (ad01-style float inputs)
    assert got["input_scale"] == pytest.approx(m.input.scale, rel=1e-7)
    assert got["input_zero_point"] == m.input.zero_point
    from eenn.hil.input_types import INPUT_TYPE_CODE, start_input_type
    assert got["input_type"] == INPUT_TYPE_CODE[start_input_type(m.firmware.model_id)]
    for g, s in zip(got["stages"], m.stages):
        assert g["input_len"] == s.input.size and g["n_scores"] == s.scores.size
        assert g["fm_len"] == (s.feature_map.size if s.feature_map is not None else 0)
        assert g["scores_zero_point"] == s.scores.zero_point
        assert g["scores_scale"] == pytest.approx(s.scores.scale, rel=1e-7)
        assert g["tick_hz"] == s.tick_hz
        if not s.is_last:
            assert g["threshold_q"] == s.threshold_q
        rq = s.requant
        assert g["requant"] == ([1, rq.multiplier, rq.shift, rq.in_zero_point, rq.out_zero_point] if rq else
                                [0, 0, 0, 0, 0])
