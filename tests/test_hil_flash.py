"""`eenn flash`: the exact commands per method (--dry-run), tool discovery, and the real run's
messages when a tool, the board or the verify is missing (fake tools on PATH stand in)."""
from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from eenn.cli import main

SN = "0B0B0F9C01139400"


@pytest.fixture
def project(tmp_path):
    p = tmp_path / "proj"
    (p / "eenn").mkdir(parents=True)
    manifest = {"schema_version": 1, "generator": "test", "bundle_hash": "ab" * 32, "kit": "CY8CKIT-062S2-43012",
                "num_classes": 3, "confidence": "max", "input": {"shape": [1, 4], "scale": 1.0, "zero_point": 0},
                "stages": [{"index": 0, "processor": "cm4", "core": "cortex-m4", "model": "models/stage0.tflite",
                            "input": {"shape": [1, 4], "scale": 1.0, "zero_point": 0},
                            "scores": {"shape": [1, 3], "scale": 1.0, "zero_point": 0, "output_index": 0},
                            "macs": 1, "predicted_s": 0.001, "tick_hz": 150000000}],
                "energy": {"active_w": [0.03], "sleep_w": [0.0005]}}
    (p / "eenn" / "project.json").write_text(json.dumps(manifest))
    (p / "Makefile").write_text("# generated\n")
    return p


