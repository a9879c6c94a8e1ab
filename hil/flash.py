"""`eenn flash PROJECT`: build a generated ModusToolbox project and program the kit.

Methods (`--method`):

- `make` (default): ModusToolbox's own flow in the project: `make build`, then
  `make qprogram [MTB_PROBE_SERIAL=SN]` (program without rebuilding; the serial picks one of
  several kits). Needs ModusToolbox (its `tools_*` directory: `~/ModusToolbox/tools_*`, or
  `CY_TOOLS_PATHS`).
- `openocd`: the combined image `build/app_combined.hex` (built with `make build` first if it
  is missing) programmed and verified by OpenOCD. ModusToolbox's OpenOCD talks to KitProg3
  (`interface/kitprog3.cfg`, target `psoc6_2m.cfg` for the 2 MB parts / `psoc6.cfg` for the
  1 MB parts, as the ModusToolbox recipe picks them; newer Infineon OpenOCD trees with
  `target/infineon/…` are found too); a stock OpenOCD uses `interface/cmsis-dap.cfg` +
  `target/psoc6.cfg` (KitProg3 in CMSIS-DAP mode).
- `pyocd`: `pyocd flash -t cy8c6xxa` (2 MB) / `cy8c6xx7` (1 MB) on the same image.

`--dry-run` prints the exact commands. A missing tool, no board, or a failed verify ends in one
message saying what to do, and a non-zero exit.
"""
from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from eenn.errors import EennError

METHODS = ("make", "openocd", "pyocd")
HEX = Path("build") / "app_combined.hex"

# kit (ModusToolbox TARGET) → die family: the OpenOCD target config and the pyOCD target
_DIE_2M = {"openocd": "psoc6_2m.cfg", "stock": "psoc6.cfg", "pyocd": "cy8c6xxa",
           "infineon": ("infineon/cy8c6xxa.cfg", "infineon/cy8c6xx.cfg")}
_DIE_1M = {"openocd": "psoc6.cfg", "stock": "psoc6.cfg", "pyocd": "cy8c6xx7",
           "infineon": ("infineon/cy8c6xx7.cfg", "infineon/cy8c6xx.cfg")}
KITS = {
    "CY8CKIT-062S2-43012": _DIE_2M, "CY8CPROTO-062-4343W": _DIE_2M, "CY8CEVAL-062S2": _DIE_2M,
    "CY8CEVAL-062S2-LAI-4373M2": _DIE_2M, "CY8CEVAL-062S2-MUR-43439M2": _DIE_2M,
    "CY8CKIT-062-BLE": _DIE_1M, "CY8CKIT-062-WIFI-BT": _DIE_1M, "CY8CPROTO-063-BLE": _DIE_1M,
}
PYOCD_TARGETS = {"cy8c6xxa": _DIE_2M, "cy8c6xx7": _DIE_1M}

NO_BOARD = re.compile(r"unable to find a matching CMSIS-DAP device|no (?:KitProg3?|CMSIS-DAP) device|"
                      r"unable to find (?:a )?KitProg|No connected debug probes|No available debug probes|"
                      r"unable to open CMSIS-DAP device|Could not find any connected|no device found|"
                      r"No probe with unique ID|No KitProg", re.IGNORECASE)
NO_TARGET = re.compile(r"Error connecting DP|cannot read IDR|Failed to connect to target|"
                       r"target not examined|SWD/JTAG communication failure|Error: init mode failed", re.IGNORECASE)
VERIFY_FAILED = re.compile(r"verify failed|verification failed|\*\* Verify Failed \*\*|checksum mismatch",
                           re.IGNORECASE)


