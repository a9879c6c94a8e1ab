"""`eenn deploy`: trained model → early-exit search → ModusToolbox project → HIL run → report.

One directory holds the whole run, one sub-directory per stage, so each stage's output can also
be used on its own (`eenn generate DIR/bundle`, `eenn hil run --bundle DIR/bundle`, ...):

    DIR/deploy.json    what was asked and what each stage produced (also marks DIR as eenn's)
    DIR/example/       model.keras + data.npz of a built-in example (`--example`)
    DIR/bundle/        the solution bundle (docs/interfaces.md §2)
    DIR/project/       the generated dual-core project (§3)
    DIR/hil/           the HIL session (docs/hil.md)
    DIR/report.html    one file, plots embedded; DIR/report.md beside it

Why a state file: the search runs for minutes and a HIL run on a board for longer. Started again
with the same inputs, a deploy keeps every stage whose inputs did not change (the search also
keeps its trained exits in the exit cache, the HIL session the samples already run), so an
interrupted deploy continues rather than starts over. A stage whose inputs changed is redone and
everything after it with it.
"""
from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from eenn import __version__
from eenn.augment.bundle import SOLUTION_FILE
from eenn.augment.search_config import SearchConfig
from eenn.augment.model_io import file_sha256
from eenn.codegen.manifest import MANIFEST_PATH, REFERENCE_PATH, load_manifest
from eenn.deploy_state import DeployState, StageRecord, read_state, write_state
from eenn.errors import EennError
from eenn.hil.summary import Summary

DEFAULT_KIT = "CY8CKIT-062S2-43012"


@dataclass
class DeployOptions:
    out: Path
    model: Path | None = None
    data: Path | None = None
    example: str | None = None  # built-in example name instead of model + data
    search: SearchConfig = field(default_factory=SearchConfig)  # as `eenn search` (cache_dir None: no cache)
    kit: str = DEFAULT_KIT
    port: str = "virtual"
    limit: int | None = None  # HIL: run only the first N test samples
    force: bool = False
    quiet: bool = False


