"""`eenn/project.json`: the machine-readable half of a generated project.

Written by `eenn generate`, read by the virtual board, the HIL harness and the int8 reference
chain. Plain dataclasses ↔ JSON; the format is specified in docs/interfaces.md §3.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eenn.errors import EennError
from eenn.fields import known_fields

SCHEMA_VERSION = 1
MANIFEST_PATH = Path("eenn") / "project.json"
REFERENCE_PATH = Path("eenn") / "reference.json"  # the Python int8 chain's answers, written by `eenn generate`


@dataclass(frozen=True)
class TensorQuant:
    shape: list[int]
    scale: float
    zero_point: int

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n


@dataclass(frozen=True)
class OutputTensor(TensorQuant):
    output_index: int = 0


@dataclass(frozen=True)
class Requant:
    multiplier: int
    shift: int
    in_zero_point: int
    out_zero_point: int


@dataclass(frozen=True)
class Handoff:
    link_s: float = 0.0
    wakeup_s: float = 0.0


@dataclass(frozen=True)
class Stage:
    index: int
    processor: str
    core: str
    model: str
    input: TensorQuant
    scores: OutputTensor
    macs: int
    predicted_s: float
    tick_hz: int
    feature_map: OutputTensor | None = None
    requant: Requant | None = None
    threshold: float | None = None
    threshold_q: int | None = None
    arena_bytes: int = 0
    weights_bytes: int = 0
    ops: list[str] = field(default_factory=list)
    # the transfer into this stage from another core (None: same core as the stage before it,
    # or stage 0 on core 0)
    handoff: Handoff | None = None
    # the core that runs it (0 = the always-on core with the protocol); None in manifests written
    # before placement was searched: stage k on core k
    core_index: int | None = None

    @property
    def is_last(self) -> bool:
        return self.feature_map is None


@dataclass(frozen=True)
class Core:
    """One core of the project (processor `index` of the hardware profile) and the stages it runs
    (none: core 0 only serves the protocol and passes the input on)."""

    index: int
    processor: str
    core: str
    tick_hz: int
    stages: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class BaseModel:
    model: str
    processor: str
    predicted_s: float
    # sizes of the base model alone on `processor` (added keys; 0 / empty when unknown)
    macs: int = 0
    arena_bytes: int = 0
    weights_bytes: int = 0
    ops: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Energy:
    active_w: list[float]
    sleep_w: list[float]


@dataclass(frozen=True)
class FirmwareSettings:
    """Runtime settings the generated ee_config.h carries and the virtual board mirrors."""

    handoff_timeout_s: float
    model_id: str = "eenn"


@dataclass(frozen=True)
class ProjectManifest:
    schema_version: int
    generator: str
    bundle_hash: str
    kit: str
    num_classes: int
    confidence: str
    input: TensorQuant
    stages: list[Stage]
    energy: Energy
    base: BaseModel | None = None
    firmware: FirmwareSettings | None = None
    # How the kit's SRAM/flash is split between the cores (codegen/memory.py), for reports.
    memory: dict[str, Any] | None = None
    # Every core of the kit, in order (None in manifests written before placement: one per stage).
    cores: list[Core] | None = None

    def stage_cores(self) -> list[int]:
        """The core of each stage."""
        return [k if s.core_index is None else int(s.core_index) for k, s in enumerate(self.stages)]

    def core_tick_hz(self) -> list[int]:
        """Each core's tick rate (the unit of its m-eenn-ticks entry)."""
        if self.cores is None:
            return [int(s.tick_hz) for s in self.stages]
        return [int(c.tick_hz) for c in self.cores]

    def handoffs(self, exit_stage: int) -> int:
        """IPC requests on the path that ends at `exit_stage`: core changes from core 0 on."""
        path = [0, *self.stage_cores()[:exit_stage + 1]]
        return sum(int(a != b) for a, b in zip(path, path[1:]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "project.json") -> ProjectManifest:
        """Keys this eenn does not know are ignored; a missing required one is named (EennError)."""
        def obj(c: type, x: Any, w: str) -> Any:
            return c(**known_fields(c, x, w))

        def opt(c: type, x: Any, w: str) -> Any:
            return None if x is None else obj(c, x, w)

        top = known_fields(cls, d, where)
        if not isinstance(top["stages"], list):
            raise EennError(f"{where}: 'stages' must be a list, got {type(top['stages']).__name__}")
        stages = []
        for k, s in enumerate(top["stages"]):
            w = f"{where}: stages[{k}]"
            s = known_fields(Stage, s, w)
            s["input"] = obj(TensorQuant, s["input"], f"{w}.input")
            s["scores"] = obj(OutputTensor, s["scores"], f"{w}.scores")
            s["feature_map"] = opt(OutputTensor, s.get("feature_map"), f"{w}.feature_map")
            s["requant"] = opt(Requant, s.get("requant"), f"{w}.requant")
            s["handoff"] = opt(Handoff, s.get("handoff"), f"{w}.handoff")
            stages.append(Stage(**s))
        cores = top.get("cores")
        return cls(
            schema_version=top["schema_version"],
            generator=top["generator"],
            bundle_hash=top["bundle_hash"],
            kit=top["kit"],
            num_classes=top["num_classes"],
            confidence=top["confidence"],
            input=obj(TensorQuant, top["input"], f"{where}: input"),
            stages=stages,
            energy=obj(Energy, top["energy"], f"{where}: energy"),
            base=opt(BaseModel, top.get("base"), f"{where}: base"),
            firmware=opt(FirmwareSettings, top.get("firmware"), f"{where}: firmware"),
            memory=top.get("memory"),
            cores=None if cores is None else [obj(Core, c, f"{where}: cores[{i}]") for i, c in enumerate(cores)],
        )


def stage_handoff_s(stage: Stage) -> float:
    """The seconds a hand-off to `stage` adds (link and wake-up; 0 without a hand-off)."""
    h = stage.handoff
    return 0.0 if h is None else float(h.link_s) + float(h.wakeup_s)


def handoff_timeout_s(stages: list[Stage], stage_s: list[float], cores: list[int]) -> float:
    """How long core 0 waits for the other cores' answer: ten times the seconds of every stage
    off core 0 (its run, `stage_s`, and its hand-off), at least one second."""
    downstream = sum(t + stage_handoff_s(s) for s, t, c in zip(stages, stage_s, cores) if c != 0)
    return max(1.0, 10.0 * downstream)


def handoff_timeout_us(timeout_s: float) -> int:
    """`timeout_s` as the firmware's uint32 microseconds (saturated)."""
    return min(int(round(timeout_s * 1e6)), 2**32 - 1)


@dataclass(frozen=True)
class ReferenceSample:
    """The int8 chain's answer to one test sample (`class` in the file)."""
    cls: int
    exit: int
    label: int | None = None
    scores_q: str | None = None  # the answering classifier's int8 scores, "-128,12,…" (reference.encode_scores)

    def to_json(self) -> dict[str, Any]:
        return {"class": self.cls, "exit": self.exit, "label": self.label, "scores_q": self.scores_q}


@dataclass(frozen=True)
class WholeEennAgreement:
    """The per-core chain vs the whole EENN converted as one int8 model, on the same samples."""
    n: int
    same_class: int
    same_exit: int


@dataclass(frozen=True)
class Reference:
    """`eenn/reference.json`: the Python int8 chain on the bundle's test split (what the board must
    answer, sample by sample), with the int8 base model and the whole-EENN check beside it."""
    bundle_hash: str
    n: int
    accuracy: float
    termination_rates: list[float]
    early_termination: float
    samples: list[ReferenceSample]
    base_accuracy: float | None = None  # the base model converted alone to int8
    float_accuracy: float | None = None  # the bundle's float EENN
    whole_eenn: WholeEennAgreement | None = None
    split: str = "test"
    generator: str = ""
    schema_version: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "generator": self.generator, "bundle_hash": self.bundle_hash,
                "split": self.split, "n": self.n, "accuracy": self.accuracy,
                "termination_rates": self.termination_rates, "early_termination": self.early_termination,
                "float_accuracy": self.float_accuracy, "base_accuracy": self.base_accuracy,
                "whole_eenn": None if self.whole_eenn is None else asdict(self.whole_eenn),
                "samples": [smp.to_json() for smp in self.samples]}

    @classmethod
    def from_json(cls, d: Any, where: str) -> Reference:
        top = known_fields(cls, d, where)
        if not isinstance(top["samples"], list):
            raise EennError(f"{where}: 'samples' must be a list of per-sample answers ({{'class', 'exit', ...}})")
        samples = []
        for i, smp in enumerate(top["samples"]):
            at = f"{where}: samples[{i}]"
            if not isinstance(smp, dict) or "class" not in smp or "exit" not in smp:
                raise EennError(f"{at}: expected an object with the fields 'class' and 'exit'")
            samples.append(ReferenceSample(cls=int(smp["class"]), exit=int(smp["exit"]), label=smp.get("label"),
                                           scores_q=smp.get("scores_q")))
        whole = top.get("whole_eenn")
        whole = None if whole is None else WholeEennAgreement(**known_fields(WholeEennAgreement, whole,
                                                                              f"{where}: whole_eenn"))
        return cls(**{**top, "samples": samples, "whole_eenn": whole})


