"""`eenn generate`: from a solution bundle to a ModusToolbox dual-core project for a PSoC 6 kit.

Order of work, so that a bad input writes nothing:

1. the kit, the bundle (every file hash-verified) and the output directory are checked;
2. the per-processor int8 subgraphs, the base model and the whole EENN are converted, their
   sizes measured and the memory map computed: a subgraph that does not fit fails here, with
   the figures;
3. everything is written to a temporary sibling directory: models, manifest, the int8
   reference chain's answers on the bundle's test split (run on the files just written), the
   rendered sources and the copied firmware runtime;
4. only then does the temporary directory replace the output directory.

The same bundle gives a byte-identical tree: the converter is deterministic, templates iterate
in fixed orders and nothing records a time or an absolute path.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from eenn import __version__
from eenn.atomic import staged_directory
from eenn.augment.bundle import Bundle, load_bundle
from eenn.augment.cost import CostModel, Measured, ProcessorMeasurement
from eenn.augment.hardware import HardwareProfile
from eenn.augment.int8_convert import KerasParts, load_parts
from eenn.codegen import memory as mem
from eenn.codegen import render
from eenn.codegen.cores import CoreApp, plan_cores
from eenn.codegen.clocks import bundle_clock_plan, check_clock_plan
from eenn.codegen.kits import BSP_DEFAULT, CLK_PERI_MAX_HZ, IMO_HZ, ClockTree, Kit, get_kit
from eenn.codegen.manifest import (
    MANIFEST_PATH,
    REFERENCE_PATH,
    SCHEMA_VERSION,
    BaseModel,
    Energy,
    FirmwareSettings,
    Core,
    Handoff,
    OutputTensor,
    ProjectManifest,
    Reference,
    ReferenceSample,
    Requant,
    Stage,
    TensorQuant,
    WholeEennAgreement,
    handoff_timeout_s,
    handoff_timeout_us,
    reference_json_bytes,
)
from eenn.augment.quant import threshold_q
from eenn.codegen.sizes import SubgraphSizes, subgraph_sizes
from eenn.codegen.subgraphs import (
    StageSubgraph,
    build_base_model,
    build_stage_subgraphs,
    build_whole_model,
    load_calibration,
    load_test_split,
)
from eenn.errors import EennError

MARKER = ".eenn-generated"
GENERATOR = f"eenn {__version__}"
CORES = ("cortex-m0plus", "cortex-m4")  # what the PSoC 6 projects run on, in stage order

# Upstream sources the CM0+ builds TFLite Micro from (pinned as tflite-micro's own Makefile pins
# its third-party downloads at that commit).
PINS = {
    "tflite-micro": "90b983c2b3f1480642e040bbd2ddb37b998f3424",
    "flatbuffers": "v25.9.23",
    "gemmlowp": "719139ce755a0f31cbf1c37f7f98adcc7fc9f425",
    "ruy": "d37128311b445e758136b8602d1bbd2a755e115d",
    "cmsis-nn": "4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae",
}
REPOS = {
    "tflite-micro": "https://github.com/tensorflow/tflite-micro",
    "flatbuffers": "https://github.com/google/flatbuffers",
    "gemmlowp": "https://github.com/google/gemmlowp",
    "ruy": "https://github.com/google/ruy",
    "cmsis-nn": "https://github.com/ARM-software/CMSIS-NN",
}
ML_TFLITE_MICRO = "latest-v3.X"


@dataclass
class GenerateResult:
    out: Path
    manifest: ProjectManifest
    layout: mem.MemoryLayout
    sizes: list[SubgraphSizes]
    base_sizes: SubgraphSizes
    reference: Reference
    seconds: float
    files: list[str] = field(default_factory=list)
    apps: list[CoreApp] = field(default_factory=list)


# ---------------------------------------------------------------------------------- checks
def check_output_dir(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise EennError(f"{out}: exists and is not a directory")
    if not any(out.iterdir()) or (out / MARKER).is_file() or force:
        return
    raise EennError(f"{out}: exists, is not empty and was not written by eenn generate (no {MARKER}); "
                    "pass --force to replace it")


PLACEMENTS = ("boundary", "any")  # solution.json search.placement (absent = boundary)


def _check_mapping(bundle: Bundle, profile: HardwareProfile) -> list[int]:
    """Processor index (= core index) of each stage. A PSoC 6 project has the profile's two
    processors as its cores, the cortex-m0plus (core 0: the protocol) and the cortex-m4; the
    stages may sit on either, several on one, in profile order (stage 0 on the CM4 too)."""
    sol = bundle.solution
    names = [p.name for p in profile.processors]
    cores = tuple(p.core for p in profile.processors)
    if cores != CORES:
        raise EennError(f"{bundle.path}: the bundle's hardware profile '{profile.name}' has processors "
                        f"{', '.join(f'{n} ({c})' for n, c in zip(names, cores))}; a PSoC 6 project runs exactly "
                        f"two cores, in this order: {', '.join(CORES)}")
    placement = sol.search.get("placement", "boundary")
    if placement not in PLACEMENTS:
        raise EennError(f"{bundle.path}: search.placement {placement!r}: expected one of {', '.join(PLACEMENTS)}")
    idx = []
    for seg in sol.segments:
        if seg.processor not in names:
            raise EennError(f"{bundle.path}: segment {seg.index} runs on '{seg.processor}', which the bundle's "
                            f"hardware profile '{profile.name}' does not have ({', '.join(names)})")
        idx.append(names.index(seg.processor))
    for ex in sol.exits:
        if ex.index >= len(idx) - 1 or ex.processor != sol.segments[ex.index].processor:
            raise EennError(f"{bundle.path}: exit {ex.index} runs on '{ex.processor}'; it sits at the end of segment "
                            f"{ex.index} and must run on that segment's processor")
    if any(b < a for a, b in zip(idx, idx[1:])):
        raise EennError(f"{bundle.path}: segments run on {[s.processor for s in sol.segments]}; processors must "
                        f"follow the profile's order ({', '.join(names)}) along the chain")
    return idx


def _transfer_s(profile: HardwareProfile, src: int, dst: int, nbytes: int) -> float:
    """Moving `nbytes` from processor src to dst: every link in between, store and forward."""
    t = 0.0
    for i in range(src, dst):
        link = profile.link_after(i)
        t += float(link.latency_s + nbytes / link.bytes_per_s)
    return t


def _num_layers(model) -> int:
    n = 0
    for layer in model.layers:
        sub = getattr(layer, "layers", None)
        if sub is not None and layer is not model:
            n += _num_layers(layer)
        elif type(layer).__name__ != "InputLayer":
            n += 1
    return n


def default_model_id(bundle: Bundle) -> str:
    """The MLPerf Tiny id a runner expects for the known reference models, else "eenn"."""
    stem = Path(bundle.solution.base_model.source).name.lower()
    return "kws01" if stem.startswith("ds_cnn") else "eenn"


# ---------------------------------------------------------------------------------- manifest
def _tensor(t) -> TensorQuant:
    return TensorQuant(shape=[int(d) for d in t.shape], scale=float(t.scale), zero_point=int(t.zero_point))


def _output(t, index: int) -> OutputTensor:
    return OutputTensor(shape=[int(d) for d in t.shape], scale=float(t.scale), zero_point=int(t.zero_point),
                        output_index=int(index))


def build_manifest(bundle: Bundle, kit: Kit, profile: HardwareProfile, proc_idx: list[int], parts: KerasParts,
                   stages: list[StageSubgraph], sizes: list[SubgraphSizes], base_sizes: SubgraphSizes,
                   layout: mem.MemoryLayout, model_id: str) -> ProjectManifest:
    sol = bundle.solution
    measured = sol.search.get("measured")  # the search's `--measured` rates (eenn hil profile): predict with them
    cost = CostModel(profile, None if not measured else Measured(
        {n: ProcessorMeasurement(**m) for n, m in measured.items()}, source=f"{bundle.path}: search.measured"))
    confidence = sol.search.get("confidence", "max")
    if confidence not in ("max", "margin"):
        raise EennError(f"{bundle.path}: search.confidence {confidence!r}: expected 'max' or 'margin'")
    out_stages = []
    for k, (st, sz) in enumerate(zip(stages, sizes)):
        seg = sol.segments[k]
        proc = profile.processors[proc_idx[k]]
        is_last = k == len(stages) - 1
        ex = None if is_last else sol.exits[k]
        macs = int(seg.macs) + (0 if ex is None else int(ex.macs))
        n_layers = _num_layers(parts.segments[k]) + (0 if is_last else _num_layers(parts.exits[k]))
        handoff = None
        src = proc_idx[k - 1] if k > 0 else 0  # stage 0's input arrives on core 0
        if proc_idx[k] != src:
            nbytes = stages[k - 1].feature_map.size if k > 0 else st.input.size
            handoff = Handoff(link_s=_transfer_s(profile, src, proc_idx[k], nbytes), wakeup_s=float(proc.wakeup_s))
        thr = thr_q = None
        if not is_last:
            thr = float(ex.threshold)
            thr_q = threshold_q(thr, st.scores.scale, st.scores.zero_point, confidence)
        out_stages.append(Stage(
            index=k, processor=proc.name, core=proc.core, model=f"models/stage{k}.tflite", input=_tensor(st.input),
            scores=_output(st.scores, st.scores_index), macs=macs,
            predicted_s=float(cost.compute_s(macs, n_layers, proc_idx[k])),
            tick_hz=kit.core_clock_hz(proc.core, bundle_clock_plan(profile)),
            feature_map=None if st.feature_map is None else _output(st.feature_map, st.feature_map_index),
            requant=None if st.requant is None else Requant(**st.requant),
            threshold=thr, threshold_q=thr_q, arena_bytes=sz.arena_bytes, weights_bytes=sz.weights_bytes,
            ops=list(sz.ops), handoff=handoff, core_index=proc_idx[k]))
    handoff_timeout = handoff_timeout_s(out_stages, [s.predicted_s for s in out_stages],
                                        [s.core_index for s in out_stages])
    cores = [Core(index=i, processor=p.name, core=p.core, tick_hz=kit.core_clock_hz(p.core, bundle_clock_plan(profile)),
                  stages=[k for k, c in enumerate(proc_idx) if c == i]) for i, p in enumerate(profile.processors)]
    # the comparison point: the processor the search named (older bundles: the last one)
    base_name = sol.metrics.get("base", {}).get("processor")
    names = [p.name for p in profile.processors]
    last_proc = names.index(base_name) if base_name in names else proc_idx[-1]
    base = BaseModel(model="models/base.tflite", processor=profile.processors[last_proc].name,
                     predicted_s=float(cost.compute_s(int(sol.base_model.total_macs), _num_layers(parts.base),
                                                      last_proc)),
                     macs=int(sol.base_model.total_macs), arena_bytes=base_sizes.arena_bytes,
                     weights_bytes=base_sizes.weights_bytes, ops=list(base_sizes.ops))
    return ProjectManifest(
        schema_version=SCHEMA_VERSION, generator=GENERATOR, bundle_hash=bundle.hash, kit=kit.name,
        num_classes=int(sol.base_model.num_classes), confidence=confidence, input=_tensor(stages[0].input),
        stages=out_stages,
        energy=Energy(active_w=[float(p.active_w) for p in profile.processors],
                      sleep_w=[float(p.sleep_w) for p in profile.processors]),
        base=base,
        firmware=FirmwareSettings(handoff_timeout_s=float(handoff_timeout), model_id=model_id),
        memory=layout.to_dict(),
        cores=cores,
    )


# ---------------------------------------------------------------------------------- reference
def reference_answers(project: Path, manifest: ProjectManifest, whole: bytes, base: bytes, x: np.ndarray,
                      y: np.ndarray, float_accuracy: float | None) -> Reference:
    """The int8 chain on the test split, checked against the whole EENN as one int8 model."""
    from eenn.codegen.reference import Int8Chain, WholeEennInt8, encode_scores, run_classifier

    chain = Int8Chain(project, manifest)
    thresholds = [s.threshold for s in manifest.stages[:-1]]
    oracle = WholeEennInt8(whole, thresholds, manifest.confidence)
    samples, same_cls, same_exit = [], 0, 0
    for xi, yi in zip(x, y):
        r = chain.run(xi)
        w_cls, w_exit = oracle.run_quantized(oracle.quantize_input(xi))
        same_cls += int(w_cls == r.cls)
        same_exit += int(w_exit == r.exit)
        samples.append(ReferenceSample(cls=int(r.cls), exit=int(r.exit), label=int(yi),
                                       scores_q=encode_scores(r.scores)))  # the answering classifier's int8 scores
    n = len(samples)
    cls = np.array([s.cls for s in samples])
    ex = np.array([s.exit for s in samples])
    rates = [float(np.mean(ex == k)) if n else 0.0 for k in range(len(manifest.stages))]
    base_cls = run_classifier(base, x)
    return Reference(
        bundle_hash=manifest.bundle_hash, n=n, accuracy=float(np.mean(cls == y)) if n else 0.0,
        termination_rates=rates, early_termination=float(1.0 - rates[-1]) if n else 0.0, samples=samples,
        base_accuracy=float(np.mean(base_cls == y)) if n else 0.0, float_accuracy=float_accuracy,
        whole_eenn=WholeEennAgreement(n=n, same_class=same_cls, same_exit=same_exit), generator=GENERATOR)


# ---------------------------------------------------------------------------------- writing
class _Tree:
    """Collects the generated files (relative path → bytes) before anything touches the disk."""

    def __init__(self, bundle_hash: str):
        self.files: dict[str, bytes] = {}
        self.hash = bundle_hash

    def text(self, rel: str, text: str, what: str, header: bool = True) -> None:
        body = render.with_header(rel, text, self.hash, what) if header else render.normalise(text)
        self.add(rel, body.encode("utf-8"))

    def add(self, rel: str, data: bytes) -> None:
        if rel in self.files:
            raise AssertionError(f"{rel} generated twice")
        self.files[rel] = data

    def write(self, root: Path) -> None:
        for rel in sorted(self.files):
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(self.files[rel])


def _mtb_line(name: str) -> str:
    if name in PINS:
        return f"{REPOS[name]}#{PINS[name]}#$$ASSET_REPO$$/{name}/{PINS[name]}"
    raise KeyError(name)


def _asset_line(name: str, version: str) -> str:
    return f"mtb://{name}#{version}#$$ASSET_REPO$$/{name}/{version}"


def _ignore_list(name: str) -> list[str]:
    from importlib import resources

    text = resources.files("eenn.templates").joinpath("project", "proj_cm0p", name).read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _tflm_ignore() -> list[str]:
    return _ignore_list("tflite_micro.cyignore.txt")


def _cmsis_nn_ignore() -> list[str]:
    return _ignore_list("cmsis_nn.cyignore.txt")


def render_project(tree: _Tree, manifest: ProjectManifest, kit: Kit, layout: mem.MemoryLayout,
                   stages: list[StageSubgraph], sizes: list[SubgraphSizes], apps: list[CoreApp],
                   clock: ClockTree | None = None) -> None:
    env = render.environment()
    last = len(stages) - 1
    fm_max = max((s.feature_map.size for s in stages if s.feature_map is not None), default=0)
    scores_max = max(s.scores.size for s in stages)
    timeout_us = handoff_timeout_us(manifest.firmware.handoff_timeout_s)
    ctx = dict(m=manifest, kit=kit, layout=layout, last_stage=last, fm_max=fm_max, scores_max=scores_max,
               clock=clock or kit.clock_tree(BSP_DEFAULT),
               timeout_us=timeout_us, pins=PINS, tflm_ignore=_tflm_ignore(), cmsis_nn_ignore=_cmsis_nn_ignore(),
               apps=apps, stage_cores=manifest.stage_cores(), input_shared=manifest.stage_cores()[0] != 0)

    def put(template: str, rel: str, what: str, **extra) -> None:
        tree.text(rel, env.get_template(f"project/{template}").render(**ctx, **extra), what)

    put("Makefile.j2", "Makefile", "ModusToolbox application Makefile.")
    put("common.mk.j2", "common.mk", "Settings shared by both projects.")
    put("common_app.mk.j2", "common_app.mk", "ModusToolbox tools location.")
    put("gitignore.j2", ".gitignore", "Build outputs.")
    put("cyignore.j2", ".cyignore", "Not sources.")
    put("README.md.j2", "README.md", "About this project.")
    put("proj_cm0p/Makefile.j2", "proj_cm0p/Makefile", "CM0+ project.")
    put("proj_cm0p/cyignore.j2", "proj_cm0p/.cyignore", "What the CM0+ build skips.")
    put("proj_cm4/Makefile.j2", "proj_cm4/Makefile", "CM4 project.")
    put("proj_cm0p/main.c.j2", "proj_cm0p/main.c", "CM0+ main.")
    if ctx["clock"].source != "bsp":  # bsp-default: the BSP's clocks, no clock code at all
        put("proj_cm0p/ee_clock_plan.h.j2", "proj_cm0p/ee_clock_plan.h", f"Clock plan {ctx['clock'].plan}.")
        put("proj_cm0p/ee_clock_plan.c.j2", "proj_cm0p/ee_clock_plan.c", f"Clock plan {ctx['clock'].plan}.",
            imo_hz=IMO_HZ, peri_max_hz=CLK_PERI_MAX_HZ)
    put("proj_cm4/main.c.j2", "proj_cm4/main.c", "CM4 main.")
    put("shared/include/ee_config.h.j2", "shared/include/ee_config.h", "Runtime configuration.")
    put("shared/source/ee_config.c.j2", "shared/source/ee_config.c", "Runtime configuration.")
    put("shared/include/ee_app.h.j2", "shared/include/ee_app.h", "Application declarations.")
    put("shared/source/COMPONENT_CM0P/ee_ipc_cm0p.c.j2", "shared/source/COMPONENT_CM0P/ee_ipc_cm0p.c",
        "CM0+ IPC set-up.")
    put("shared/source/COMPONENT_CM4/ee_ipc_cm4.c.j2", "shared/source/COMPONENT_CM4/ee_ipc_cm4.c", "CM4 IPC set-up.")
    for core, script in (("CM0P", "cm0p.ld.j2"), ("CM4", "cm4.ld.j2")):
        put(f"linker/{script}", f"templates/TARGET_{kit.name}/COMPONENT_{core}/TOOLCHAIN_GCC_ARM/linker.ld",
            f"{core} linker script (eenn memory map).")
    for app in apps:
        if app.runs_stages:
            put("stages.cpp.j2", f"{app.project}/ee_stages.cpp", f"{app.stages_text.capitalize()}: TFLite Micro.",
                app=app, core_stages=[manifest.stages[k] for k in app.stages],
                stage_sizes=[sizes[k] for k in app.stages])
        else:
            put("no_stage.c.j2", f"{app.project}/ee_no_stage.c", "No stage on this core: no TFLite Micro.", app=app)
    for st, sz, s in zip(stages, sizes, manifest.stages):
        proj = apps[manifest.stage_cores()[st.index]].project
        extra = dict(s=s, sizes=sz, model_len=len(st.tflite), model_sha=hashlib.sha256(st.tflite).hexdigest())
        put("model.h.j2", f"{proj}/ee_model_stage{st.index}.h", f"Stage {st.index} model.", **extra)
        put("model.c.j2", f"{proj}/ee_model_stage{st.index}.c", f"Stage {st.index} model.",
            model_bytes=render.c_bytes(st.tflite), **extra)
    # deps: one line each, no header (the .mtb format has no comments)
    bsp = _asset_line(f"TARGET_{kit.name}", kit.bsp_version)
    for proj in ("proj_cm0p", "proj_cm4"):
        tree.text(f"{proj}/deps/TARGET_{kit.name}.mtb", bsp, "", header=False)
    if apps[0].runs_stages:
        for name in sorted(PINS):
            tree.text(f"proj_cm0p/deps/{name}.mtb", _mtb_line(name), "", header=False)
    if apps[1].runs_stages:
        tree.text("proj_cm4/deps/ml-tflite-micro.mtb", _asset_line("ml-tflite-micro", ML_TFLITE_MICRO), "",
                  header=False)


def copy_runtime(tree: _Tree) -> None:
    """The firmware runtime (include/, src/, ports/psoc6/) into shared/eenn_runtime/."""
    from eenn.paths import firmware_dir

    root = firmware_dir()
    for sub, pattern in (("include", "*.h"), ("src", "*.c"), ("ports/psoc6", "*.[ch]")):
        for f in sorted((root / sub).glob(pattern)):
            rel = f"{sub}/{f.name}"
            tree.text(f"shared/eenn_runtime/{rel}", f.read_text(encoding="utf-8"),
                      f"Copy of eenn's firmware/{rel}.")


# ---------------------------------------------------------------------------------- main entry
def generate(bundle_dir: str | Path, kit_name: str, out_dir: str | Path, *, force: bool = False,
             model_id: str | None = None, log: Callable[[str], None] = lambda s: None,
             clock_plan: str | None = None) -> GenerateResult:
    t0 = time.monotonic()
    kit = get_kit(kit_name)
    out = Path(out_dir)
    bundle = load_bundle(bundle_dir)
    for note in bundle.notes:
        log(note)
    check_output_dir(out, force)
    profile = HardwareProfile.from_dict(bundle.solution.hardware, source=f"{bundle.path}/solution.json hardware")
    proc_idx = _check_mapping(bundle, profile)
    clock = check_clock_plan(str(bundle.path), kit, profile, proc_idx, clock_plan, log)

    parts = load_parts(bundle)
    calibration = load_calibration(bundle)
    x_test, y_test = load_test_split(bundle)
    log(f"converting {len(bundle.solution.segments)} stages to int8 TFLite ({len(calibration)} calibration samples)")
    stages = build_stage_subgraphs(parts, calibration)
    base = build_base_model(parts, calibration)
    whole = build_whole_model(parts, calibration)
    # The CM0+ links upstream TFLite Micro with CMSIS-NN: its int8-only kernels (sizes.INT8_VARIANTS).
    # The CM4 links Infineon's prebuilt ml-tflite-micro, registered the default way.
    sizes = [subgraph_sizes(s.tflite, int8_kernels=(proc_idx[k] == 0)) for k, s in enumerate(stages)]
    base_sizes = subgraph_sizes(base)
    apps = plan_cores([p.name for p in profile.processors], proc_idx, sizes)
    layout = mem.compute_layout(
        kit, model_bytes=(apps[0].model_bytes, apps[1].model_bytes),
        arena_bytes=(apps[0].arena_bytes, apps[1].arena_bytes), input_len=stages[0].input.size,
        fm_len=max(s.feature_map.size for s in stages[:-1]), n_scores=max(s.scores.size for s in stages),
        fm_buffers=2 if len(stages) > 2 else 1, input_shared=proc_idx[0] != 0,
        tflm=(apps[0].runs_stages, apps[1].runs_stages), stages_text=(apps[0].stages_text, apps[1].stages_text))
    manifest = build_manifest(bundle, kit, profile, proc_idx, parts, stages, sizes, base_sizes, layout,
                              model_id or default_model_id(bundle))

    with staged_directory(out, prefix=f".{out.name}.partial-") as tmp:
        tree = _Tree(bundle.hash)
        for st in stages:
            tree.add(f"eenn/models/stage{st.index}.tflite", st.tflite)
        tree.add("eenn/models/base.tflite", base)
        tree.add(str(MANIFEST_PATH), manifest.to_json().encode())
        tree.write(tmp)  # the reference chain reads the models and the manifest from disk
        eenn_m = bundle.solution.metrics.get("eenn", {})  # int8-scored bundles keep the float figure beside
        float_acc = eenn_m.get("float_accuracy", eenn_m.get("accuracy"))
        reference = reference_answers(tmp, manifest, whole, base, x_test, y_test, float_acc)
        tree.add(REFERENCE_PATH.as_posix(), reference_json_bytes(reference))
        render_project(tree, manifest, kit, layout, stages, sizes, apps, clock)
        copy_runtime(tree)
        tree.add(MARKER, f"{GENERATOR}\nbundle {bundle.hash}\nkit {kit.name}\n".encode())
        shutil.rmtree(tmp)
        tmp.mkdir()
        tree.write(tmp)
    return GenerateResult(out=out, manifest=manifest, layout=layout, sizes=sizes, base_sizes=base_sizes,
                          reference=reference, seconds=time.monotonic() - t0, files=sorted(tree.files), apps=apps)


def report_lines(res: GenerateResult) -> list[str]:
    """What `eenn generate` prints: memory map per core, op lists, reference figures."""
    m, ref = res.manifest, res.reference
    lines = [f"project: {res.out} ({m.kit}, bundle {m.bundle_hash[:12]}…)", "memory map:"]
    lines += ["  " + ln for ln in mem.describe(res.layout)]
    for s, sz in zip(m.stages, res.sizes):
        lines.append(f"stage {s.index} on {s.processor}: {len(sz.ops)} ops [{', '.join(sz.ops)}], "
                     f"model {sz.model_bytes} B (weights {sz.weights_bytes} B), arena {sz.arena_bytes} B "
                     f"(measured {sz.arena_measured} B + CMSIS-NN scratch {sz.cmsis_scratch} B + margin), "
                     f"MicroMutableOpResolver<{sz.resolver_size}>: {' '.join(sz.resolver_calls)}")
    for app in res.apps:
        if len(app.stages) != 1:
            lines.append(f"core {app.index} ({app.name}) runs {app.stages_text}"
                         + (f": one resolver of {app.resolver_size} ops, one arena of {app.arena_bytes} B, models "
                            f"{app.model_bytes} B" if app.stages else ": protocol only, no TFLite Micro linked"))
        if s.feature_map is not None:
            lines.append(f"  exit threshold {s.threshold} → int8 threshold_q {s.threshold_q}; feature map "
                         f"{s.feature_map.shape} {'requantized' if s.requant else 'copied as is'}")
    b = res.base_sizes
    lines.append(f"base model (comparison point) on {m.base.processor}: ops [{', '.join(b.ops)}], "
                 f"model {b.model_bytes} B, arena {b.arena_bytes} B")
    w = ref.whole_eenn
    flt = "n/a" if ref.float_accuracy is None else f"{ref.float_accuracy:.4f}"
    lines.append(f"int8 reference on {ref.n} test samples: accuracy {ref.accuracy:.4f} "
                 f"(float EENN {flt}, int8 base {ref.base_accuracy:.4f}), termination "
                 f"{[round(r, 4) for r in ref.termination_rates]}; same class/exit as the whole int8 EENN: "
                 f"{w.same_class}/{w.n}, {w.same_exit}/{w.n}")
    lines.append(f"done in {res.seconds:.1f} s")
    return lines
