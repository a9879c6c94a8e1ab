"""`eenn hil run`: every test sample through the board, recorded as it arrives, then summarized.

The bundle gives the prediction (`solution.json`) and the default data (`test.npz`); the
generated project gives the manifest (int8 input quantization, tick rates, energy figures) and
`eenn/reference.json`. Three hashes must agree: the bundle's, the project's `bundle_hash` and
the one the board reports. The session directory makes the run resumable (hil/session.py).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eenn.augment.model_io import file_sha256
from eenn.codegen.manifest import MANIFEST_PATH, ProjectManifest, Reference, check_same_bundle, load_manifest, read_reference
from eenn.augment.quant import quantize
from eenn.errors import BoardError, EennError
from eenn.hil.client import BoardClient, BoardInfo, resolve_port
from eenn.hil.energy import DatasheetEnergy
from eenn.atomic import write_json_atomic
from eenn.hil.session import LOG, Session
from eenn.hil.summary import SUMMARY, Summary, summarize

log = logging.getLogger("eenn.hil")


@dataclass
class RunOptions:
    port: str
    out: Path
    bundle: Path | None = None
    project: Path | None = None
    data: Path | None = None
    limit: int | None = None
    timeout: float = 5.0
    infer_timeout: float = 30.0
    retries: int = 3
    reconnect_s: float = 30.0
    meter: Any = None  # an eenn.hil.meters.EnergyMeter, or None: datasheet energy only
    progress: bool = True
    plots: bool = True
    on_record: Callable[[dict], None] | None = None  # called after each durable record (tests, UIs)
    extra_context: dict = field(default_factory=dict)
    virtual_timing: Path | None = None  # `--port virtual`: the virtual board's timing model (hil/timing.py)


@dataclass
class RunResult:
    summary: Summary  # summary.json as written (`.document`) and read back
    session: Path
    ran: int  # samples run by this invocation
    skipped: int  # samples already in the session


def find_project(bundle_dir: Path, bundle_hash: str) -> Path:
    """A generated project for this bundle: inside the bundle directory, or a sibling directory
    whose `eenn/project.json` names this bundle's hash."""
    candidates = [bundle_dir] + sorted(p for p in bundle_dir.iterdir() if p.is_dir()) + sorted(
        p for p in bundle_dir.parent.iterdir() if p.is_dir() and p != bundle_dir)
    found = []
    for p in candidates:
        mf = p / MANIFEST_PATH
        if mf.is_file():
            try:
                if json.loads(mf.read_text()).get("bundle_hash") == bundle_hash:
                    found.append(p)
            except (OSError, ValueError):
                continue
    if len(found) == 1:
        return found[0]
    if not found:
        raise EennError(f"no generated project for bundle {bundle_dir} ({bundle_hash[:12]}) found inside or beside "
                        f"it; pass --project DIR (made by `eenn generate {bundle_dir} --out DIR`)")
    raise EennError(f"several projects beside {bundle_dir} were generated from it: "
                    f"{', '.join(str(p) for p in found)}; pass --project DIR")


@dataclass(frozen=True)
class Inputs:
    bundle_hash: str
    solution: Any  # eenn.augment.bundle.Solution or None
    project: Path
    manifest: ProjectManifest
    data_path: Path
    x: np.ndarray
    y: np.ndarray
    reference: Reference | None


