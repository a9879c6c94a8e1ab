"""`eenn hil ...`: the hardware-in-the-loop commands (virtual board, run, regress, ports)."""
from __future__ import annotations

import signal
import sys

import click

from eenn.errors import EennError


@click.group()
def hil() -> None:
    """Hardware-in-the-loop: talk to a board (or the virtual board) over the HIL protocol."""


@hil.command()
@click.argument("project", type=click.Path(exists=True, file_okay=False))
@click.option("--socket", "socket_port", type=click.IntRange(0, 65535), default=None,
              help="Also serve on socket://127.0.0.1:PORT (0: pick a free port).")
@click.option("--model-id", default=None,
              help="Model name in `profile` (m-model-[...]); the MLPerf Tiny runner picks its test by it. "
                   "Default: the project's firmware.model_id, else 'eenn'. ic01/vww01 start the board "
                   "in uint8 input, ad01 in float32 (docs/protocol.md 2.6).")
@click.option("--energy", is_flag=True, help="Start in energy mode (timestamps are pin pulses, not m-lap-us).")
@click.option("--timing", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Play a board with this timing (JSON/TOML: per processor and TFLite operator, cycles_per_mac "
                   "and cycles_per_call; '*' for the other operators; docs/hil.md). Default: the cost model.")
def virtual(project: str, socket_port: int | None, model_id: str | None, energy: bool, timing: str | None) -> None:
    """Run PROJECT's firmware on the host as a virtual board and serve the HIL protocol.

    PROJECT is a directory made by `eenn generate` (it has eenn/project.json). The firmware's
    C sources are built for the host (once, cached by source hash); the subgraphs run on the
    tflite_micro runtime; ticks come from the cost model, not from measurement. Prints the
    pseudo-terminal's path (and the socket URL) and serves until Ctrl-C or SIGTERM.
    """
    from eenn.hil.virtual_board import VirtualBoard

    board = VirtualBoard(project, model_id=model_id, energy_mode=energy, timing=timing)
    try:
        path = board.open_pty()
        url = board.open_socket(socket_port) if socket_port is not None else None
        m = board.manifest
        click.echo(f"eenn virtual board: {board.project_dir} (bundle {m.bundle_hash[:12]}), "
                   f"{len(m.stages)} stages, timing from "
                   f"{'the timing model ' + timing if timing else 'the cost model'} (not measured)")
        click.echo(f"pty: {path}")
        if url:
            click.echo(f"socket: {url}")
        click.echo("serving; Ctrl-C to stop")
        sys.stdout.flush()

        def _stop(signum, _frame):
            board.stop()

        old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            board.serve()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        click.echo("stopped")
    finally:
        board.close()


@hil.command("mlperf", context_settings={"ignore_unknown_options": True})
@click.option("--runner", "runner_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="mlcommons/tiny's benchmark/runner directory (its main.py runs unmodified).")
@click.option("--port", required=True,
              help="The board's serial port, or virtual:PROJECT to start a virtual board here.")
@click.argument("runner_args", nargs=-1, type=click.UNPROCESSED)
def mlperf(runner_dir: str, port: str, runner_args: tuple[str, ...]) -> None:
    """Run the MLPerf Tiny runner against PORT, listed with KitProg3's USB ids (docs/hil.md).

    RUNNER_ARGS go to the runner's main.py (after `--`), e.g. `-- --mode=p --device_list=devices.yaml
    --dataset_path=DATASETS --test_script=tests_performance.yaml`.
    """
    from eenn.hil.client import resolve_port
    from eenn.hil.mlperf import run_runner

    path, vp = resolve_port(port)
    try:
        rc = run_runner(runner_dir, path, list(runner_args))
    finally:
        if vp is not None:
            vp.close()
    if rc:
        raise SystemExit(rc)


@hil.command("run")
@click.option("--port", required=True,
              help="Serial device (/dev/ttyACM0, COM5), pyserial URL (socket://127.0.0.1:PORT) or "
                   "'virtual' / 'virtual:PROJECT' (the virtual board, in this process).")
@click.option("--bundle", type=click.Path(exists=True, file_okay=False), default=None,
              help="Solution bundle (eenn search --out): the prediction and the default test data.")
@click.option("--project", type=click.Path(exists=True, file_okay=False), default=None,
              help="Generated project (eenn generate --out). Default: found inside or beside the bundle.")
@click.option("--data", type=click.Path(exists=True, dir_okay=False), default=None,
              help="An .npz with x (inputs) and y (labels). Default: the bundle's test.npz.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Session directory; run again with the same one to continue a run that stopped.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N samples.")
@click.option("--timeout", type=click.FloatRange(0.1), default=5.0, show_default=True,
              help="Seconds to wait for a reply (an inference gets --infer-timeout more).")
@click.option("--infer-timeout", type=click.FloatRange(0.1), default=30.0, show_default=True)
@click.option("--retries", type=click.IntRange(0), default=3, show_default=True,
              help="Attempts per sample after the first (each after a resync / reconnection).")
@click.option("--reconnect", "reconnect_s", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Seconds to wait for a board that went away (reset, re-enumeration) to come back.")
@click.option("--meter", default=None,
              help="External energy meter: ppk2[:PORT] or joulescope (timestamp pin on its digital input). "
                   "Default: the datasheet model only.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--no-plots", is_flag=True, help="Do not write latency.png / energy.png.")
@click.option("--virtual-timing", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --port virtual: the virtual board's timing model (as `eenn hil virtual --timing`).")
def run_cmd(port, bundle, project, data, out_dir, limit, timeout, infer_timeout, retries, reconnect_s, meter,
            no_progress, no_plots, virtual_timing) -> None:
    """Run every test sample through a board and summarize against the prediction.

    Results are appended to OUT/results.jsonl as they arrive; OUT/summary.json holds accuracy,
    precision, recall, termination rates, latency per exit path and core, energy, each beside
    the solution's prediction and the int8 reference (docs/hil.md).
    """
    from pathlib import Path

    from eenn.hil.meters import make_meter
    from eenn.hil.run import RunOptions, run
    from eenn.hil.summary import format_table

    opts = RunOptions(port=port, out=Path(out_dir), bundle=Path(bundle) if bundle else None,
                      project=Path(project) if project else None, data=Path(data) if data else None, limit=limit,
                      timeout=timeout, infer_timeout=infer_timeout, retries=retries, reconnect_s=reconnect_s,
                      meter=make_meter(meter), progress=not no_progress, plots=not no_plots,
                      virtual_timing=_virtual_timing(port, virtual_timing))
    try:
        res = run(opts)
    except KeyboardInterrupt:
        if Path(out_dir).is_dir():
            click.echo(f"\ninterrupted; the samples done are kept in {out_dir}: run the same command again to "
                       "continue", err=True)
        else:
            click.echo("\ninterrupted before the board answered; nothing was written", err=True)
        raise SystemExit(130) from None
    s = res.summary
    click.echo(format_table(s))
    agree = s.metric("reference_agreement").measured
    if agree is not None and agree < 1.0:
        click.echo(f"WARNING: {round((1 - agree) * s.n)} sample(s) answered differently from the Python int8 chain "
                   "(eenn/reference.json): a firmware or build problem; compare class/exit in results.jsonl", err=True)
    for p in s.paths:  # the same class can hide different int8 arithmetic
        diff = p.int8_reference.score_diff_lsb if p.int8_reference else None
        if diff and diff.max:
            click.echo(f"WARNING: exit {p.exit}: the board's int8 scores differ from the Python int8 chain's by up "
                       f"to {diff.max:g} LSB (RMS {diff.rms:.3g}): the kernels do not compute what the reference does",
                       err=True)
    click.echo(f"{s.n} of {s.n_data} samples ({res.ran} run now, {res.skipped} from before); "
               f"{s.retries} retried; session: {res.session}")


def _virtual_timing(port: str, timing: str | None):
    from pathlib import Path

    if timing is None:
        return None
    if not (port == "virtual" or port.startswith("virtual:")):
        raise EennError(f"--virtual-timing {timing}: only for --port virtual (a board has its own timing)")
    return Path(timing)


@hil.command("profile")
@click.option("--port", required=True,
              help="Serial device, pyserial URL or 'virtual' / 'virtual:PROJECT' (as for `eenn hil run`).")
@click.option("--project", type=click.Path(exists=True, file_okay=False), required=True,
              help="The generated project the board runs (eenn generate --out).")
@click.option("--bundle", type=click.Path(exists=True, file_okay=False), default=None,
              help="Its solution bundle (Keras layer counts for layer_overhead_s). Default: the project's "
                   "directory or its parent when it holds the bundle; without one the fit is per operator.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="The measured JSON to write (for `eenn search --measured`).")
@click.option("--samples", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Whole-chain inferences to time (medians are kept).")
@click.option("--timeout", type=click.FloatRange(0.1), default=5.0, show_default=True)
@click.option("--infer-timeout", type=click.FloatRange(0.1), default=30.0, show_default=True)
@click.option("--virtual-timing", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --port virtual: the virtual board's timing model (as `eenn hil virtual --timing`).")
def profile_cmd(port, project, bundle, out_path, samples, timeout, infer_timeout, virtual_timing) -> None:
    """Time every stage and operator on a board and write the measured file for `eenn search --measured`.

    Every exit is switched off (`eenn-noexit on`) so that each sample runs the whole chain, and the
    board reports each TFLite operator's ticks (`eenn-profile on`). Per processor, a least-squares fit
    of operator time against MACs gives macs_per_s; layer_overhead_s is what the cost model must charge
    per Keras layer to reproduce the profiled stages (docs/hil.md, "Profiling a board").
    """
    from pathlib import Path

    from eenn.hil.profile import ProfileOptions, profile

    out = profile(ProfileOptions(port=port, project=Path(project), out=Path(out_path),
                                 bundle=Path(bundle) if bundle else None, samples=samples, timeout=timeout,
                                 infer_timeout=infer_timeout, virtual_timing=_virtual_timing(port, virtual_timing)))
    for name, m in out["processors"].items():
        note = out["profile"]["processors"][name]
        click.echo(f"{name}: {m['macs_per_s'] / 1e6:.3f} MMAC/s, {m['layer_overhead_s'] * 1e6:.2f} µs per layer "
                   f"({note['operators']} operators of stage(s) {note['stages']}, fit rms "
                   f"{note['fit_rms_s'] * 1e6:.2f} µs)")
    click.echo(f"wrote {out_path} (board timing: {out['profile']['board']['timing']}); use it with "
               f"`eenn search ... --measured {out_path}`")


@hil.command("regress")
@click.argument("session", type=click.Path(exists=True))
@click.option("--baseline", required=True, type=click.Path(dir_okay=False),
              help="The accepted summary.json to compare with.")
@click.option("--tolerances", "tol_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="TOML tolerance file ([default] per metric family, [metrics.NAME] per metric; docs/hil.md).")
@click.option("--tol", "tol_opts", multiple=True, metavar="NAME=VALUE",
              help="Tolerance of one metric: 0.01 (absolute), 5% (relative) or skip. Repeatable.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the comparison as JUnit XML (one test case per metric).")
@click.option("--update-baseline", is_flag=True,
              help="Accept this session: write its summary to --baseline (exit 0).")
@click.option("--allow-other-model", is_flag=True,
              help="Compare with a baseline of another solution (bundle hash) on purpose; refused otherwise.")
def regress_cmd(session, baseline, tol_file, tol_opts, junit_path, update_baseline, allow_other_model) -> None:
    """Gate on regressions: compare SESSION (a session directory or its summary.json) with a baseline.

    Prints metric / baseline / now / tolerance / status and exits 1 when any metric regressed
    beyond its tolerance (or is missing, or the session is incomplete). A baseline of another
    solution (bundle hash) is refused with exit 2 unless --allow-other-model.
    """
    import time
    from pathlib import Path

    from eenn.hil.regress import check_same_model, compare, format_rows, junit_xml, load_tolerances, parse_tol_option
    from eenn.atomic import write_json_atomic
    from eenn.hil.summary import read_summary

    t0 = time.monotonic()
    now = read_summary(session, "session")
    tolerances = load_tolerances(tol_file)
    overrides = dict(parse_tol_option(t) for t in tol_opts)
    base_path = Path(baseline)
    if update_baseline:
        if not now.complete:
            raise EennError(f"{session}: the session is incomplete ({now.n} of {now.n_data} samples); "
                            "finish it with `eenn hil run` before accepting it as the baseline")
        base_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(base_path, now.document)
        click.echo(f"baseline updated: {base_path} ({now.n} samples, bundle {str(now.bundle_hash)[:12]})")
        return
    base = read_summary(base_path, "baseline")
    model_note = check_same_model(base, now, allow_other_model=allow_other_model, where=f"--baseline {base_path}")
    rows = compare(base, now, tolerances, overrides)
    click.echo(format_rows(rows))
    if model_note:
        click.echo(model_note)
    if base.timing_measured != now.timing_measured:
        click.echo("note: one side's timing is measured, the other's is not (virtual board): "
                   "latency and energy are not comparable")
    failed = [r for r in rows if r.failed]
    if junit_path:
        props = {"session": str(session), "baseline": str(base_path), "timing": now.timing,
                 "bundle_hash": now.bundle_hash or ""}
        Path(junit_path).parent.mkdir(parents=True, exist_ok=True)
        Path(junit_path).write_bytes(junit_xml(rows, elapsed_s=time.monotonic() - t0, properties=props))
    if failed:
        click.echo(f"REGRESSION: {len(failed)} of {len(rows)} metrics: "
                   + "; ".join(r.message for r in failed), err=True)
        raise SystemExit(1)
    click.echo(f"ok: {len(rows)} metrics within tolerance")


@hil.command("ports")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ports_cmd(as_json: bool) -> None:
    """List serial ports; KitProg3 probes (USB vendor 0x04B4) are marked and listed first."""
    import json

    from eenn.hil.ports import format_ports, list_ports

    ports = list_ports()
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in ports], indent=2))
    else:
        click.echo(format_ports(ports))