@dataclass
class Step:
    what: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    def shell(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"(cd {shlex.quote(str(self.cwd))} && {env + ' ' if env else ''}{shlex.join(self.argv)})"


@dataclass
class Plan:
    method: str
    steps: list[Step]
    missing: list[str]  # tools not found: the message says how to install them
    notes: list[str] = field(default_factory=list)


def mtb_tools_dir() -> Path | None:
    """ModusToolbox's tools directory: CY_TOOLS_PATHS, else the newest ~/ModusToolbox/tools_*."""
    env = os.environ.get("CY_TOOLS_PATHS")
    if env:
        p = Path(env.split()[0]).expanduser()
        return p if p.is_dir() else None
    found = sorted(glob.glob(str(Path("~/ModusToolbox").expanduser() / "tools_*")),
                   key=lambda s: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", s)])
    return Path(found[-1]) if found else None


def _needs_getlibs(project: Path) -> bool:
    """A multi-core ModusToolbox application whose projects have no `libs/mtb.mk` yet (written
    by `make getlibs`) cannot be built."""
    projects = [p for p in project.glob("proj_*") if p.is_dir()]
    return bool(projects) and not all((p / "libs" / "mtb.mk").is_file() for p in projects)


def _die(kit: str, target: str | None) -> dict:
    if target:
        if target not in PYOCD_TARGETS:
            raise EennError(f"--target {target}: expected one of {', '.join(PYOCD_TARGETS)}")
        return PYOCD_TARGETS[target]
    if kit not in KITS:
        raise EennError(f"kit {kit!r} (project.json) is not one eenn knows how to flash directly; pass --target "
                        f"cy8c6xxa (PSoC 6 with 2 MB flash) or cy8c6xx7 (1 MB), or use --method make")
    return KITS[kit]


def _openocd(override: str | None, flavor: str) -> tuple[str, Path | None, str, bool]:
    """(executable, scripts dir, flavor, found)."""
    if override:
        exe = shutil.which(override) or (override if Path(override).is_file() else None)
        if exe is None:
            return override, None, flavor if flavor != "auto" else "stock", False
        scripts = Path(exe).resolve().parent.parent / "scripts"
        is_mtb = (scripts / "interface" / "kitprog3.cfg").is_file()
        return exe, scripts if scripts.is_dir() else None, ("mtb" if is_mtb else "stock") if flavor == "auto" else flavor, True
    tools = mtb_tools_dir()
    if flavor in ("auto", "mtb") and tools is not None and (tools / "openocd" / "bin" / "openocd").is_file():
        return str(tools / "openocd" / "bin" / "openocd"), tools / "openocd" / "scripts", "mtb", True
    on_path = shutil.which("openocd")
    if on_path and flavor in ("auto", "stock"):
        return on_path, None, "stock", True
    return "openocd", None, "mtb" if flavor == "auto" else flavor, False


def _mtb_target_cfg(scripts: Path | None, die: dict) -> str:
    if scripts is not None and not (scripts / "target" / die["openocd"]).is_file():
        for alt in die["infineon"]:
            if (scripts / "target" / alt).is_file():
                return f"target/{alt}"
    return f"target/{die['openocd']}"


def plan(project: str | Path, *, method: str = "make", probe_serial: str | None = None, target: str | None = None,
         hex_file: str | Path | None = None, openocd: str | None = None, openocd_flavor: str = "auto",
         build: bool = True) -> Plan:
    """The commands `eenn flash` runs, and the tools it could not find."""
    from eenn.codegen.manifest import load_manifest

    if method not in METHODS:
        raise EennError(f"--method {method}: expected one of {', '.join(METHODS)}")
    project = Path(project).resolve()
    manifest = load_manifest(project)
    if not (project / "Makefile").is_file() and (method == "make" or (hex_file is None and not (project / HEX).is_file())):
        raise EennError(f"{project}: no Makefile; is it a project made by `eenn generate`?")
    missing: list[str] = []
    notes: list[str] = []
    steps: list[Step] = []
    tools = mtb_tools_dir()
    make = "make"  # from PATH when run (ModusToolbox's modus-shell provides it on Windows)
    env = {"CY_TOOLS_PATHS": str(tools)} if tools is not None and "CY_TOOLS_PATHS" not in os.environ else {}

    def need_make() -> None:
        if shutil.which("make") is None:
            missing.append("make (GNU make; ModusToolbox ships one in tools_*/modus-shell on Windows)")
        if tools is None:
            missing.append("ModusToolbox 3.x (https://www.infineon.com/modustoolbox; or set CY_TOOLS_PATHS to its "
                           "tools_* directory)")

    image = Path(hex_file).resolve() if hex_file else project / HEX

    def build_steps() -> None:
        need_make()
        if _needs_getlibs(project):
            steps.append(Step("getlibs", [make, "getlibs"], project, env))
            notes.append("the libraries (BSP, PDL, ...) are not fetched yet: `make getlibs` first (needs the network)")
        steps.append(Step("build", [make, "build", f"-j{os.cpu_count() or 2}"], project, env))

    if method == "make":
        build_steps()
        prog = [make, "qprogram"] + ([f"MTB_PROBE_SERIAL={probe_serial}"] if probe_serial else [])
        steps.append(Step("program", prog, project, env))
        return Plan(method, steps, missing, notes)

    die = _die(manifest.kit, target)
    if hex_file is None and build and not image.is_file():
        notes.append(f"{HEX} not built yet: `make build` first")
        build_steps()
    elif hex_file is not None and not image.is_file():
        raise EennError(f"{image}: no such file (--hex)")

    if method == "openocd":
        exe, scripts, flavor, found = _openocd(openocd, openocd_flavor)
        if not found:
            missing.append("OpenOCD: ModusToolbox's (tools_*/openocd, for KitProg3) or a stock one on PATH "
                           "(apt install openocd; KitProg3 in CMSIS-DAP mode)")
        argv = [exe]
        if scripts is not None:
            argv += ["-s", str(scripts)]
        if flavor == "mtb":
            argv += ["-f", "interface/kitprog3.cfg"]
            if probe_serial:
                argv += ["-c", f"adapter serial {probe_serial}"]
            argv += ["-f", _mtb_target_cfg(scripts, die), "-c", "psoc6 sflash_restrictions 1"]
        else:
            argv += ["-f", "interface/cmsis-dap.cfg"]
            if probe_serial:
                argv += ["-c", f"adapter serial {probe_serial}"]
            argv += ["-f", f"target/{die['stock']}"]
        argv += ["-c", f"program {image} verify reset exit"]
        steps.append(Step("program", argv, project))
    else:
        exe = shutil.which("pyocd")
        if exe is None:
            missing.append("pyOCD (pip install pyocd)")
        argv = [exe or "pyocd", "flash", "-t", die["pyocd"]]
        if probe_serial:
            argv += ["-u", probe_serial]
        argv += [str(image)]
        steps.append(Step("program", argv, project))
    return Plan(method, steps, missing, notes)


def _diagnose(step: Step, output: str, probe_serial: str | None) -> str:
    tool = Path(step.argv[0]).name
    tail = "\n".join(output.strip().splitlines()[-8:])
    if NO_BOARD.search(output):
        which = f" with serial {probe_serial}" if probe_serial else ""
        return (f"no board found{which} ({tool}): connect the kit's KitProg3 USB port, close other programs using the "
                "probe, and for a stock OpenOCD/pyOCD put KitProg3 in CMSIS-DAP mode (its mode button); "
                "`eenn hil ports` lists the probes and their serials.\n" + tail)
    if VERIFY_FAILED.search(output):
        return (f"verify failed ({tool}): the flash does not hold the image after programming; check the board's "
                "power and try again, or erase the chip first.\n" + tail)
    if NO_TARGET.search(output):
        return (f"the probe is there but the PSoC 6 does not answer ({tool}): check the board's power and the "
                "target selection (--target), or reset the board and try again.\n" + tail)
    return f"{step.what} failed ({shlex.join(step.argv)}), exit status {{rc}}:\n{tail}"


def run_plan(p: Plan, *, probe_serial: str | None = None, echo=print, timeout_s: float = 900) -> None:
    if p.missing:
        raise EennError(f"cannot flash with --method {p.method}: not installed: " + "; ".join(p.missing))
    for step in p.steps:
        echo(f"$ {step.shell()}")
        try:
            proc = subprocess.run(step.argv, cwd=step.cwd, env={**os.environ, **step.env}, capture_output=True,
                                  text=True, timeout=timeout_s)
        except FileNotFoundError:
            raise EennError(f"{step.argv[0]}: not found; install it (see `eenn flash --help`)") from None
        except subprocess.TimeoutExpired:
            raise EennError(f"{step.what} did not finish within {timeout_s:g} s: {shlex.join(step.argv)}") from None
        output = (proc.stdout or "") + (proc.stderr or "")
        if proc.returncode != 0 or VERIFY_FAILED.search(output):
            raise EennError(_diagnose(step, output, probe_serial).replace("{rc}", str(proc.returncode)))
        if NO_BOARD.search(output):  # some tools print the error and exit 0
            raise EennError(_diagnose(step, output, probe_serial))
        last = [line for line in output.strip().splitlines() if line.strip()][-1:] or ["done"]
        echo(f"  {step.what}: {last[0]}")
