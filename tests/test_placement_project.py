"""Generated projects whose stages sit on any core (issue 13): several stages on one core, stage 0
on the CM4 with the CM0+ serving only the protocol, and (runtime and virtual board) three cores.

Through `eenn generate` and the virtual board: the board's class, exit and int8 scores equal the
int8 reference chain sample by sample, and the handoff count the board reports (m-eenn-handoffs)
equals the number of processor changes on the path taken, counted here from the bundle's own
segment processors."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from eenn.codegen.manifest import ProjectManifest
from eenn.codegen.reference import Int8Chain
from eenn.hil.client import parse_profile, parse_results
from eenn.hil.virtual_board import HostFirmware, VirtualBoard
from tests.conftest import _cached, missing_tool

KIT = "CY8CKIT-062S2-43012"
PLACEMENTS = {"cm4_only": ("cm4", "cm4", "cm4"), "cm0p_twice": ("cm0p", "cm0p", "cm4")}
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")


def _project(tmp_path_factory, name: str):
    from eenn.codegen.generate import generate
    from tests.bundles import placed_digits_bundle

    def build():
        info = placed_digits_bundle(tmp_path_factory.mktemp("bundles") / name, PLACEMENTS[name])
        return info, generate(info["path"], KIT, tmp_path_factory.mktemp("projects") / name)

    return _cached(("placed", name), build)


@pytest.fixture(scope="module", params=sorted(PLACEMENTS))
def placed(request, tmp_path_factory):
    return request.param, *_project(tmp_path_factory, request.param)


def processor_changes(processors: tuple[str, ...], exit_stage: int) -> int:
    """Core changes on the path of an inference that answers at `exit_stage`; it starts on the CM0+."""
    path = ["cm0p", *processors[: exit_stage + 1]]
    return sum(a != b for a, b in zip(path, path[1:]))


def test_manifest_and_sources_follow_the_placement(placed):
    name, info, res = placed
    m, out = res.manifest, res.out
    procs = info["processors"]
    assert [s.processor for s in m.stages] == list(procs)
    assert m.stage_cores() == [{"cm0p": 0, "cm4": 1}[p] for p in procs]
    assert [(c.index, c.processor, c.stages) for c in m.cores] == [
        (0, "cm0p", [k for k, p in enumerate(procs) if p == "cm0p"]),
        (1, "cm4", [k for k, p in enumerate(procs) if p == "cm4"])]
    # a handoff is recorded only where the processor changes
    for k, s in enumerate(m.stages):
        prev = procs[k - 1] if k else "cm0p"
        assert (s.handoff is not None) == (procs[k] != prev), k
    for app in res.apps:
        proj = out / app.project
        ks = app.stages
        for k in range(len(procs)):
            assert (proj / f"ee_model_stage{k}.c").is_file() == (k in ks)
        if not ks:  # the protocol-only CM0+: no TFLite Micro anywhere in its project
            assert not (proj / "ee_stages.cpp").exists() and (proj / "ee_no_stage.c").is_file()
            assert not list((proj / "deps").glob("tflite-micro.mtb"))
            assert "SEARCH_tflite-micro" not in (proj / "Makefile").read_text()
            assert "$(SEARCH_" not in (proj / ".cyignore").read_text()
            assert app.model_bytes == 0 and res.layout.cm0p.code_budget < 64 * 1024
            continue
        src = (proj / "ee_stages.cpp").read_text()
        union: list[str] = []
        for k in ks:
            union += [op for op in m.stages[k].ops if op not in union]
        assert app.ops == union
        assert f"tflite::MicroMutableOpResolver<{len(union)}> resolver;" in src
        calls = re.findall(r"resolver\.(Add\w+\((?:tflite::Register_\w+\(\))?\)) != kTfLiteOk", src)
        assert calls == app.resolver_calls and len(calls) == len(union)
        for k in ks:
            assert f"ee_model_stage{k}, EE_CFG_STAGE{k}_INPUT_LEN" in src
        # one arena, the largest stage's; the models of all its stages in its flash budget
        assert app.arena_bytes == max(m.stages[k].arena_bytes for k in ks)
        assert f"#define EE_CFG_CORE{app.index}_ARENA_BYTES {app.arena_bytes}u" in (
            out / "shared/include/ee_config.h").read_text()
        core = res.layout.cm0p if app.index == 0 else res.layout.cm4
        assert core.model_bytes == sum((out / "eenn/models" / f"stage{k}.tflite").stat().st_size for k in ks)
        assert core.flash.size >= core.flash_need
    sh = res.layout.shared
    assert sh.fm_buffers == 2  # three stages: ping-pong
    assert sh.input_bytes == (m.input.size if procs[0] != "cm0p" else 0)
    main0 = (out / "proj_cm0p/main.c").read_text()
    assert ('CY_SECTION(".cy_sharedmem") CY_ALIGN(4) static int8_t ee_input' in main0) == (procs[0] != "cm0p")
    assert ".fm = {ee_fm0, ee_fm1}" in main0


def test_board_equals_the_int8_chain_and_counts_handoffs(placed):
    name, info, res = placed
    procs = info["processors"]
    chain = Int8Chain(res.out)
    board = VirtualBoard(res.out)
    try:
        prof = parse_profile(board.handle(b"name%").decode().split("\r\n"), board.handle(b"profile%").decode().split("\r\n"))
        assert prof.stage_cores == res.manifest.stage_cores() and prof.cores == 2
        x = info["x_test"][:80]
        exits, handoffs, records = [], [], []
        for i, xi in enumerate(x):
            q = chain.quantize_input(xi).astype(np.int8).reshape(-1)
            ref = chain.run_quantized(q)
            board.handle(f"db load {q.size}%".encode())
            for at in range(0, q.size, 100):  # not `i`: the record below is indexed by the sample
                board.handle(b"db " + q[at:at + 100].tobytes().hex().encode() + b"%")
            got = parse_results(board.handle(b"infer 1 0%").decode().split("\r\n"))
            assert (got.cls, got.exit) == (ref.cls, ref.exit)
            assert got.scores_q == ref.scores.astype(int).tolist()
            assert got.handoffs == processor_changes(procs, got.exit) == ref.handoffs
            # the cost model's time: the stages run, plus a handoff only where the processor changes
            want_s = sum(s.predicted_s + (s.handoff.link_s + s.handoff.wakeup_s if s.handoff else 0.0)
                         for s in res.manifest.stages[:got.exit + 1])
            assert got.elapsed_us == pytest.approx(want_s * 1e6, abs=2.0)
            exits.append(got.exit)
            handoffs.append(got.handoffs)
            records.append({"index": i, "class": got.cls, "exit": got.exit, "ticks": got.ticks,
                            "elapsed_us": got.elapsed_us, "handoffs": got.handoffs})
        assert len(set(exits)) >= 2, exits  # the test covers more than one path
        if procs[0] == "cm4":
            assert set(handoffs) == {1}  # every inference goes to the CM4 and back
        else:
            assert {0, 1} <= set(handoffs)
        # the summary: handoffs per inference per exit path, measured and implied by the placement
        from eenn.hil.energy import DatasheetEnergy
        from eenn.hil.summary import summarize

        energy = DatasheetEnergy.from_manifest(res.manifest)
        summary = summarize(records, np.asarray(info["y_test"][:80]), res.manifest, tick_hz=prof.core_tick_hz,
                            timing=prof.timing, energy_model=energy)
        # m-eenn-elapsed-us is whole microseconds: the time beyond the cores' ticks (the handoffs) is
        # off by up to 1 us, at up to the largest power
        joule_tol = 2e-6 * max(energy.power_w(c) for c in range(len(res.manifest.cores)))
        for k, path in enumerate(summary["paths"]):
            assert path["handoffs"]["predicted"] == processor_changes(procs, k)
            if path["count"]:
                assert path["handoffs"]["mean"] == path["handoffs"]["predicted"]
                assert path["latency_s"]["mean"] == pytest.approx(path["latency_s"]["predicted"], abs=2e-6)
                assert path["energy_j"]["mean"] == pytest.approx(path["energy_j"]["predicted"], abs=joule_tol)
            assert [c["core"] for c in path["cores"]] == sorted({0, *res.manifest.stage_cores()[:k + 1]})
    finally:
        board.close()
    ref = res.reference
    assert (ref.whole_eenn.n, ref.whole_eenn.same_class, ref.whole_eenn.same_exit) == (ref.n, ref.n, ref.n)


CPUS = {
    "cortex-m0plus": ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"],
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
}


@pytest.mark.arm
def test_generated_c_of_the_new_layouts_compiles_for_both_cores(placed, tmp_path):
    """Every portable generated .c (config, models, the no-stage hook, the runtime copy) compiles
    for the core whose project holds it, and the configuration passes the runtime's check."""
    from tests.test_codegen_project import _portable_sources

    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        missing_tool("arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    name, info, res = placed
    out = res.out
    incs = [f"-I{out / d}" for d in ("shared/include", "shared/eenn_runtime/include", "proj_cm0p", "proj_cm4")]
    files = [p for p in _portable_sources(out) if p.suffix == ".c"]
    assert any(p.name == "ee_no_stage.c" for p in files) == (info["processors"][0] == "cm4")
    for cpu, proj in (("cortex-m0plus", "proj_cm0p"), ("cortex-m4", "proj_cm4")):
        flags = [*CPUS[cpu], "-std=c11", "-Os", "-Wall", "-Wextra", "-Werror", *incs]
        for p in files:
            rel = p.relative_to(out).as_posix()
            if rel.startswith("proj_") and not rel.startswith(proj):
                continue
            r = subprocess.run([gcc, *flags, f"-I{p.parent}", "-c", str(p), "-o", str(tmp_path / "x.o")],
                               capture_output=True, text=True)
            assert r.returncode == 0, f"{rel} for {cpu}:\n{r.stderr}"
        check = tmp_path / "check.c"
        check.write_text('#include "ee_config.h"\n'
                         "int check(void) { return ee_config_check(&ee_app_config, (const ee_buffers_t *)0) != 0; }\n")
        r = subprocess.run([gcc, *flags, "-c", str(check), "-o", str(tmp_path / "c.o")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_generated_config_boots_on_the_host(placed, tmp_path):
    """The project's ee_config.c with its runtime copy, on the host: the check passes and the
    placement is the manifest's."""
    from eenn.hil.host_build import find_compiler
    from eenn.paths import firmware_dir

    name, info, res = placed
    out = res.out
    main = tmp_path / "main.c"
    main.write_text('#include <stdio.h>\n#include "ee_config.h"\n'
                    "int main(void) { const ee_config_t *c = &ee_app_config; const char *bad = ee_config_check(c, 0);\n"
                    '  printf("%s %u", bad ? bad : "ok", (unsigned)ee_n_cores(c));\n'
                    '  for (uint32_t k = 0; k < c->n_stages; k++) printf(" %u", (unsigned)ee_stage_core(c, k));\n'
                    '  printf(" %u\\n", (unsigned)ee_core_tick_hz(c, 0)); return bad != 0; }\n')
    runtime = out / "shared" / "eenn_runtime"
    host = firmware_dir() / "ports" / "host"
    exe = tmp_path / "cfg"
    r = subprocess.run([find_compiler(), "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{out / 'shared/include'}",
                        f"-I{runtime / 'include'}", f"-I{host}", str(out / "shared/source/ee_config.c"),
                        *map(str, sorted((runtime / "src").glob("*.c"))), *map(str, sorted(host.glob("*.c"))),
                        str(main), "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30).stdout.split()
    m = res.manifest
    assert got == ["ok", "2", *map(str, m.stage_cores()), str(m.cores[0].tick_hz)]


# ------------------------------------------------------------------ three cores (host config)
def _three_core_manifest() -> ProjectManifest:
    """Four stages on three cores, two on the middle one: [0, 1, 1, 2]."""
    q = {"scale": 0.02, "zero_point": -128}
    sc = {"shape": [1, 3], "scale": 1 / 256, "zero_point": -128}
    cores = [0, 1, 1, 2]
    hz = [100_000_000, 150_000_000, 200_000_000]
    stages = []
    for k, c in enumerate(cores):
        last = k == len(cores) - 1
        st = {"index": k, "processor": f"p{c}", "core": "x", "model": f"m{k}", "input": {"shape": [1, 4], **q},
              "scores": {"output_index": 0 if last else 1, **sc}, "macs": 0, "predicted_s": 0.001 * (k + 1),
              "tick_hz": hz[c], "core_index": c}
        if not last:
            st.update(feature_map={"output_index": 0, "shape": [1, 4], **q}, threshold=0.9, threshold_q=100)
        if k == 0 or cores[k - 1] != c:
            st["handoff"] = {"link_s": 0.0002, "wakeup_s": 0.0003} if k else None
        stages.append(st)
    return ProjectManifest.from_dict({
        "schema_version": 1, "generator": "test", "bundle_hash": "cd" * 32, "kit": "host", "num_classes": 3,
        "confidence": "max", "input": {"shape": [1, 4], **q}, "stages": stages,
        "energy": {"active_w": [0, 0, 0], "sleep_w": [0, 0, 0]},
        "cores": [{"index": i, "processor": f"p{i}", "core": "x", "tick_hz": h,
                   "stages": [k for k, c in enumerate(cores) if c == i]} for i, h in enumerate(hz)],
    })


def _stage_plus_one(stage, x, fm_len, n_scores):
    """Scores = the input's first three bytes; the feature map = the input + 1 (saturated)."""
    fm = np.clip(x.astype(np.int16) + 1, -128, 127).astype(np.int8)
    return x[:3].astype(np.int8), (fm if fm_len else None)


@pytest.mark.parametrize("third, exit_stage", [(120, 0), (98, 2), (97, 3), (60, 3)])
def test_three_cores_on_the_virtual_board(third, exit_stage):
    """Stage k sees the input + k; it exits once its third score reaches 100. Handoffs: one per
    core change (core 1 forwards to core 2 itself), and the time charges only those."""
    m = _three_core_manifest()
    fw = HostFirmware(_stage_plus_one)
    try:
        fw.configure(m)
        fw.start(banner=False)
        prof = parse_profile(fw.feed(b"name%").decode().split("\r\n"), fw.feed(b"profile%").decode().split("\r\n"))
        assert (prof.cores, prof.stage_cores, prof.core_tick_hz) == (3, [0, 1, 1, 2], [100_000_000, 150_000_000,
                                                                                        200_000_000])
        data = bytes([1, 50, third, 4])
        fw.feed(b"db load 4%")
        fw.feed(b"db " + data.hex().encode() + b"%")
        got = parse_results(fw.feed(b"infer 1 0%").decode().split("\r\n"))
        assert got.exit == exit_stage
        assert got.handoffs == m.handoffs(exit_stage) == {0: 0, 2: 1, 3: 2}[exit_stage]
        want_s = sum(s.predicted_s + (s.handoff.link_s + s.handoff.wakeup_s if s.handoff else 0.0)
                     for s in m.stages[:exit_stage + 1])
        assert got.elapsed_us == pytest.approx(want_s * 1e6, abs=1.0)
        assert len(got.ticks) == 3
        assert got.ticks[1] == (round((0.002 + 0.003) * 150e6) if exit_stage >= 2 else 0)
        assert got.ticks[2] == (round(0.004 * 200e6) if exit_stage == 3 else 0)
    finally:
        fw.close()


# ------------------------------------------------------------------ the per-core C++ against stand-ins
# Just enough of TFLite Micro's API (the names and signatures ee_stages.cpp uses) to compile it with
# -Wall -Wextra -Werror: no TFLite Micro is fetched here, so this checks the generated code's C++,
# not the library's behaviour.
_TFLM_STUBS = {
    "tensorflow/lite/schema/schema_generated.h": """
#pragma once
#include <cstdint>
#define TFLITE_SCHEMA_VERSION 3
namespace tflite {
struct Model { uint32_t version() const { return TFLITE_SCHEMA_VERSION; } };
inline const Model *GetModel(const void *buf) { return static_cast<const Model *>(buf); }
}
""",
    "tensorflow/lite/micro/micro_mutable_op_resolver.h": """
#pragma once
#include <cstddef>
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
namespace tflite {
struct TFLMRegistration { int id; };
struct MicroOpResolver { virtual ~MicroOpResolver() {} };
template <unsigned N> struct MicroMutableOpResolver : MicroOpResolver {
%METHODS%
};
%REGISTRATIONS%
}
""",
    "tensorflow/lite/micro/micro_profiler_interface.h": """
#pragma once
#include <cstdint>
namespace tflite {
class MicroProfilerInterface {
 public:
  virtual ~MicroProfilerInterface() {}
  virtual uint32_t BeginEvent(const char *tag) = 0;
  virtual void EndEvent(uint32_t event_handle) = 0;
};
}
""",
    "tensorflow/lite/micro/micro_interpreter.h": """
#pragma once
#include <cstddef>
#include <cstdint>
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
typedef enum { kTfLiteNoType = 0, kTfLiteInt8 = 9 } TfLiteType;
struct TfLiteQuantizationParams { float scale; int32_t zero_point; };
union TfLitePtrUnion { int8_t *int8; void *raw; };
struct TfLiteTensor { TfLiteType type; TfLitePtrUnion data; size_t bytes; TfLiteQuantizationParams params; };
namespace tflite {
class MicroInterpreter {
 public:
  MicroInterpreter(const Model *model, const MicroOpResolver &resolver, uint8_t *arena, size_t arena_size,
                   class MicroResourceVariables *resource_variables = nullptr,
                   MicroProfilerInterface *profiler = nullptr, bool preserve_all_tensors = false);
  ~MicroInterpreter();
  TfLiteStatus AllocateTensors();
  TfLiteStatus Invoke();
  size_t inputs_size() const;
  size_t outputs_size() const;
  TfLiteTensor *input(size_t index);
  TfLiteTensor *output(size_t index);
 private:
  void *state_[8];
};
}
""",
}


def test_per_core_cpp_compiles_against_tflm_stand_ins(placed, tmp_path):
    gxx = shutil.which("arm-none-eabi-g++") or shutil.which("g++")
    if gxx is None:
        missing_tool("no C++ compiler (apt-get install g++ or gcc-arm-none-eabi)")
    name, info, res = placed
    out = res.out
    for app in res.apps:
        if not app.runs_stages:
            continue
        src = out / app.project / "ee_stages.cpp"
        text = src.read_text()
        methods = sorted(set(re.findall(r"resolver\.(Add\w+)\(", text)))
        regs = sorted(set(re.findall(r"tflite::(Register_\w+)\(\)", text)))
        stubs = tmp_path / app.project
        for rel, body in _TFLM_STUBS.items():
            body = body.replace("%METHODS%", "\n".join(
                f"  TfLiteStatus {m}() {{ return kTfLiteOk; }}\n"
                f"  TfLiteStatus {m}(const TFLMRegistration &) {{ return kTfLiteOk; }}" for m in methods))
            body = body.replace("%REGISTRATIONS%", "\n".join(f"TFLMRegistration {r}();" for r in regs))
            (stubs / rel).parent.mkdir(parents=True, exist_ok=True)
            (stubs / rel).write_text(body)
        flags = ["-std=c++17", "-fno-rtti", "-fno-exceptions", "-Wall", "-Wextra", "-Werror", "-fsyntax-only"]
        if "arm-none-eabi" in gxx:
            flags = ["-mcpu=cortex-m4" if app.index else "-mcpu=cortex-m0plus", "-mthumb", *flags]
        incs = [f"-I{stubs}", *(f"-I{out / d}" for d in ("shared/include", "shared/eenn_runtime/include")),
                f"-I{out / app.project}"]
        r = subprocess.run([gxx, *flags, *incs, str(src)], capture_output=True, text=True)
        assert r.returncode == 0, f"{app.project}/ee_stages.cpp:\n{r.stderr}"