@pytest.fixture
def bare_env(tmp_path, monkeypatch):
    """No ModusToolbox, no OpenOCD, no pyOCD, no make: an empty PATH and HOME."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CY_TOOLS_PATHS", raising=False)
    return bin_dir


def _tool(bin_dir: Path, name: str, script: str) -> Path:
    p = bin_dir / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("#!/bin/sh\n" + script + "\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def _flash(*args):
    return CliRunner().invoke(main, ["flash", *map(str, args)])


def _commands(output: str) -> list[str]:
    return [line for line in output.splitlines() if not line.startswith("#")]


def test_dry_run_prints_each_method_exactly(project, bare_env):
    hexf = project / "build" / "app_combined.hex"
    res = _flash(project, "--dry-run", "--probe-serial", SN)
    assert res.exit_code == 0, res.output
    assert _commands(res.output) == [f"(cd {project} && make build -j{__import__('os').cpu_count() or 2})",
                                     f"(cd {project} && make qprogram MTB_PROBE_SERIAL={SN})"]
    assert "# not installed: make" in res.output and "ModusToolbox 3.x" in res.output
    (project / "build").mkdir()
    hexf.write_text(":00000001FF\n")  # built: openocd/pyocd program it without a build step
    res = _flash(project, "--dry-run", "--method", "openocd", "--probe-serial", SN)
    assert _commands(res.output) == [
        f"(cd {project} && openocd -f interface/kitprog3.cfg -c 'adapter serial {SN}' -f target/psoc6_2m.cfg "
        f"-c 'psoc6 sflash_restrictions 1' -c 'program {hexf} verify reset exit')"]
    res = _flash(project, "--dry-run", "--method", "openocd", "--openocd-flavor", "stock")
    assert _commands(res.output) == [
        f"(cd {project} && openocd -f interface/cmsis-dap.cfg -f target/psoc6.cfg "
        f"-c 'program {hexf} verify reset exit')"]
    res = _flash(project, "--dry-run", "--method", "pyocd", "--probe-serial", SN)
    assert _commands(res.output) == [f"(cd {project} && pyocd flash -t cy8c6xxa -u {SN} {hexf})"]
    assert "# not installed: pyOCD (pip install pyocd)" in res.output
    res = _flash(project, "--dry-run", "--method", "pyocd", "--target", "cy8c6xx7")
    assert _commands(res.output) == [f"(cd {project} && pyocd flash -t cy8c6xx7 {hexf})"]


def test_modustoolbox_and_stock_openocd_are_found(project, bare_env, tmp_path):
    tools = tmp_path / "home" / "ModusToolbox" / "tools_3.2"
    exe = _tool(tools / "openocd" / "bin", "openocd", "exit 0")
    for cfg in ("interface/kitprog3.cfg", "target/psoc6_2m.cfg", "target/psoc6.cfg"):
        (tools / "openocd" / "scripts" / cfg).parent.mkdir(parents=True, exist_ok=True)
        (tools / "openocd" / "scripts" / cfg).write_text("")
    (tmp_path / "home" / "ModusToolbox" / "tools_3.10").mkdir()  # newest by version, but without OpenOCD
    res = _flash(project, "--dry-run", "--method", "openocd")
    assert "CY_TOOLS_PATHS=" + str(tools.parent / "tools_3.10") in res.output  # newest by version, not by name
    _tool(tmp_path, "img.hex", "")
    # tools_3.10 has no openocd: CY_TOOLS_PATHS picks the one that does
    res = CliRunner(env={"CY_TOOLS_PATHS": str(tools)}).invoke(
        main, ["flash", str(project), "--dry-run", "--method", "openocd", "--hex", str(tmp_path / "img.hex")])
    cmds = _commands(res.output)
    assert cmds == [f"(cd {project} && {exe} -s {tools / 'openocd' / 'scripts'} -f interface/kitprog3.cfg "
                    f"-f target/psoc6_2m.cfg -c 'psoc6 sflash_restrictions 1' "
                    f"-c 'program {tmp_path / 'img.hex'} verify reset exit')"]
    # a newer Infineon OpenOCD tree without psoc6_2m.cfg
    (tools / "openocd" / "scripts" / "target" / "psoc6_2m.cfg").unlink()
    (tools / "openocd" / "scripts" / "target" / "infineon").mkdir()
    (tools / "openocd" / "scripts" / "target" / "infineon" / "cy8c6xxa.cfg").write_text("")
    res = CliRunner(env={"CY_TOOLS_PATHS": str(tools)}).invoke(
        main, ["flash", str(project), "--dry-run", "--method", "openocd", "--hex", str(tmp_path / "img.hex")])
    assert "-f target/infineon/cy8c6xxa.cfg" in res.output
    # only a stock OpenOCD on PATH: CMSIS-DAP
    stock = _tool(bare_env, "openocd", "exit 0")
    res = _flash(project, "--dry-run", "--method", "openocd", "--hex", tmp_path / "img.hex")
    assert f"{stock} -f interface/cmsis-dap.cfg -f target/psoc6.cfg" in res.output


def test_without_tools_the_real_run_names_what_to_install(project, bare_env):
    for method, needle in (("make", "ModusToolbox 3.x"), ("openocd", "OpenOCD"), ("pyocd", "pip install pyocd")):
        res = _flash(project, "--method", method)
        assert res.exit_code == 2, res.output
        assert res.output.startswith("error: cannot flash with --method " + method)
        assert needle in res.output and "Traceback" not in res.output


def test_no_board_and_failed_verify_are_clear_messages(project, bare_env, tmp_path):
    tools = tmp_path / "home" / "ModusToolbox" / "tools_3.2"
    tools.mkdir(parents=True)
    _tool(bare_env, "make", 'if [ "$1" = build ]; then /bin/mkdir -p build && echo ":00000001FF" > '
                            'build/app_combined.hex; echo "Build complete"; exit 0; fi\n'
                            'echo "Error: unable to find a matching CMSIS-DAP device"; exit 1')
    res = _flash(project, "--probe-serial", SN)
    assert res.exit_code == 2
    assert f"no board found with serial {SN}" in res.output and "eenn hil ports" in res.output
    assert (project / "build" / "app_combined.hex").is_file()  # the build step ran
    _tool(bare_env, "openocd", 'echo "** Programming Started **"; echo "** Verify Failed **"; exit 1')
    res = _flash(project, "--method", "openocd", "--openocd-flavor", "stock")
    assert res.exit_code == 2 and "verify failed (openocd)" in res.output
    _tool(bare_env, "pyocd", 'echo "0001234 C No connected debug probes" 1>&2; exit 1')
    res = _flash(project, "--method", "pyocd")
    assert res.exit_code == 2 and "no board found (pyocd)" in res.output
    _tool(bare_env, "pyocd", 'echo "[====================] 100%"; exit 0')
    res = _flash(project, "--method", "pyocd")
    assert res.exit_code == 0, res.output
    assert "flashed" in res.output and "pyocd flash -t cy8c6xxa" in res.output


def test_unknown_kit_asks_for_the_target(project, bare_env):
    mf = project / "eenn" / "project.json"
    d = json.loads(mf.read_text())
    d["kit"] = "MY-CUSTOM-BOARD"
    mf.write_text(json.dumps(d))
    res = _flash(project, "--dry-run", "--method", "pyocd")
    assert res.exit_code == 2 and "--target" in res.output
    assert _flash(project, "--dry-run", "--method", "make").exit_code == 0  # make knows its own TARGET


def test_a_fresh_application_fetches_its_libraries_first(project, bare_env):
    for core in ("proj_cm0p", "proj_cm4"):
        (project / core).mkdir()
    res = _flash(project, "--dry-run", "--method", "make")
    cmds = _commands(res.output)
    assert cmds[0] == f"(cd {project} && make getlibs)" and "make build" in cmds[1] and "make qprogram" in cmds[2]
    for core in ("proj_cm0p", "proj_cm4"):
        (project / core / "libs").mkdir()
        (project / core / "libs" / "mtb.mk").write_text("")
    assert "getlibs" not in _flash(project, "--dry-run").output
