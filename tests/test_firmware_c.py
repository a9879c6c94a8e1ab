"""The C runtime itself: host unit tests, C vs Python integer rules, cross-compilation, fuzzing."""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eenn.augment.quant import confidence_q, exit_taken, quantize_multiplier, requantize, threshold_q
from eenn.hil.host_build import build_host_library, host_sources, source_hash
from eenn.paths import firmware_dir
from tests.conftest import missing_tool

FW = firmware_dir()
REPO = Path(__file__).resolve().parent.parent
WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror"]


def _cc() -> str:
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    missing_tool("no host C compiler (install gcc)")


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------------------------------- unit tests
def test_c_unit_tests_pass_under_sanitizers(tmp_path):
    """firmware/tests/test_runtime.c: integer rules, every handoff transition, timeouts, runtime."""
    cc = _cc()
    sources, includes = host_sources()
    exe = tmp_path / "test_runtime"
    base = [cc, *WARN, "-g", *(f"-I{d}" for d in includes), *map(str, sources), str(FW / "tests" / "test_runtime.c"),
            "-o", str(exe)]
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    build = _run(base[:1] + san + base[1:])
    if build.returncode != 0:  # a toolchain without the sanitizer runtimes: still run the tests
        build = _run(base)
    assert build.returncode == 0, build.stderr
    res = _run([str(exe)], timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    checks = re.search(r"(\d+) checks, 0 failures", res.stdout)
    assert checks and int(checks.group(1)) > 200, res.stdout


# ---------------------------------------------------------------------------------------- C vs Python
@pytest.fixture(scope="module")
def clib():
    lib = ctypes.CDLL(str(build_host_library()))
    i8p = ctypes.POINTER(ctypes.c_int8)
    lib.ee_requant.argtypes = [i8p, i8p, ctypes.c_size_t, ctypes.c_void_p]
    lib.ee_confidence_q.argtypes = [i8p, ctypes.c_size_t, ctypes.c_uint32]
    lib.ee_confidence_q.restype = ctypes.c_int32
    lib.ee_exit_taken.argtypes = [i8p, ctypes.c_size_t, ctypes.c_int32, ctypes.c_uint32]
    lib.ee_argmax.argtypes = [i8p, ctypes.c_size_t]
    lib.ee_argmax.restype = ctypes.c_uint32
    lib.ee_crc32_update.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
    lib.ee_crc32_update.restype = ctypes.c_uint32
    lib.ee_quantize_f32.argtypes = [ctypes.c_float, ctypes.c_float, ctypes.c_int32]
    lib.ee_quantize_f32.restype = ctypes.c_int8
    return lib


class _Requant(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in ("enabled", "multiplier", "shift", "in_zero_point", "out_zero_point")]


def _c_requant(lib, q: np.ndarray, m: int, s: int, zin: int, zout: int) -> np.ndarray:
    src = np.ascontiguousarray(q, dtype=np.int8)
    dst = np.empty_like(src)
    rq = _Requant(1, m, s, zin, zout)
    i8p = ctypes.POINTER(ctypes.c_int8)
    lib.ee_requant(dst.ctypes.data_as(i8p), src.ctypes.data_as(i8p), src.size, ctypes.byref(rq))
    return dst


ALL_INT8 = np.arange(-128, 128, dtype=np.int8)
zero_points = st.integers(-128, 127)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-6, max_value=2.0**23, allow_nan=False, exclude_min=True), zero_points, zero_points)
def test_c_requant_matches_quant_py_on_every_int8(clib, ratio, zin, zout):
    m, s = quantize_multiplier(ratio)
    try:
        want = requantize(ALL_INT8, m, s, zin, zout)
    except OverflowError:  # quant.py refuses; the C saturates (checked below)
        return
    assert np.array_equal(_c_requant(clib, ALL_INT8, m, s, zin, zout), want)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(-31, 30), zero_points, zero_points)
def test_c_requant_matches_raw_constants(clib, m, s, zin, zout):
    """Also constants that quantize_multiplier would never produce (any multiplier, any shift)."""
    try:
        want = requantize(ALL_INT8, m, s, zin, zout)
    except OverflowError:
        got = _c_requant(clib, ALL_INT8, m, s, zin, zout)
        assert got.dtype == np.int8  # saturates instead of overflowing (UB-free by construction)
        return
    assert np.array_equal(_c_requant(clib, ALL_INT8, m, s, zin, zout), want)


