"""The solution bundle: everything downstream of the search reads only this directory.

`solution.json` describes the early-exit network (docs/interfaces.md §2); the Keras parts and
the calibration/test data sit beside it, each listed with its SHA-256 so that a missing or
altered file is caught before anything is generated from it. Bundles are written to a
temporary sibling directory and renamed into place: a failed or interrupted search never
leaves a partial bundle behind.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from eenn.atomic import staged_directory
from eenn.augment.model_io import file_sha256
from eenn.errors import EennError

SCHEMA_VERSION = 1
SOLUTION_FILE = "solution.json"
METRIC_KEYS = ("accuracy", "precision", "recall", "mean_macs", "mean_latency_s", "worst_latency_s", "mean_energy_j")


@dataclass(frozen=True)
class BaseModelInfo:
    source: str
    sha256: str
    file: str
    input_shape: list[int]
    num_classes: int
    total_macs: int
    output: str = "softmax"  # or "logits"


@dataclass(frozen=True)
class SegmentSpec:
    index: int
    processor: str
    first_layer: str
    last_layer: str
    file: str
    macs: int
    output_shape: list[int]


@dataclass(frozen=True)
class ExitSpec:
    index: int
    after_layer: str
    processor: str
    threshold: float
    file: str
    macs: int


@dataclass(frozen=True)
class Solution:
    base_model: BaseModelInfo
    hardware: dict[str, Any]
    search: dict[str, Any]
    segments: list[SegmentSpec]
    exits: list[ExitSpec]
    metrics: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    generator: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Solution:
        return cls(
            base_model=BaseModelInfo(**d["base_model"]),
            hardware=d["hardware"],
            search=d["search"],
            segments=[SegmentSpec(**s) for s in d["segments"]],
            exits=[ExitSpec(**e) for e in d["exits"]],
            metrics=d["metrics"],
            files=dict(d.get("files", {})),
            schema_version=d["schema_version"],
            generator=d.get("generator", ""),
        )

    def check(self, where: str = SOLUTION_FILE) -> None:
        """Structural rules the rest of the pipeline relies on."""
        if len(self.segments) != len(self.exits) + 1:
            raise EennError(f"{where}: {len(self.segments)} segments and {len(self.exits)} exits: "
                            "expected one exit at the end of every segment but the last (segments = exits + 1)")
        order = [p.get("name") for p in self.hardware.get("processors", [])]
        if order:
            at = [order.index(s.processor) if s.processor in order else -1 for s in self.segments]
            if -1 in at or at != sorted(at):
                raise EennError(f"{where}: segment processors {[s.processor for s in self.segments]}: expected "
                                f"processors of the hardware profile ({', '.join(order)}) in its order, "
                                "each used for one or more consecutive segments")
        for i, (seg, ex) in enumerate(zip(self.segments, self.exits)):
            if seg.index != i or ex.index != i:
                raise EennError(f"{where}: segments/exits must be numbered 0, 1, … in order")
            if ex.processor != seg.processor or ex.after_layer != seg.last_layer:
                raise EennError(f"{where}: exit {i} must sit at the end of segment {i} on the same processor")
        for part in ("base", "eenn"):
            missing = [k for k in METRIC_KEYS if k not in self.metrics.get(part, {})]
            if missing:
                raise EennError(f"{where}: metrics.{part} lacks {', '.join(missing)}")
        if "early_termination" not in self.metrics["eenn"]:
            raise EennError(f"{where}: metrics.eenn lacks early_termination")


def solution_json_bytes(solution: Solution) -> bytes:
    return (json.dumps(solution.to_dict(), indent=2, sort_keys=True) + "\n").encode()


def write_bundle(out_dir: str | Path, solution: Solution, populate: Callable[[Path], None],
                 hashed: list[str] | None = None, overwrite: bool = False) -> str:
    """Write a bundle atomically and return its hash.

    `populate(tmp_dir)` writes the Keras parts and data files; those named in `hashed` (default:
    every file it wrote except plots and CSVs) are hashed into `solution.files`. Only when all of
    it succeeded is the temporary directory renamed to `out_dir`.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            kind = "a solution bundle" if (out / SOLUTION_FILE).is_file() else "a directory eenn did not write"
            raise EennError(f"{out}: exists and is not empty ({kind}); pass --force to replace it")
    with staged_directory(out, prefix=f".{out.name}.partial-") as tmp:
        populate(tmp)
        names = hashed if hashed is not None else sorted(
            str(p.relative_to(tmp)) for p in tmp.rglob("*")
            if p.is_file() and p.suffix not in (".png", ".csv", ".html", ".md"))
        files = {}
        for name in names:
            if not (tmp / name).is_file():
                raise EennError(f"bundle file {name} was not written")
            files[name] = file_sha256(tmp / name)
        final = Solution(**{**solution.__dict__, "files": files})
        final.check()
        data = solution_json_bytes(final)
        (tmp / SOLUTION_FILE).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Bundle:
    path: Path
    solution: Solution
    hash: str

    def file(self, name: str) -> Path:
        return self.path / name


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read a bundle; with `verify`, every listed file must exist with its recorded hash."""
    root = Path(path)
    sol_path = root / SOLUTION_FILE
    if not sol_path.is_file():
        raise EennError(f"{root}: not a solution bundle (no {SOLUTION_FILE}); make one with `eenn search`")
    data = sol_path.read_bytes()
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as exc:
        raise EennError(f"{sol_path}: not valid JSON ({exc})") from exc
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise EennError(f"{sol_path}: schema_version {raw.get('schema_version')!r}, this eenn reads {SCHEMA_VERSION}")
    try:
        solution = Solution.from_dict(raw)
    except (KeyError, TypeError) as exc:
        raise EennError(f"{sol_path}: malformed solution ({exc})") from exc
    solution.check(str(sol_path))
    if verify:
        for name, digest in sorted(solution.files.items()):
            f = root / name
            if not f.is_file():
                raise EennError(f"{root}: bundle file '{name}' is missing")
            if file_sha256(f) != digest:
                raise EennError(f"{root}: bundle file '{name}' was altered (SHA-256 differs from {SOLUTION_FILE})")
    return Bundle(path=root, solution=solution, hash=hashlib.sha256(data).hexdigest())
