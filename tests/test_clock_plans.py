"""Clock plans end to end: the kit's trees give the profile's clocks, generate refuses a bundle
searched for a plan the project would not run, and the generated start-up code sets the plan
(compiled for both cores against a PDL stand-in, and run on the host against a model of the
clock tree that checks the order the PDL asks for)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from eenn.augment.hardware import load_profile, read_profile
from eenn.codegen.kits import KITS, ClockTree, get_kit
from eenn.errors import EennError
from tests.conftest import missing_tool

KIT = "CY8CKIT-062S2-43012"
STUBS = Path(__file__).parent / "stubs" / "pdl"
CPUS = {
    "cortex-m0plus": ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"],
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
}
CORE_OF = {"cm0p": "cortex-m0plus", "cm4": "cortex-m4"}


@pytest.fixture(scope="module")
def projects(digits_bundle, digits_project, tmp_path_factory):
    """plan → (bundle path, GenerateResult) for the digits bundle searched under each psoc6 plan."""
    from eenn.codegen.generate import generate
    from tests.bundles import with_hardware

    root = tmp_path_factory.mktemp("plans")
    out = {"bsp-default": (digits_bundle["path"], digits_project)}
    b = root / "digits-cm4-150"
    with_hardware(Path(digits_bundle["path"]), b, load_profile("psoc6", "cm4-150").to_dict())
    out["cm4-150"] = (b, generate(b, KIT, root / "proj-cm4-150"))
    return out


def test_every_kit_tree_is_possible_and_gives_the_profiles_clocks():
    plans = {p.name: p for p in read_profile("psoc6").clock_plans}
    for kit in KITS.values():
        assert "bsp-default" in kit.plan_names()
        for tree in kit.clock_trees:
            assert tree.problems() == [], (kit.name, tree.plan)
            for proc, hz in plans[tree.plan].clock_hz.items():
                assert tree.core_clock_hz(CORE_OF[proc]) == hz, (kit.name, tree.plan, proc)


def test_impossible_trees_are_named():
    # the paper's pair: CM4 150 MHz with the CM0+ at 100 MHz needs CLK_PERI = CLK_HF0 = 150 MHz
    assert any("CLK_PERI 150000000 Hz > 100000000" in p for p in
               ClockTree(plan="paper", clk_hf0_hz=150_000_000, source="pll", pll_path=2).problems())
    assert ClockTree(plan="x", clk_hf0_hz=150_000_000, source="pll", pll_path=2, peri_div=2).problems() == []


@pytest.mark.parametrize("plan", ["bsp-default", "cm4-150"])
def test_ee_config_tick_rates_are_the_plans_clocks(projects, plan):
    _, res = projects[plan]
    text = (res.out / "shared/source/ee_config.c").read_text()
    ticks = [int(t) for t in re.findall(r"\.tick_hz = (\d+)u,", text)]
    clocks = load_profile("psoc6", plan).processors
    assert ticks == [int(clocks[0].clock_hz), int(clocks[1].clock_hz)]
    assert [s.tick_hz for s in res.manifest.stages] == ticks


def test_bsp_default_has_no_clock_code(projects):
    _, res = projects["bsp-default"]
    assert not (res.out / "proj_cm0p/ee_clock_plan.c").exists()
    main = (res.out / "proj_cm0p/main.c").read_text()
    assert "Cy_SysClk" not in main and "ee_clock_plan" not in main


def test_cm4_150_main_sets_the_plan_after_cybsp_init_and_before_the_uart_and_cm4(projects):
    _, res = projects["cm4-150"]
    main = (res.out / "proj_cm0p/main.c").read_text()
    body = main[main.index("int main(void)"):]
    order = [body.index(s) for s in ("cybsp_init()", "ee_clock_plan_apply()", "ee_port_init(",
                                     "Cy_SysEnableCM4(")]
    assert order == sorted(order)


@pytest.mark.arm
@pytest.mark.parametrize("cpu", sorted(CPUS))
def test_clock_plan_code_compiles_for_both_cores(projects, cpu, tmp_path):
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        missing_tool("arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    src = projects["cm4-150"][1].out / "proj_cm0p"
    cmd = [gcc, *CPUS[cpu], "-std=c11", "-Os", "-Wall", "-Wextra", "-Werror", f"-I{STUBS}", f"-I{src}",
           "-c", str(src / "ee_clock_plan.c"), "-o", str(tmp_path / "clock.o")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# A model of the CAT1A clock tree behind the stub's functions: it fails the run on any step the
# PDL's notes forbid (CLK_PERI over 100 MHz, CLK_HF0 raised above the wait states' frequency, a
# PLL configured while enabled or selected unlocked) and prints the resulting clocks.
TREE_MODEL = r"""
#include <stdio.h>
#include <stdlib.h>
#include "cy_pdl.h"
#include "ee_clock_plan.h"