def reference_json_bytes(reference: Reference) -> bytes:
    """eenn/reference.json as `eenn generate` writes it (the Python int8 chain's answers)."""
    return (json.dumps(reference.to_json(), indent=1, sort_keys=True) + "\n").encode()


def read_reference(project_dir: str | Path) -> Reference | None:
    """eenn/reference.json of a generated project; None when the project has none."""
    path = Path(project_dir) / REFERENCE_PATH
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise EennError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(raw, dict) and raw.get("schema_version", 1) != 1:
        raise EennError(f"{path}: schema_version {raw.get('schema_version')!r}, this eenn reads 1")
    return Reference.from_json(raw, str(path))


def check_same_bundle(project_dir: str | Path, project_hash: str | None, bundle_dir: str | Path,
                      bundle_hash: str) -> None:
    """The one check that a project (its `eenn/project.json` bundle_hash) belongs to a bundle;
    raises EennError, saying how to regenerate, when it does not."""
    if project_hash != bundle_hash:
        raise EennError(f"{project_dir} was generated from bundle {str(project_hash or '?')[:12]}, not from "
                        f"{bundle_dir} ({bundle_hash[:12]}); regenerate it: "
                        f"`eenn generate {bundle_dir} --out {project_dir} --force`")


def load_manifest(project_dir: str | Path) -> ProjectManifest:
    """Read and check `eenn/project.json` of a generated project."""
    path = Path(project_dir) / MANIFEST_PATH
    if not path.is_file():
        raise EennError(f"{path}: not found; is {project_dir} a project made by `eenn generate`?")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EennError(f"{path}: not valid JSON ({exc})") from exc
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise EennError(f"{path}: schema_version {version!r}, this eenn reads {SCHEMA_VERSION}")
    try:
        manifest = ProjectManifest.from_dict(raw, str(path))
    except (KeyError, TypeError) as exc:
        raise EennError(f"{path}: malformed manifest ({exc})") from exc
    if not manifest.stages or not manifest.stages[-1].is_last:
        raise EennError(f"{path}: the last stage must have no feature_map (it takes everything left)")
    for stage in manifest.stages[:-1]:
        if stage.feature_map is None or stage.threshold_q is None:
            raise EennError(f"{path}: stage {stage.index} needs a feature_map and a threshold_q")
    cores = manifest.stage_cores()
    n_cores = len(manifest.cores) if manifest.cores is not None else len(cores)
    if any(b < a for a, b in zip(cores, cores[1:])) or any(not 0 <= c < n_cores for c in cores):
        raise EennError(f"{path}: stages' core_index {cores}: expected non-decreasing cores in 0..{n_cores - 1}")
    return manifest