@dataclass
class DeployResult:
    out: Path
    bundle: Path
    project: Path
    session: Path
    report_html: Path
    report_md: Path
    stages: dict[str, StageRecord] = field(default_factory=dict)  # per stage: "ran" or "kept", seconds, …
    summary: Summary | None = None  # the HIL session's summary.json, once it ran

    def to_dict(self) -> dict[str, Any]:
        """What `eenn deploy --json` prints: paths as text, the summary as its file says it."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["stages"] = {k: v.to_json() for k, v in self.stages.items()}
        d["summary"] = self.summary.document if self.summary else None
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


# ------------------------------------------------------------------------------------ state
def key_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------------------------ stages
def _resolve_inputs(opts: DeployOptions, out: Path, say: Callable[[str], None]) -> tuple[Path, Path]:
    if opts.example is not None:
        if opts.model is not None or opts.data is not None:
            raise EennError("--example replaces MODEL and --data: give one or the other")
        from eenn.examples import make_example

        ex_dir = out / "example"
        model, data = ex_dir / "model.keras", ex_dir / "data.npz"
        if model.is_file() and data.is_file():
            say(f"example '{opts.example}': kept {model} and {data}")
        else:
            say(f"example '{opts.example}': training the model (seconds)")
            model, data = make_example(opts.example, ex_dir, seed=opts.search.seed)
        return model, data
    if opts.model is None:
        raise EennError("give MODEL (a .keras, .h5 or SavedModel directory) and --data DATA.npz, or --example digits")
    if opts.data is None:
        raise EennError("--data DATA.npz is needed: the search trains exits and picks thresholds on it")
    for what, p in (("MODEL", opts.model), ("--data", opts.data)):
        if not Path(p).exists():
            raise EennError(f"{what} {p}: not found")
    return Path(opts.model), Path(opts.data)


def _search_config(opts: DeployOptions) -> SearchConfig:
    """The checked search configuration (a copy: checking fills in the objective's defaults)."""
    return copy.deepcopy(opts.search).checked()


def _search_key(model: Path, data: Path, config: SearchConfig) -> dict[str, Any]:
    """What the bundle depends on: the inputs' contents and the config's answer fields (where the
    exit cache lies or which workers train does not change the answer)."""
    files = {name: file_sha256(Path(p)) for name, p in (("hardware", config.hardware), ("measured", config.measured))
             if p is not None and Path(p).is_file()}  # a profile or measurement file: its content
    return {"model_sha256": file_sha256(model), "data_sha256": file_sha256(data), "files_sha256": files,
            "config": config.answer_key(), "eenn": __version__}


def _bundle_ok(path: Path, expected_hash: str | None) -> bool:
    from eenn.augment.bundle import load_bundle

    if expected_hash is None or not (path / SOLUTION_FILE).is_file():
        return False
    try:
        return load_bundle(path).hash == expected_hash
    except EennError:
        return False


def _project_ok(path: Path, bundle_hash: str, kit: str) -> bool:
    try:
        m = load_manifest(path)
    except EennError:  # missing, unreadable or of another schema: generated again
        return False
    return m.bundle_hash == bundle_hash and m.kit == kit and (path / REFERENCE_PATH).is_file()


def deploy(opts: DeployOptions, say: Callable[[str], None] = print) -> DeployResult:
    """Run (or continue) the whole pipeline into `opts.out`; raises EennError on bad input."""
    from eenn.codegen.kits import get_kit

    out = Path(opts.out)
    get_kit(opts.kit)  # an unknown kit fails before minutes of search
    config = _search_config(opts)  # so do bad search options
    if opts.port != "virtual" and opts.port.startswith("virtual:"):
        raise EennError("--port virtual:PROJECT is for `eenn hil run`; deploy runs its own project: use --port virtual")
    before = read_state(out, opts.force)
    out.mkdir(parents=True, exist_ok=True)
    previous = before.stages if before else {}
    write_state(out, DeployState(stages=dict(previous)))  # marks the directory as eenn's from the start
    state = DeployState()

    res = DeployResult(out=out, bundle=out / "bundle", project=out / "project", session=out / "hil",
                       report_html=out / "report.html", report_md=out / "report.md")
    model, data = _resolve_inputs(opts, out, say)
    state.inputs = {"model": str(model), "data": str(data), "kit": opts.kit, "port": opts.port}

    def done(name: str, record: StageRecord) -> None:  # recorded at once: a killed deploy keeps it
        res.stages[name] = state.stages[name] = record
        write_state(out, state)


    # 1. search ---------------------------------------------------------------------------
    key = key_of(_search_key(model, data, config))
    prev = previous.get("search")
    t0 = time.monotonic()
    if prev and prev.key == key and prev.bundle_hash and _bundle_ok(res.bundle, prev.bundle_hash):
        bundle_hash = prev.bundle_hash
        say(f"[1/4] search: kept {res.bundle} (same model, data and options)")
        done("search", replace(prev, status="kept"))
    else:
        from eenn.augment.progress import Progress
        from eenn.augment.report import format_summary
        from eenn.augment.search import run_search
        from eenn.augment.solution import write_result

        say(f"[1/4] search: {model} on {data}, hardware {config.hardware}")
        result = run_search(model, data, config, progress=Progress(enabled=not opts.quiet, err=True))
        bundle_hash = write_result(result, res.bundle, force=True)
        say(format_summary(result.solution, result.pareto_rows))
        done("search", StageRecord("ran", round(time.monotonic() - t0, 1), key=key, bundle_hash=bundle_hash))

    # 2. generate ---------------------------------------------------------------------------
    t0 = time.monotonic()
    if _project_ok(res.project, bundle_hash, opts.kit):
        say(f"[2/4] generate: kept {res.project} (generated from this bundle for {opts.kit})")
        done("generate", replace(previous.get("generate") or StageRecord("kept", kit=opts.kit), status="kept"))
    else:
        from eenn.codegen.generate import generate, report_lines

        say(f"[2/4] generate: ModusToolbox project for {opts.kit}")
        gen = generate(res.bundle, opts.kit, res.project, force=True, log=say if not opts.quiet else (lambda s: None))
        for line in report_lines(gen):
            say("  " + line)
        done("generate", StageRecord("ran", round(time.monotonic() - t0, 1), kit=opts.kit))

    # 3. HIL run ----------------------------------------------------------------------------
    from eenn.hil.run import RunOptions, run

    t0 = time.monotonic()
    prev_hil = previous.get("hil") or StageRecord("none")
    project_sha = file_sha256(res.project / MANIFEST_PATH)
    if res.session.exists() and (prev_hil.project_sha256 != project_sha or prev_hil.port != opts.port):
        shutil.rmtree(res.session)  # results of another project or board are not continued
    say(f"[3/4] HIL: test split on {'the virtual board' if opts.port == 'virtual' else opts.port}")
    hil = run(RunOptions(port=opts.port, out=res.session, bundle=res.bundle, project=res.project, limit=opts.limit,
                         progress=not opts.quiet))
    res.summary = hil.summary
    # a run that only re-read the session keeps the time of the one that ran it
    seconds = round(time.monotonic() - t0, 1) if hil.ran or prev_hil.seconds is None else prev_hil.seconds
    done("hil", StageRecord("ran" if hil.ran else "kept", seconds, bundle_hash=bundle_hash, project_sha256=project_sha,
                            port=opts.port, ran=hil.ran, skipped=hil.skipped))

    # 4. report -----------------------------------------------------------------------------
    from eenn.report import ReportSources, write_report

    write_report(ReportSources(bundle=res.bundle, project=res.project, session=res.session), res.report_html,
                 res.report_md)
    done("report", StageRecord("ran", html=str(res.report_html), md=str(res.report_md)))
    say(f"[4/4] report: {res.report_html} (and {res.report_md.name})")
    return res


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def agreement_lines(summary: Summary) -> list[str]:
    """Board vs its int8 prediction (and the search's own figure): the check a user reads first."""
    lines = []
    for key, name in (("accuracy", "accuracy"), ("early_termination", "early termination")):
        v = summary.metric(key)
        lines.append(f"{name}: board {_pct(v.measured)}, int8 prediction {_pct(v.reference)} "
                     f"(search {_pct(v.predicted)})")
    agree = summary.metric("reference_agreement").measured
    if agree is not None:
        lines.append(f"board and int8 prediction agree (class and exit) on {_pct(agree)} of the samples")
    return lines