static uint32_t path_hz[3] = {100000000u, 48000000u, 0u}; /* the BSP: FLL 100 MHz, PLL0 48 MHz */
static int pll_on[3] = {1, 1, 0}, hf0_path = 0, ws_mhz = 100;
static uint32_t peri_div = 1, slow_div = 1, fast_div = 1, pending[3];
uint32_t SystemCoreClock = 100000000u;

static void fail(const char *why) { printf("FAIL %s\n", why); exit(1); }
static uint32_t hf0(void) { return path_hz[hf0_path]; }
static void check(void) {
    if (hf0() / ws_mhz > 1000000u) fail("CLK_HF0 above the wait states' frequency");
    if (hf0() / peri_div > 100000000u) fail("CLK_PERI above 100 MHz");
    if (hf0() / fast_div > 150000000u) fail("CLK_FAST above 150 MHz");
}
cy_en_sysclk_status_t Cy_SysClk_ClkPathSetSource(uint32_t p, cy_en_clkpath_in_sources_t s)
{ if (p == 0u || p > 2u || pll_on[p] || s != CY_SYSCLK_CLKPATH_IN_IMO) fail("path source"); return CY_SYSCLK_SUCCESS; }
cy_en_sysclk_status_t Cy_SysClk_FllConfigure(uint32_t i, uint32_t o, cy_en_fll_pll_output_mode_t m)
{ (void)i; (void)o; (void)m; fail("FLL touched"); return CY_SYSCLK_SUCCESS; }
cy_en_sysclk_status_t Cy_SysClk_FllEnable(uint32_t t) { (void)t; fail("FLL touched"); return CY_SYSCLK_SUCCESS; }
cy_en_sysclk_status_t Cy_SysClk_FllDisable(void) { fail("FLL touched"); return CY_SYSCLK_SUCCESS; }
bool Cy_SysClk_FllIsEnabled(void) { return true; }
cy_en_sysclk_status_t Cy_SysClk_PllConfigure(uint32_t p, const cy_stc_pll_config_t *c) {
    if (p < 1u || p > 2u || pll_on[p]) return CY_SYSCLK_INVALID_STATE;
    if (c->inputFreq != 8000000u || c->outputFreq > 150000000u) fail("PLL config");
    pending[p] = c->outputFreq; return CY_SYSCLK_SUCCESS;
}
cy_en_sysclk_status_t Cy_SysClk_PllEnable(uint32_t p, uint32_t t)
{ if (t == 0u || pending[p] == 0u) fail("PLL enable"); pll_on[p] = 1; path_hz[p] = pending[p]; return CY_SYSCLK_SUCCESS; }
cy_en_sysclk_status_t Cy_SysClk_PllDisable(uint32_t p)
{ if ((int)p == hf0_path) fail("disabled CLK_HF0's PLL"); pll_on[p] = 0; path_hz[p] = 0u; return CY_SYSCLK_SUCCESS; }
bool Cy_SysClk_PllIsEnabled(uint32_t p) { return pll_on[p] != 0; }
cy_en_sysclk_status_t Cy_SysClk_ClkHfSetSource(uint32_t h, cy_en_clkhf_in_sources_t s)
{ if (h != 0u || !pll_on[s]) fail("CLK_HF0 onto a stopped path"); hf0_path = (int)s; check(); return CY_SYSCLK_SUCCESS; }
cy_en_sysclk_status_t Cy_SysClk_ClkHfSetDivider(uint32_t h, cy_en_clkhf_dividers_t d)
{ if (h != 0u || d != CY_SYSCLK_CLKHF_NO_DIVIDE) fail("CLK_HF0 divider"); return CY_SYSCLK_SUCCESS; }
void Cy_SysClk_ClkFastSetDivider(uint8_t d) { fast_div = d + 1u; check(); }
void Cy_SysClk_ClkPeriSetDivider(uint8_t d) { peri_div = d + 1u; check(); }
void Cy_SysClk_ClkSlowSetDivider(uint8_t d) { slow_div = d + 1u; check(); }
void Cy_SysLib_SetWaitStates(bool ulp, uint32_t mhz) { if (ulp) fail("ULP"); ws_mhz = (int)mhz; }
void SystemCoreClockUpdate(void) { SystemCoreClock = hf0() / peri_div / slow_div; }

