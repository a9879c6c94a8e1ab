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
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from eenn.atomic import staged_directory, writing
from eenn.augment.model_io import file_sha256
from eenn.errors import EennError
from eenn.fields import known_fields as _fields

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
    def from_dict(cls, d: dict[str, Any], where: str = SOLUTION_FILE) -> Solution:
        """The solution described by `d`; a missing field is an EennError naming it (and the
        exit or segment it belongs to). Keys this eenn does not know are ignored (keys may be added)."""
        top = _fields(cls, d, where)
        for key in ("segments", "exits"):
            if not isinstance(d[key], list):
                raise EennError(f"{where}: '{key}' must be a list, got {type(d[key]).__name__}")
        return cls(
            base_model=BaseModelInfo(**_fields(BaseModelInfo, d["base_model"], f"{where}: base_model")),
            hardware=top["hardware"],
            search=top["search"],
            segments=[SegmentSpec(**_fields(SegmentSpec, s, f"{where}: segment {i} (segments[{i}])"))
                      for i, s in enumerate(d["segments"])],
            exits=[ExitSpec(**_fields(ExitSpec, e, f"{where}: exit {i} (exits[{i}])")) for i, e in enumerate(d["exits"])],
            metrics=top["metrics"],
            files=dict(d.get("files", {})),
            schema_version=d.get("schema_version", SCHEMA_VERSION),
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


CONTENT_KEY = "content_sha256"
ACCEPT_EDIT = "eenn accept-edit"


def content_sha256(raw: dict[str, Any]) -> str:
    """SHA-256 of solution.json's content without its own `content_sha256`, as canonical JSON
    (sorted keys, no spaces): re-indenting the file is not an edit; changing any value is."""
    body = {k: v for k, v in raw.items() if k != CONTENT_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _json_bytes(raw: dict[str, Any]) -> bytes:
    return (json.dumps(raw, indent=2, sort_keys=True) + "\n").encode()


def solution_json_bytes(solution: Solution) -> bytes:
    """solution.json as the search writes it: self-verifying through its `content_sha256`."""
    raw = solution.to_dict()
    raw[CONTENT_KEY] = content_sha256(raw)
    return _json_bytes(raw)


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
    notes: tuple[str, ...] = ()  # for the user: e.g. a bundle too old to detect edits

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
    if not isinstance(raw, dict):
        raise EennError(f"{sol_path}: expected a JSON object, got {type(raw).__name__}")
    try:
        solution = Solution.from_dict(raw, str(sol_path))
    except (KeyError, TypeError) as exc:
        raise EennError(f"{sol_path}: malformed solution ({exc})") from exc
    solution.check(str(sol_path))
    notes: list[str] = []
    if verify:
        notes += _check_content(sol_path, raw)
        _check_files(root, solution)
    return Bundle(path=root, solution=solution, hash=hashlib.sha256(data).hexdigest(), notes=tuple(notes))


def _check_files(root: Path, solution: Solution) -> None:
    for name, digest in sorted(solution.files.items()):
        f = root / name
        if not f.is_file():
            raise EennError(f"{root}: bundle file '{name}' is missing")
        if file_sha256(f) != digest:
            raise EennError(f"{root}: bundle file '{name}' was altered (SHA-256 differs from {SOLUTION_FILE})")


def _check_content(sol_path: Path, raw: dict[str, Any]) -> list[str]:
    """solution.json must be as the search (or `eenn accept-edit`) wrote it; notes to print."""
    recorded = raw.get(CONTENT_KEY)
    if recorded is None:
        return [f"note: {sol_path} was written by an eenn without a content hash ({raw.get('generator') or '?'}): "
                f"a hand edit of it cannot be detected; `{ACCEPT_EDIT} {sol_path.parent}` adds one"]
    if recorded != content_sha256(raw):
        raise EennError(f"{sol_path}: edited after the search (its content no longer matches its {CONTENT_KEY}); "
                        "the predicted metrics in it were computed for the search's values. Restore the file "
                        f"(or run `eenn search` again), or accept the edit on purpose: `{ACCEPT_EDIT} {sol_path.parent}`")
    return []


def accept_edit(path: str | Path) -> tuple[str, str]:
    """Accept a hand edit of BUNDLE/solution.json: re-record its `content_sha256`, keeping the
    previous one under `accepted_edits`. The edited file must still be a valid solution and the
    other bundle files intact. Returns (bundle hash before, after); equal when nothing changed."""
    root = Path(path)
    load_bundle(root, verify=False)  # structure and schema of the edited file
    sol_path = root / SOLUTION_FILE
    data = sol_path.read_bytes()
    raw = json.loads(data)
    _check_files(root, Solution.from_dict(raw))
    before = hashlib.sha256(data).hexdigest()
    recorded = raw.get(CONTENT_KEY)
    actual = content_sha256(raw)
    if recorded == actual:
        return before, before
    edits = raw.get("accepted_edits")
    raw["accepted_edits"] = (edits if isinstance(edits, list) else []) + [
        {"content_sha256_before": recorded, "content_sha256_after": actual}]
    raw[CONTENT_KEY] = content_sha256(raw)
    out = _json_bytes(raw)
    tmp = sol_path.with_name(f".{SOLUTION_FILE}.accept")
    with writing(sol_path):  # a sibling, then a rename: a reader sees the old file or the new one
        try:
            tmp.write_bytes(out)
            os.replace(tmp, sol_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return before, hashlib.sha256(out).hexdigest()