def resolve_inputs(opts: RunOptions) -> Inputs:
    from eenn.augment.bundle import load_bundle

    bundle = load_bundle(opts.bundle) if opts.bundle is not None else None
    for note in bundle.notes if bundle is not None else ():
        log.warning(note)
    project = opts.project
    if project is None and opts.port.startswith("virtual:"):
        project = Path(opts.port.partition(":")[2])
    if project is None:
        if bundle is None:
            raise EennError("pass --bundle DIR (the solution) and/or --project DIR (the generated project)")
        project = find_project(Path(opts.bundle), bundle.hash)
    project = Path(project)
    manifest = load_manifest(project)
    if bundle is not None:
        check_same_bundle(project, manifest.bundle_hash, opts.bundle, bundle.hash)
    data_path = opts.data
    if data_path is None:
        if bundle is None:
            raise EennError("--data FILE.npz is needed without --bundle (the bundle's test.npz is the default)")
        data_path = Path(opts.bundle) / "test.npz"
    data_path = Path(data_path)
    try:
        with np.load(data_path) as d:
            x, y = d["x"], d["y"]
    except FileNotFoundError:
        raise EennError(f"{data_path}: not found") from None
    except (KeyError, ValueError, OSError) as exc:
        raise EennError(f"{data_path}: expected an .npz with arrays 'x' (inputs) and 'y' (integer labels): {exc}") from None
    if len(x) != len(y) or len(x) == 0:
        raise EennError(f"{data_path}: x has {len(x)} samples, y {len(y)}; expected the same, non-zero")
    if int(np.prod(x.shape[1:])) != manifest.input.size:
        raise EennError(f"{data_path}: samples of shape {list(x.shape[1:])}, the model input is "
                        f"{manifest.input.shape} ({manifest.input.size} values)")
    reference = read_reference(project)
    return Inputs(bundle_hash=manifest.bundle_hash, solution=bundle.solution if bundle else None, project=project,
                  manifest=manifest, data_path=data_path, x=x, y=np.asarray(y).astype(int), reference=reference)


def quantized_inputs(manifest: ProjectManifest, x: np.ndarray) -> list[bytes]:
    """The exact int8 bytes sent for each sample (the Int8Chain's `quantize_input`)."""
    q = manifest.input
    return [quantize(np.asarray(s).reshape(q.shape), q.scale, q.zero_point).astype(np.int8).tobytes() for s in x]


def _check_board(info: BoardInfo, manifest: ProjectManifest) -> None:
    if info.input_bytes != manifest.input.size:
        raise EennError(f"the board's model takes {info.input_bytes} input bytes, the project's {manifest.input.size}")
    if info.stages != len(manifest.stages):
        raise EennError(f"the board runs {info.stages} stages, the project has {len(manifest.stages)}")
    want_hz = [s.tick_hz for s in manifest.stages]
    if info.tick_hz != want_hz:
        log.warning("board tick rates %s differ from the project's %s; using the board's", info.tick_hz, want_hz)
    if info.stage_cores is not None and info.stage_cores != manifest.stage_cores():
        raise EennError(f"the board runs its stages on cores {info.stage_cores}, the project on "
                        f"{manifest.stage_cores()}")


class _FileLog:
    """Every record of the run goes to SESSION/run.log; only warnings and errors reach the terminal.

    The run raises the logger to INFO for the file, so it must not propagate: a root handler that
    someone else installed (TensorFlow and Keras code can trigger `logging.basicConfig`) would
    otherwise print a line per sample."""

    def __init__(self, path: Path):
        self.handler = logging.FileHandler(path)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.console = logging.StreamHandler()
        self.console.setLevel(logging.WARNING)
        self.console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        self.old = (log.level, log.propagate)

    def __enter__(self):
        log.addHandler(self.handler)
        log.addHandler(self.console)
        log.setLevel(logging.INFO)
        log.propagate = False
        return self

    def __exit__(self, *exc):
        log.removeHandler(self.handler)
        log.removeHandler(self.console)
        log.setLevel(self.old[0])
        log.propagate = self.old[1]
        self.handler.close()


def run(opts: RunOptions) -> RunResult:
    inp = resolve_inputs(opts)
    n = len(inp.x)
    identity = {"bundle_hash": inp.bundle_hash, "data_sha256": file_sha256(inp.data_path), "n_samples": n}
    extra = {"data": str(inp.data_path), "project": str(inp.project),
             "bundle": None if opts.bundle is None else str(opts.bundle)}
    wanted = range(n if opts.limit is None else min(n, opts.limit))
    # The board first: a run that cannot start (a wrong port, a board that does not answer the
    # handshake, another solution on it) fails with what went wrong and writes no session.
    before = Session.recorded(opts.out, identity)
    conn = _Connection.open(opts, inp) if any(i not in before for i in wanted) else None
    try:
        return _run_session(opts, inp, identity, extra, wanted, conn)
    finally:
        if conn is not None:
            conn.close()