int main(void) {
    if (!ee_clock_plan_apply()) fail("returned false");
    printf("hf0 %u fast %u peri %u slow %u core %u\n", (unsigned)hf0(), (unsigned)(hf0() / fast_div),
           (unsigned)(hf0() / peri_div), (unsigned)(hf0() / peri_div / slow_div), (unsigned)SystemCoreClock);
    return 0;
}
"""


def test_clock_plan_code_sets_the_plan_in_the_pdls_order(projects, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        missing_tool("no host C compiler")
    src = projects["cm4-150"][1].out / "proj_cm0p"
    (tmp_path / "model.c").write_text(TREE_MODEL)
    exe = tmp_path / "model"
    r = subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{STUBS}", f"-I{src}",
                        str(tmp_path / "model.c"), str(src / "ee_clock_plan.c"), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    tree = get_kit(KIT).clock_tree("cm4-150")
    assert run.stdout.split() == ["hf0", str(tree.clk_hf0_hz), "fast", str(tree.core_clock_hz("cortex-m4")),
                                  "peri", str(tree.clk_peri_hz), "slow", str(tree.core_clock_hz("cortex-m0plus")),
                                  "core", str(tree.core_clock_hz("cortex-m0plus"))]


# ------------------------------------------------------------------------------ refusals
def test_generate_refuses_a_clock_plan_other_than_the_bundles(projects, tmp_path):
    from eenn.codegen.generate import generate

    bundle, _ = projects["cm4-150"]
    with pytest.raises(EennError, match=r"--clock-plan bsp-default: the bundle was searched for clock plan "
                                        r"'cm4-150' \(.*hardware\.clock_plan = 'cm4-150'\)"):
        generate(bundle, KIT, tmp_path / "p", clock_plan="bsp-default")
    assert not (tmp_path / "p").exists()


def test_generate_refuses_a_plan_the_kit_cannot_run(projects, tmp_path):
    from eenn.codegen.generate import generate

    bundle, _ = projects["cm4-150"]
    with pytest.raises(EennError, match=r"kit CY8CKIT-062-BLE cannot run clock plan 'cm4-150' "
                                        r"\(.*hardware\.clock_plan = 'cm4-150'\): its plans are bsp-default"):
        generate(bundle, "CY8CKIT-062-BLE", tmp_path / "p")


def test_generate_refuses_a_bundle_whose_clocks_are_not_its_plans(digits_bundle, tmp_path):
    from eenn.codegen.generate import generate
    from tests.bundles import with_hardware

    hw = load_profile("psoc6", "cm4-150").to_dict()
    hw["clock_plan"] = "bsp-default"  # a plan name with another plan's clocks
    b = tmp_path / "b"
    with_hardware(Path(digits_bundle["path"]), b, hw)
    with pytest.raises(EennError, match=r"clock plan 'bsp-default' gives cm0p \(cortex-m0plus\) 75 MHz in the "
                                        r"bundle, 100 MHz on the kit; cm4 \(cortex-m4\) 150 MHz in the bundle"):
        generate(b, KIT, tmp_path / "p")


def test_a_bundle_from_before_plans_is_generated_as_bsp_default_with_a_warning(digits_bundle, digits_project,
                                                                                 tmp_path):
    from eenn.codegen.generate import generate
    from tests.bundles import with_hardware

    b = tmp_path / "old"
    with_hardware(Path(digits_bundle["path"]), b, read_profile("psoc6").to_dict())  # cm4 at 150 MHz, no plan
    said: list[str] = []
    res = generate(b, KIT, tmp_path / "p", log=said.append)
    assert [s.tick_hz for s in res.manifest.stages] == [s.tick_hz for s in digits_project.manifest.stages]
    assert any("no hardware.clock_plan" in s and "cm4 (cortex-m4) 150 MHz in the bundle, 100 MHz on the kit" in s
               for s in said)
    assert not (res.out / "proj_cm0p/ee_clock_plan.c").exists()


def test_generate_cli_clock_plan_must_match_the_bundle(digits_bundle, tmp_path):
    from click.testing import CliRunner

    from eenn.cli import main

    r = CliRunner().invoke(main, ["generate", str(digits_bundle["path"]), "--kit", KIT, "--out", str(tmp_path / "p"),
                                  "--clock-plan", "cm4-150"])
    assert r.exit_code == 2, r.output
    assert "--clock-plan cm4-150: the bundle was searched for clock plan 'bsp-default'" in r.output
    assert not (tmp_path / "p").exists()
