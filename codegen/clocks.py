"""Which clock plan a generated project runs, checked against the bundle it comes from.

The search records the plan its cost model ran on (solution.json `hardware.clock_plan`, the
processors' `clock_hz` are that plan's clocks). A project must run the same clocks, or every
predicted time is wrong and the firmware's tick check (`tick_hz` vs `SystemCoreClock`) fails on
the board. Bundles written before plans existed carry no `clock_plan`: they are generated as
`bsp-default`, the clocks such projects always ran, with a warning when the bundle's processor
clocks differ (the old psoc6 profile priced the CM4 at 150 MHz; the project runs it at 100 MHz).
"""
from __future__ import annotations

from typing import Callable

from eenn.augment.hardware import HardwareProfile
from eenn.codegen.kits import BSP_DEFAULT, ClockTree, Kit
from eenn.errors import EennError


def bundle_clock_plan(profile: HardwareProfile) -> str:
    """The plan a bundle's profile was searched for (older bundles: `bsp-default`)."""
    return profile.clock_plan or BSP_DEFAULT


def check_clock_plan(bundle_path: str, kit: Kit, profile: HardwareProfile, proc_idx: list[int],
                     requested: str | None = None, log: Callable[[str], None] = lambda s: None) -> ClockTree:
    """The kit's clock tree for the bundle's plan; EennError when the project could not run it."""
    plan = bundle_clock_plan(profile)
    recorded = bool(profile.clock_plan)
    where = (f"{bundle_path}/solution.json hardware.clock_plan = '{plan}'" if recorded else
             f"{bundle_path}/solution.json has no hardware.clock_plan (a bundle from before clock plans: "
             f"taken as '{BSP_DEFAULT}')")
    if requested is not None and requested != plan:
        raise EennError(f"--clock-plan {requested}: the bundle was searched for clock plan '{plan}' ({where}); "
                        f"re-run `eenn search --clock-plan {requested}` or drop --clock-plan")
    if plan not in kit.plan_names():
        raise EennError(f"kit {kit.name} cannot run clock plan '{plan}' ({where}): its plans are "
                        f"{', '.join(kit.plan_names())}; re-run `eenn search --clock-plan` with one of them")
    tree = kit.clock_tree(plan)
    bad = tree.problems()
    if bad:  # a defect in kits.py, not the user's: say so plainly
        raise EennError(f"kit {kit.name}, clock plan '{plan}': impossible clock tree: {'; '.join(bad)}")
    diffs = []
    for i in proc_idx:
        p = profile.processors[i]
        hz = tree.core_clock_hz(p.core)
        if int(round(p.clock_hz)) != hz:
            diffs.append(f"{p.name} ({p.core}) {p.clock_hz / 1e6:g} MHz in the bundle, {hz / 1e6:g} MHz on the kit")
    if diffs and recorded:
        raise EennError(f"{bundle_path}/solution.json hardware: clock plan '{plan}' gives {'; '.join(diffs)} "
                        f"(kit {kit.name}); the bundle's predictions would not be what the board does")
    if diffs:
        log(f"warning: {where}; its predicted times assume {'; '.join(diffs)}: the project runs the kit's clocks. "
            f"Re-run `eenn search` for predictions of a clock plan ({', '.join(kit.plan_names())})")
    return tree
