"""`eenn generate` on small 2-D and 1-D models: int8 chain vs the whole int8 EENN, accuracy,
the manifest, the virtual board on the generated project, headers, determinism."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from eenn import __version__
from eenn.codegen.manifest import load_manifest
from eenn.augment.quant import threshold_q
from eenn.codegen.reference import Int8Chain, WholeEennInt8
from eenn.codegen.sizes import INT8_VARIANTS
from eenn.augment.tflite_model import TfliteModel

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")

PROJECTS = ["digits_project", "ecg_project"]
BUNDLES = {"digits_project": "digits_bundle", "ecg_project": "ecg_bundle"}


@pytest.fixture(params=PROJECTS)
def generated(request):
    return request.getfixturevalue(request.param), request.getfixturevalue(BUNDLES[request.param])


def _reference(out: Path) -> dict:
    return json.loads((out / "eenn" / "reference.json").read_text())


def test_int8_chain_equals_the_whole_int8_eenn_on_every_test_sample(generated):
    res, info = generated
    ref = _reference(res.out)
    n = len(info["y_test"])
    assert ref["n"] == n
    assert ref["whole_eenn"] == {"n": n, "same_class": n, "same_exit": n}
    # and the recorded answers are what the chain gives when run again on the written project
    chain = Int8Chain(res.out)
    cls, ex = chain.run_many(info["x_test"][:60])
    assert cls.tolist() == [s["class"] for s in ref["samples"][:60]]
    assert ex.tolist() == [s["exit"] for s in ref["samples"][:60]]
    # both exits are exercised, or the comparison says little
    assert 0 < sum(s["exit"] == 0 for s in ref["samples"]) < n


def test_whole_eenn_oracle_built_independently_agrees(digits_project, digits_bundle):
    """A second conversion of the whole EENN, outside generate(): same classes and exits."""
    from eenn.augment.bundle import load_bundle
    from eenn.augment.int8_convert import load_parts
    from eenn.codegen.subgraphs import build_whole_model, load_calibration

    bundle = load_bundle(digits_bundle["path"])
    whole = build_whole_model(load_parts(bundle), load_calibration(bundle))
    m = digits_project.manifest
    oracle = WholeEennInt8(whole, [m.stages[0].threshold], m.confidence)
    chain = Int8Chain(digits_project.out)
    for x in digits_bundle["x_test"]:
        r = chain.run(x)
        assert oracle.run_quantized(oracle.quantize_input(x)) == (r.cls, r.exit)


def test_int8_accuracy_within_one_point_of_the_float_eenn(generated):
    from tests.bundles import float_eenn

    res, info = generated
    cls, ex = float_eenn(info["segments"], info["exits"], info["thresholds"], info["x_test"])
    float_acc = float(np.mean(cls == info["y_test"]))
    ref = _reference(res.out)
    assert float_acc > 0.6, "the test model should be worth quantizing"
    assert abs(ref["accuracy"] - float_acc) <= 0.01 + 1e-9, (ref["accuracy"], float_acc)
    assert ref["float_accuracy"] == pytest.approx(float_acc)
    assert sum(ref["termination_rates"]) == pytest.approx(1.0)
    labels = np.array([s["label"] for s in ref["samples"]])
    assert labels.tolist() == info["y_test"].tolist()


def test_manifest_follows_the_converted_models(generated):
    res, info = generated
    m = load_manifest(res.out)
    assert m.bundle_hash == info["hash"] and m.generator == f"eenn {__version__}"
    assert [s.processor for s in m.stages] == ["cm0p", "cm4"]
    s0, s1 = m.stages
    tm0 = TfliteModel((res.out / "eenn" / s0.model).read_bytes())
    tm1 = TfliteModel((res.out / "eenn" / s1.model).read_bytes())
    # output indices are read from the converted model: the feature map is the 3-D/4-D output
    assert len(tm0.outputs[s0.feature_map.output_index].shape) >= 3
    assert list(tm0.outputs[s0.scores.output_index].shape) == [1, m.num_classes]
    assert s0.feature_map.shape == list(tm1.inputs[0].shape) == s1.input.shape
    # the feature map crosses with one quantization, or the consumer requantizes
    same = (np.float32(s0.feature_map.scale), s0.feature_map.zero_point) == (np.float32(s1.input.scale),
                                                                               s1.input.zero_point)
    assert (s1.requant is None) == same
    assert s0.threshold_q == threshold_q(s0.threshold, s0.scores.scale, s0.scores.zero_point, m.confidence)
    assert s0.threshold == info["thresholds"][0]
    assert s1.threshold_q is None and s1.feature_map is None
    # sizes: what sizes.py measured, and the operators really in the model
    assert s0.ops == tm0.ops and s1.ops == tm1.ops and "SOFTMAX" in s0.ops
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(s0.ops + s1.ops)
    assert s0.arena_bytes % 16 == 0 and s0.arena_bytes > 0 and s0.weights_bytes > 0
    assert m.firmware.handoff_timeout_s >= 1.0 and m.firmware.model_id == "eenn"
    assert m.memory["cy_cortex_m4_appl_addr"] == f"0x{0x10000000 + m.memory['flash_cm0p_size']:08X}"
    assert s1.handoff is not None and s1.handoff.link_s > 0
    assert m.base.model == "models/base.tflite" and (res.out / "eenn" / m.base.model).is_file()


def test_predicted_times_come_from_the_cost_model(digits_project, digits_bundle):
    from eenn.augment.bundle import load_bundle
    from eenn.augment.cost import CostModel
    from eenn.augment.hardware import HardwareProfile

    sol = load_bundle(digits_bundle["path"]).solution
    cost = CostModel(HardwareProfile.from_dict(sol.hardware))
    m = digits_project.manifest
    # the psoc6 profile has no per-layer overhead: time = MACs / rate
    assert m.stages[0].predicted_s == pytest.approx(cost.compute_s(sol.segments[0].macs + sol.exits[0].macs, 0, 0))
    assert m.stages[1].predicted_s == pytest.approx(cost.compute_s(sol.segments[1].macs, 0, 1))
    # ticks count the core clocks of the plan the bundle was searched for (bsp-default: both cores
    # at 100 MHz), the clocks the profile priced: the PSoC 6 port refuses tick_hz != SystemCoreClock
    assert sol.hardware["clock_plan"] == "bsp-default"
    assert [s.tick_hz for s in m.stages] == [int(p["clock_hz"]) for p in sol.hardware["processors"]]
    assert m.stages[0].tick_hz == 100_000_000 and m.stages[1].tick_hz == 100_000_000
    assert m.energy.active_w == [p["active_w"] for p in sol.hardware["processors"]]


def _run_board(project: Path, xs: np.ndarray):
    """The firmware's C runtime on the host (virtual board), fed protocol bytes directly."""
    from eenn.hil.virtual_board import VirtualBoard

    board = VirtualBoard(project)
    chain = Int8Chain(project)

    def cmd(text: str) -> list[str]:
        return board.fw.feed(text.encode() + b"%").decode().split("\r\n")

    out = []
    try:
        for x in xs:
            q = chain.quantize_input(x).reshape(-1).astype(np.int8)
            assert cmd(f"db load {q.size}")[0] == f"m-[Expecting {q.size} bytes]"
            data = q.tobytes()
            for i in range(0, len(data), 200):
                lines = cmd("db " + data[i:i + 200].hex())
            assert lines[0] == "m-load-done"
            lines = cmd("infer 1 0")
            got = {m.group(1): m.group(2) for ln in lines if (m := re.match(r"^m-(eenn-[a-z]+)-\[(.*)\]$", ln))}
            out.append((int(got["eenn-class"]), int(got["eenn-exit"]), chain.run_quantized(q)))
        hash_line = [ln for ln in cmd("profile") if ln.startswith("m-eenn-hash-")]
    finally:
        board.close()
    return out, hash_line