def _run_session(opts: RunOptions, inp: Inputs, identity: dict, extra: dict, wanted: range,
                 conn: _Connection | None) -> RunResult:
    m = inp.manifest
    n = len(inp.x)
    session = Session.open(opts.out, identity, extra)
    with session, _file_log(Path(opts.out) / LOG):
        if session.recovered_torn_line:
            log.warning("%s: dropped a torn last line (a run was killed mid-write)", session.results_path)
        todo = [i for i in wanted if i not in session.done]
        skipped = len(wanted) - len(todo)
        payload = quantized_inputs(m, inp.x)
        info = None
        if todo:
            own = None
            try:
                if conn is None:  # samples recorded when we looked are gone (the file was edited)
                    conn = own = _Connection.open(opts, inp)
                info = _run_samples(opts, inp, session, conn, todo, payload)
            except EennError as exc:
                log.error("stopped: %s", exc)
                kind = BoardError if isinstance(exc, BoardError) else EennError
                raise kind(f"{exc}\n{len(session.records)} of {n} samples are recorded in {opts.out}; "
                           "run the same command again to continue") from exc
            except KeyboardInterrupt:
                log.warning("interrupted: %d of %d samples recorded", len(session.records), n)
                raise
            finally:
                if own is not None:
                    own.close()
        meta_board = session.meta.get("starts", [{}])[-1].get("board") if session.meta.get("starts") else None
        timing = (info.timing if info else (meta_board or {}).get("timing", "unknown"))
        # per core (the unit of each m-eenn-ticks entry); firmware before placement: per stage = per core
        tick_hz = ((info.core_tick_hz or info.tick_hz) if info else
                   (meta_board or {}).get("core_tick_hz") or (meta_board or {}).get("tick_hz", m.core_tick_hz()))
        solution = inp.solution
        energy_model = DatasheetEnergy.from_manifest(m, solution.hardware if solution else None)
        meter_name = getattr(opts.meter, "name", None)
        document = summarize(
            session.ordered(), inp.y, m, tick_hz=tick_hz, timing=timing, energy_model=energy_model,
            predicted=solution.metrics.get("eenn") if solution else None, reference=inp.reference, n_data=n,
            energy_source=f"meter: {meter_name}" if meter_name else "datasheet",
            context={"project": str(inp.project), "data": {"path": str(inp.data_path), "sha256": identity["data_sha256"]},
                     "board": meta_board, "session": str(opts.out), **opts.extra_context},
        )
        write_json_atomic(Path(opts.out) / SUMMARY, document)
        summary = Summary.from_document(document, str(Path(opts.out) / SUMMARY))
        log.info("summary: %d of %d samples, accuracy %s", summary.n, n, summary.metric("accuracy").measured)
        if opts.plots:
            from eenn.hil.plots import write_plots

            write_plots(summary, session.ordered(), tick_hz, Path(opts.out))
    return RunResult(summary=summary, session=Path(opts.out), ran=len(todo), skipped=skipped)


class _Connection:
    """The board (and the in-process virtual board behind `--port virtual`), past its handshake."""

    def __init__(self, client: BoardClient, vport, info: BoardInfo):
        self.client, self.vport, self.info = client, vport, info

    @classmethod
    def open(cls, opts: RunOptions, inp: Inputs) -> _Connection:
        """Open the port and identify the board (with `opts.retries` retries), checked against the
        project; on any failure everything opened here is closed again."""
        target, vport = resolve_port(opts.port, inp.project,
                                     **({"timing": opts.virtual_timing} if opts.virtual_timing else {}))
        client = None
        try:
            client = BoardClient(target, expected_hash=inp.bundle_hash, timeout=opts.timeout,
                                 infer_timeout=opts.infer_timeout, retries=opts.retries,
                                 reconnect_s=opts.reconnect_s, mode="energy" if opts.meter is not None else None)
            info = client.open()
            _check_board(info, inp.manifest)
            return cls(client, vport, info)
        except BaseException:
            if client is not None:
                client.close()
            if vport is not None:
                vport.close()
            raise

    def close(self) -> None:
        self.client.close()
        if self.vport is not None:
            self.vport.close()