def test_c_requant_in_place(clib):
    q = ALL_INT8.copy()
    m, s = quantize_multiplier(0.37)
    want = requantize(q, m, s, -5, 17)
    i8p = ctypes.POINTER(ctypes.c_int8)
    rq = _Requant(1, m, s, -5, 17)
    clib.ee_requant(q.ctypes.data_as(i8p), q.ctypes.data_as(i8p), q.size, ctypes.byref(rq))
    assert np.array_equal(q, want)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(-128, 127), min_size=2, max_size=40),
       st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
       st.sampled_from(["max", "margin"]), zero_points,
       st.floats(min_value=1e-4, max_value=0.5).map(lambda s: float(np.float32(s))))
def test_c_exit_decision_matches_quant_py(clib, scores, t, mode, zp, scale):
    q = np.array(scores, dtype=np.int8)
    thr = threshold_q(t, scale, zp, mode)
    i8p = ctypes.POINTER(ctypes.c_int8)
    code = {"max": 0, "margin": 1}[mode]
    thr32 = max(min(thr, 2**31 - 1), -(2**31))
    assert clib.ee_confidence_q(q.ctypes.data_as(i8p), q.size, code) == confidence_q(q, mode)[0]
    assert bool(clib.ee_exit_taken(q.ctypes.data_as(i8p), q.size, thr32, code)) == bool(exit_taken(q, thr, mode)[0])
    assert clib.ee_argmax(q.ctypes.data_as(i8p), q.size) == int(np.argmax(q))


f32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
f32_scales = st.floats(min_value=float(np.float32(1e-8)), max_value=10.0, width=32)


@settings(max_examples=500, deadline=None)
@given(f32, f32_scales, zero_points, st.integers(-300, 300))
def test_c_float32_quantization_matches_input_types(clib, x, scale, zp, k):
    """ee_quantize_f32 (`eenn-input float32`) vs eenn.hil.input_types.quantize_f32: any float,
    and the halfway points (k + 1/2) x scale with their neighbours, where rounding decides."""
    from eenn.hil.input_types import quantize_f32

    half = np.float32((np.float32(k) + np.float32(0.5)) * np.float32(scale))
    for v in (np.float32(x), half, np.nextafter(half, np.float32(np.inf)), np.nextafter(half, np.float32(-np.inf))):
        want = int(quantize_f32(np.array([v]), scale, zp)[0])
        assert clib.ee_quantize_f32(float(v), scale, zp) == want, (v, scale, zp)


@pytest.fixture(scope="module")
def host_fw():
    from eenn.hil.virtual_board import HostFirmware
    from tests.test_protocol_doc import _fake, _manifest

    fw = HostFirmware(_fake)
    fw.configure(_manifest())
    yield fw
    fw.close()


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=float(np.float32(1e-30)), max_value=float(np.float32(1e30)), width=32), zero_points)
def test_profile_prints_the_input_scale_exactly(host_fw, scale, zp):
    """`m-eenn-input-[float32 scale HEX zero-point Z]` reads back (float.fromhex) to the float32 scale."""
    from eenn.hil.input_types import parse_input_line

    host_fw.lib.ee_host_set_input(scale, zp, 0)
    host_fw.start(banner=False)
    line = host_fw.feed(b"eenn-input float32%").decode().split("\r\n")[0]
    assert line.startswith("m-eenn-input-[float32 scale 0x") and line.endswith("]"), line
    assert parse_input_line(line[len("m-eenn-input-["):-1]) == ("float32", scale, zp)


@given(st.binary(max_size=300))
def test_c_crc32_is_zlib_crc32(clib, data):
    import zlib

    assert clib.ee_crc32_update(0, data, len(data)) == zlib.crc32(data)