def test_virtual_board_runs_the_generated_project(digits_project, digits_bundle):
    res = digits_project
    answers, hash_line = _run_board(res.out, digits_bundle["x_test"][:40])
    for cls, ex, ref in answers:
        assert (cls, ex) == (ref.cls, ref.exit)
    assert {ex for _, ex, _ in answers} == {0, 1}
    assert hash_line == [f"m-eenn-hash-[{res.manifest.bundle_hash}]"]


def _text_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file() and p.suffix not in (".tflite",))


def test_every_generated_text_file_names_eenn_and_the_bundle(digits_project):
    res = digits_project
    h = res.manifest.bundle_hash
    for p in _text_files(res.out):
        text = p.read_text()
        rel = p.relative_to(res.out).as_posix()
        if p.suffix == ".mtb":
            assert "\n" not in text.rstrip("\n")  # one line, no comments possible
            continue
        if p.suffix == ".json":
            data = json.loads(text)
            assert data["bundle_hash"] == h and data["generator"] == f"eenn {__version__}", rel
            continue
        head = "\n".join(text.splitlines()[:4])
        assert f"eenn {__version__}" in head and h in head, rel
    marker = (res.out / ".eenn-generated").read_text()
    assert f"eenn {__version__}" in marker and h in marker


def test_generated_tree_layout(digits_project):
    out = digits_project.out
    for rel in ["Makefile", "common.mk", "common_app.mk", ".gitignore", ".cyignore", "README.md",
                "proj_cm0p/Makefile", "proj_cm0p/main.c", "proj_cm0p/ee_stages.cpp", "proj_cm0p/ee_model_stage0.c",
                "proj_cm0p/.cyignore", "proj_cm4/Makefile", "proj_cm4/main.c", "proj_cm4/ee_stages.cpp",
                "proj_cm4/ee_model_stage1.c", "shared/include/ee_config.h", "shared/source/ee_config.c",
                "shared/source/COMPONENT_CM0P/ee_ipc_cm0p.c", "shared/source/COMPONENT_CM4/ee_ipc_cm4.c",
                "shared/eenn_runtime/include/ee_runtime.h", "shared/eenn_runtime/src/ee_runtime.c",
                "shared/eenn_runtime/ports/psoc6/ee_port_psoc6.c",
                "templates/TARGET_CY8CKIT-062S2-43012/COMPONENT_CM0P/TOOLCHAIN_GCC_ARM/linker.ld",
                "templates/TARGET_CY8CKIT-062S2-43012/COMPONENT_CM4/TOOLCHAIN_GCC_ARM/linker.ld",
                "eenn/project.json", "eenn/reference.json", "eenn/models/stage0.tflite", "eenn/models/stage1.tflite",
                "eenn/models/base.tflite", ".eenn-generated"]:
        assert (out / rel).is_file(), rel
    # the model arrays are the written models, byte for byte
    for k, proj in ((0, "proj_cm0p"), (1, "proj_cm4")):
        src = (out / proj / f"ee_model_stage{k}.c").read_text()
        body = src[src.index("= {") + 3: src.index("};")]
        data = bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body))
        assert data == (out / "eenn" / "models" / f"stage{k}.tflite").read_bytes()
        assert "alignas(16) const uint8_t" in src