def _file_log(path: Path) -> _FileLog:
    try:
        return _FileLog(path)
    except OSError as exc:
        from eenn.atomic import write_error

        raise write_error(path, exc) from exc


def _run_samples(opts: RunOptions, inp: Inputs, session: Session, conn: _Connection, todo: list[int],
                 payload: list[bytes]) -> BoardInfo:
    meter = opts.meter
    client, info = conn.client, conn.info
    board = {"port": opts.port, **info.to_dict(), "measured": info.measured}
    session.note_start({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "port": opts.port, "board": board,
                        "todo": len(todo)})
    log.info("board on %s: %s %s, solution %s, timing: %s", opts.port, info.firmware, info.model, info.hash[:12],
             info.timing)
    if client.handshake_failures:
        log.warning("the start-up handshake needed %d attempts (%s)", len(client.handshake_failures) + 1,
                    "; ".join(client.handshake_failures))
    if not info.measured:
        log.info("the board's times are not measurements (%s)", info.timing)
    integrator = None
    before: Callable[[], None] | None = None
    if meter is not None:
        from eenn.hil.meters import EdgeWindows

        integrator = EdgeWindows()
        meter.start()

        def drop_earlier() -> None:
            integrator.feed(meter.read())  # drop whatever came before this inference
            integrator.reset_pairing()
        before = drop_earlier
    bar = _progress(opts, len(todo))
    try:
        for i in todo:
            res, attempts = client.infer_sample(payload[i], before_infer=before)
            rec = {"index": i, "label": int(inp.y[i]), "class": res.cls, "exit": res.exit,
                   "confidence_q": res.confidence_q, "scores_q": res.scores_q, "ticks": res.ticks,
                   "handoffs": res.handoffs,
                   "elapsed_us": res.elapsed_us, "lap_us": res.lap_us, "crc32": res.crc32,
                   "attempts": attempts, "time": round(time.time(), 3)}
            if integrator is not None:
                window = _meter_window(meter, integrator)
                rec["meter_j"] = window.energy_j
                rec["meter_window_s"] = window.duration_s
            session.append(rec)
            log.info("sample %d: class %d (label %d) exit %d, %d us%s", i, res.cls, rec["label"], res.exit,
                     res.elapsed_us, f", {attempts} attempts" if attempts > 1 else "")
            bar.update(1)
            if opts.on_record is not None:
                opts.on_record(rec)
    finally:
        bar.finish()
        if meter is not None:
            meter.stop()
    if client.recoveries:
        log.warning("recovered the conversation %d time(s) (%d board reset(s) seen)", client.recoveries,
                    client.resets_seen)
    return info


def _meter_window(meter, integrator, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while True:
        windows = integrator.feed(meter.read())
        if windows:
            return windows[0]
        if time.monotonic() > deadline:
            raise EennError(f"the energy meter ({meter.name}) saw no timestamp edge pair for the inference within "
                            f"{timeout_s:g} s: is the board's timestamp pin wired to the meter's digital input?")
        time.sleep(0.01)


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled and total and sys.stderr.isatty():  # the log (run.log) is the record elsewhere
            import click

            self.bar = click.progressbar(length=total, label="samples", file=sys.stderr, show_pos=True,
                                         show_eta=True)
            self.bar.__enter__()

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _progress(opts: RunOptions, total: int) -> _Progress:
    return _Progress(total, opts.progress)