def test_host_build_is_cached_by_source_hash(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or missing_tool("no C compiler")
    root = tmp_path / "fw"
    shutil.copytree(FW, root, ignore=shutil.ignore_patterns("__pycache__"))
    first = build_host_library(cache=tmp_path / "cache", root=root)
    mtime = first.stat().st_mtime_ns
    assert build_host_library(cache=tmp_path / "cache", root=root) == first
    assert first.stat().st_mtime_ns == mtime  # not rebuilt
    h = source_hash(cc, root)
    src = root / "src" / "ee_status.c"
    src.write_text(src.read_text() + "\n/* edited */\n")
    assert source_hash(cc, root) != h
    second = build_host_library(cache=tmp_path / "cache", root=root)
    assert second != first and second.is_file()


# ---------------------------------------------------------------------------------------- docs
def test_every_error_string_is_documented():
    """Each `e-[` text the protocol source can produce appears in docs/protocol.md."""
    src = (FW / "src" / "ee_protocol.c").read_text()
    doc = (REPO / "docs" / "protocol.md").read_text()
    fragments = set(re.findall(r'err_text\(p, "([^"]+)"\)', src))
    fragments |= set(re.findall(r'ee_out_str\(&p->out, "([^"]*)"\);', src))
    fragments = {f for f in fragments if f.strip() and not f.startswith(("m-", "e-", "\r"))}
    missing = sorted(f for f in fragments if f.strip(" ':;,()") and f.strip(" ':;,()") not in doc)
    assert not missing, f"not in docs/protocol.md: {missing}"
    status = re.findall(r'return "([^"]+)";', (FW / "src" / "ee_status.c").read_text())
    assert status and not [s for s in status if s not in doc]


# ---------------------------------------------------------------------------------------- cross-compilation
ARM_CPUS = {
    "cortex-m0plus": ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"],
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
}


def _arm_sources() -> list[Path]:
    """Every C source under firmware/ except the PSoC 6 port (it needs the PDL headers)."""
    return sorted(p for p in FW.rglob("*.c") if "psoc6" not in p.parts)


@pytest.mark.arm
@pytest.mark.parametrize("cpu", sorted(ARM_CPUS))
def test_firmware_cross_compiles_for_both_cores(cpu, tmp_path):
    gcc = shutil.which("arm-none-eabi-gcc")
    if not gcc:
        missing_tool("arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    flags = [*ARM_CPUS[cpu], *WARN, "-Os", "-ffunction-sections", "-fdata-sections",
             f"-I{FW / 'include'}", f"-I{FW / 'ports' / 'host'}"]
    for src in _arm_sources():
        res = _run([gcc, *flags, "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))])
        assert res.returncode == 0, f"{src.relative_to(FW)} for {cpu}:\n{res.stderr}"
    # and the runtime links on bare metal with newlib-nano: no printf, no malloc, no missing helper
    elf = tmp_path / "example.elf"
    res = _run([gcc, *flags, *map(str, sorted((FW / "src").glob("*.c"))), str(FW / "tests" / "config_example.c"),
                "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections", "-o", str(elf)])
    assert res.returncode == 0, res.stderr
    nm = shutil.which("arm-none-eabi-nm") or "arm-none-eabi-nm"
    names = {line.split()[-1] for line in _run([nm, str(elf)]).stdout.splitlines() if line.strip()}
    assert not names & {"malloc", "_malloc_r", "free", "printf", "sprintf", "snprintf", "_vfprintf_r"}


# ---------------------------------------------------------------------------------------- fuzzing
def test_fuzz_protocol_short_run(tmp_path):
    """A few seconds of libFuzzer on the protocol parser; benchmarks/fuzz_protocol.sh runs it long."""
    clang = shutil.which("clang")
    if not clang:
        missing_tool("clang not installed (apt-get install clang libclang-rt-14-dev)")
    exe = tmp_path / "fuzz_protocol"
    sources, includes = host_sources()
    res = _run([clang, "-g", "-O1", *WARN, "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
                *(f"-I{d}" for d in includes), *map(str, sources), str(FW / "fuzz" / "fuzz_protocol.c"),
                "-o", str(exe)])
    if res.returncode != 0 and ("fuzzer" in res.stderr and ("cannot find" in res.stderr or "No such" in res.stderr)):
        missing_tool("libFuzzer runtime not installed (apt-get install libclang-rt-14-dev)")
    assert res.returncode == 0, res.stderr
    corpus = tmp_path / "corpus"
    shutil.copytree(FW / "fuzz" / "corpus", corpus)
    # -rss_limit_mb=0: libFuzzer reads its peak RSS with getrusage, and a process started from this
    # pytest (TensorFlow loaded, often over libFuzzer's 2 GB default) inherits that peak across exec.
    # The firmware allocates nothing; one allocation over 256 MB is still an error.
    run = _run([str(exe), "-runs=20000", f"-dict={FW / 'fuzz' / 'protocol.dict'}", "-max_len=4096",
                "-rss_limit_mb=0", "-malloc_limit_mb=256", "-print_final_stats=1", str(corpus)], timeout=300,
               cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "stat::number_of_executed_units: 20000" in run.stderr