def test_stage_sources_register_exactly_the_ops_used(digits_project):
    res = digits_project
    for s, sz, proj in zip(res.manifest.stages, res.sizes, ("proj_cm0p", "proj_cm4")):
        src = (res.out / proj / "ee_stages.cpp").read_text()  # one stage on each core: its ops only
        assert f"tflite::MicroMutableOpResolver<{len(s.ops)}> resolver;" in src
        calls = re.findall(r"resolver\.(Add\w+\((?:tflite::Register_\w+\(\))?\)) != kTfLiteOk", src)
        assert calls == sz.resolver_calls and len(calls) == len(s.ops)
        # the CM0+ (upstream TFLite Micro + CMSIS-NN) takes the int8-only kernels, the CM4 the defaults
        for op, call in zip(s.ops, calls):
            if proj == "proj_cm0p" and op in INT8_VARIANTS:
                assert call.endswith(f"(tflite::Register_{op}_INT8())"), call
            else:
                assert call.endswith("()") and "Register_" not in call, call
        for api in ("tflite::GetModel(", "tflite::MicroInterpreter(model, *g_resolver, g_arena, kArenaBytes, nullptr, &g_profiler)",
                    "->AllocateTensors()", "->Invoke()", "TFLITE_SCHEMA_VERSION",
                    f"ee_model_stage{s.index}, EE_CFG_STAGE{s.index}_INPUT_LEN"):
            assert api in src, api
        if s.feature_map is not None:
            assert f"#define EE_CFG_STAGE{s.index}_FM_OUTPUT {s.feature_map.output_index}u" in (
                res.out / "shared/include/ee_config.h").read_text()
