"""`deploy.json`: what a deploy directory was made from and what each stage produced.

It marks the directory as eenn's (a directory without it is not deployed into without --force)
and lets a second `eenn deploy` keep every stage whose inputs did not change. Written atomically
after each stage, so a deploy killed at any point leaves the record of the stages it finished.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eenn import __version__
from eenn.atomic import write_json_atomic
from eenn.errors import EennError
from eenn.fields import known_fields

STATE = "deploy.json"
STATE_SCHEMA = 1


@dataclass
class StageRecord:
    """One stage's entry (`stages.<name>`): how it ended and what the next run compares."""
    status: str  # ran | kept
    seconds: float | None = None  # of the run that produced it (a kept stage keeps its first run's)
    key: str | None = None  # search: hash of its inputs (deploy._search_key)
    bundle_hash: str | None = None  # search, hil: the bundle it produced / ran
    kit: str | None = None  # generate
    project_sha256: str | None = None  # hil: the project.json the session ran
    port: str | None = None  # hil
    ran: int | None = None  # hil: samples run by this invocation
    skipped: int | None = None  # hil: samples already in the session
    html: str | None = None  # report
    md: str | None = None  # report

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class DeployState:
    stages: dict[str, StageRecord] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # model, data, kit, port as resolved
    schema_version: int = STATE_SCHEMA
    generator: str = f"eenn {__version__}"

    def stage(self, name: str) -> StageRecord | None:
        return self.stages.get(name)

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "generator": self.generator, "inputs": self.inputs,
                "stages": {k: v.to_json() for k, v in self.stages.items()}}

    @classmethod
    def from_json(cls, d: Any, where: str) -> DeployState:
        top = known_fields(cls, d, where)
        stages = top.get("stages") or {}
        if not isinstance(stages, dict):
            raise EennError(f"{where}: 'stages' must be an object of stage name → record")
        return cls(**{**top, "stages": {k: StageRecord(**known_fields(StageRecord, v, f"{where}: stages.{k}"))
                                        for k, v in stages.items()}})


def read_state(out: Path, force: bool) -> DeployState | None:
    """The previous deploy's state, None for a new directory (or, with `force`, an unreadable
    one); refuses a non-empty directory eenn did not make."""
    if out.exists() and not out.is_dir():
        raise EennError(f"--out {out}: is a file, expected a directory")
    path = out / STATE
    if path.is_file():
        try:
            raw = json.loads(path.read_text())
        except ValueError as exc:
            problem = f"{path}: not valid JSON ({exc})"
        else:
            version = raw.get("schema_version") if isinstance(raw, dict) else None
            problem = f"{path}: schema_version {version!r}, expected {STATE_SCHEMA}"
            if version == STATE_SCHEMA:
                try:
                    return DeployState.from_json(raw, str(path))
                except EennError as exc:  # names the file and the field
                    problem = str(exc)
        if force:
            return None
        raise EennError(f"{problem}; pass --force to start over")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise EennError(f"{out}: exists, is not empty and was not made by `eenn deploy` (no {STATE}); "
                        "pass --force to deploy into it anyway")
    return None


def write_state(out: Path, state: DeployState) -> None:
    write_json_atomic(out / STATE, state.to_json())
