"""`eenn hil profile`: time a board stage by stage and operator by operator, and write the
`--measured` file that `eenn search` reads (augment/cost.py `Measured`).

With every exit switched off (`eenn-noexit on`) each sample runs the whole chain, so every
stage and every operator is timed; `eenn-profile on` makes the board report each operator's
ticks (docs/protocol.md §2.6). Per processor:

- `macs_per_s`: the slope of a least-squares line through (operator MACs, operator seconds),
  time = MACs / rate + overhead, over every operator of the stages that processor ran;
- `layer_overhead_s`: what the cost model charges per *Keras* layer (it counts layers, the board
  runs fused TFLite operators): with the bundle, the stage time the rate does not explain
  (measured stage seconds − Keras MACs / rate, summed over the processor's stages) divided by
  the Keras layers of those stages, so the cost model reproduces the profiled stages; without
  the bundle, the line's intercept (per operator).

Stage times are `m-eenn-stage-ticks`, operator times `m-eenn-op`, both in the core's ticks
(`m-eenn-core-tick-hz`). The inputs are fixed pseudo-random int8 tensors: with the exits off the
time does not depend on them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eenn.errors import EennError


@dataclass
class ProfileOptions:
    port: str
    project: Path
    out: Path
    bundle: Path | None = None
    samples: int = 5
    timeout: float = 5.0
    infer_timeout: float = 30.0
    retries: int = 1
    virtual_timing: Path | None = None  # `--port virtual`: the virtual board's timing model


@dataclass
class StageSample:
    stage: int
    processor: str
    tick_hz: int
    stage_s: float  # median over samples
    ops: list[tuple[str, int, float]]  # (name, MACs, median seconds) per operator


def fit_line(macs: np.ndarray, seconds: np.ndarray) -> tuple[float, float]:
    """(seconds per MAC, seconds per call) by least squares, both >= 0 (a negative intercept is
    refitted through the origin)."""
    macs = np.asarray(macs, dtype=np.float64)
    seconds = np.asarray(seconds, dtype=np.float64)
    if len(macs) >= 2 and np.ptp(macs) > 0:
        a, b = np.linalg.lstsq(np.stack([macs, np.ones_like(macs)], axis=1), seconds, rcond=None)[0]
    else:
        a, b = 0.0, -1.0
    if b < 0:
        a, b = float(macs @ seconds / (macs @ macs)) if macs @ macs > 0 else 0.0, 0.0
    if not a > 0:
        raise EennError("cannot fit a MAC rate: the operators' times do not grow with their MACs "
                        f"(MACs {macs.tolist()}, seconds {seconds.tolist()})")
    return float(a), float(b)


def _keras_stage_loads(bundle_dir: Path, n_stages: int) -> list[tuple[int, int]]:
    """(Keras MACs, Keras layers) of each stage (segment + its exit), as the search's cost model counts them."""
    from eenn.augment.bundle import load_bundle
    from eenn.augment.layer_graph import build_layer_graph
    from eenn.augment.model_io import load_model

    sol = load_bundle(bundle_dir).solution
    if len(sol.segments) != n_stages:
        raise EennError(f"{bundle_dir}: {len(sol.segments)} segments, the project has {n_stages} stages")

    def load(name: str) -> tuple[int, int]:
        lg = build_layer_graph(load_model(bundle_dir / name))
        return int(lg.total_macs), sum(1 for n in lg.graph if lg.info(n).kind != "input")

    out = []
    for k, seg in enumerate(sol.segments):
        m, n = load(seg.file)
        if k < len(sol.exits):
            em, en = load(sol.exits[k].file)
            m, n = m + em, n + en
        out.append((m, n))
    return out


def fit_measured(stages: list[StageSample], keras: list[tuple[int, int]] | None) -> dict:
    """The `--measured` JSON (augment/cost.py `Measured.load`) from the profiled stages."""
    procs: dict[str, dict] = {}
    notes: dict[str, dict] = {}
    for proc in dict.fromkeys(s.processor for s in stages):
        mine = [s for s in stages if s.processor == proc]
        macs = np.asarray([m for s in mine for _, m, _ in s.ops], dtype=np.float64)
        secs = np.asarray([t for s in mine for _, _, t in s.ops], dtype=np.float64)
        a, b = fit_line(macs, secs)
        rate = 1.0 / a
        if keras is not None:
            total = sum(s.stage_s for s in mine)
            k_macs = sum(keras[s.stage][0] for s in mine)
            k_layers = sum(keras[s.stage][1] for s in mine)
            overhead = max(0.0, (total - k_macs / rate) / k_layers) if k_layers else b
            basis = "per Keras layer: the profiled stages' time that the MAC rate does not explain"
        else:
            overhead = b
            basis = "per TFLite operator: the fit's intercept (no bundle given)"
        resid = secs - (macs * a + b)
        procs[proc] = {"macs_per_s": rate, "layer_overhead_s": overhead}
        notes[proc] = {"stages": [s.stage for s in mine], "operators": int(len(macs)),
                       "op_overhead_s": b, "fit_rms_s": float(np.sqrt(np.mean(resid ** 2))),
                       "stage_s": [s.stage_s for s in mine], "layer_overhead_basis": basis,
                       "ops": [{"stage": s.stage, "name": n, "macs": m, "s": t} for s in mine for n, m, t in s.ops]}
    return {"processors": procs, "profile": notes}


def _find_bundle(project: Path, bundle_hash: str) -> Path | None:
    from eenn.augment.bundle import SOLUTION_FILE, load_bundle

    for cand in (project, project.parent):
        if (cand / SOLUTION_FILE).is_file():
            try:
                if load_bundle(cand, verify=False).hash == bundle_hash:
                    return cand
            except EennError:
                continue
    return None


def _switch(client, command: str, what: str) -> None:
    from eenn.hil.client import BoardErrorReply

    try:
        client.command(command)
    except BoardErrorReply as exc:
        if "Unknown command" in str(exc):
            raise EennError(f"{client.port}: the firmware does not know `{command.split()[0]}` ({what}): it predates "
                            "per-stage profiling; flash a project generated by this eenn") from None
        raise EennError(f"{client.port}: `{command}` refused: {exc}; the project was generated without the "
                        "operator profiler: regenerate and flash it") from None


def profile(opts: ProfileOptions) -> dict:
    """Run `opts.samples` whole-chain inferences with per-operator timing; write and return the measured JSON."""
    from eenn.codegen.manifest import check_same_bundle, load_manifest
    from eenn.hil.client import BoardClient, resolve_port
    from eenn.atomic import write_json_atomic
    from eenn.hil.timing import project_ops
    from eenn.hil.virtual_board import resolve_project

    if opts.samples < 1:
        raise EennError(f"--samples {opts.samples}: expected at least 1")
    project = resolve_project(opts.project)
    manifest = load_manifest(project)
    ops = project_ops(project, manifest)
    bundle = Path(opts.bundle) if opts.bundle is not None else _find_bundle(project, manifest.bundle_hash)
    keras = _keras_stage_loads(bundle, len(manifest.stages)) if bundle is not None else None
    if bundle is not None and opts.bundle is not None:
        from eenn.augment.bundle import load_bundle

        check_same_bundle(project, manifest.bundle_hash, bundle, load_bundle(bundle, verify=False).hash)

    target, vport = resolve_port(opts.port, project, **({"timing": opts.virtual_timing} if opts.virtual_timing else {}))
    client = BoardClient(target, expected_hash=manifest.bundle_hash, timeout=opts.timeout,
                         infer_timeout=opts.infer_timeout, retries=opts.retries)
    n = len(manifest.stages)
    try:
        info = client.open()
        if info.stages != n:
            raise EennError(f"the board runs {info.stages} stages, the project has {n}")
        hz = info.core_tick_hz or manifest.core_tick_hz()
        cores = info.stage_cores or manifest.stage_cores()
        _switch(client, "eenn-noexit on", "every exit declines")
        _switch(client, "eenn-profile on", "per-operator ticks")
        rng = np.random.default_rng(0)
        stage_ticks: list[list[int]] = []
        op_ticks: list[dict[tuple[int, int], int]] = []
        try:
            for _ in range(opts.samples):
                x = rng.integers(-128, 128, size=manifest.input.size, dtype=np.int8)
                res, _ = client.infer_sample(x.tobytes())
                if res.exit != n - 1:
                    raise EennError(f"{opts.port}: with every exit off the board answered at stage {res.exit}, not "
                                    f"the last ({n - 1})")
                if res.stage_ticks is None or res.ops is None:
                    raise EennError(f"{opts.port}: the board sent no m-eenn-stage-ticks / m-eenn-op lines")
                stage_ticks.append(res.stage_ticks)
                op_ticks.append({(o.stage, o.index): o.ticks for o in res.ops})
        finally:
            for cmd in ("eenn-profile off", "eenn-noexit off"):
                try:
                    client.command(cmd)
                except Exception:  # noqa: BLE001 - best effort: leave the board as it was
                    pass
    finally:
        client.close()
        if vport is not None:
            vport.close()

    stages = []
    for k, st in enumerate(manifest.stages):
        tick_hz = float(hz[cores[k]])
        recs = []
        for o in ops[k]:
            got = [s.get((k, o.index)) for s in op_ticks]
            if any(g is None for g in got):
                raise EennError(f"{opts.port}: the board reported no ticks for stage {k} operator {o.index} ({o.name}): "
                                "its build differs from the project's models")
            recs.append((o.name, o.macs, float(np.median(got)) / tick_hz))
        stages.append(StageSample(stage=k, processor=st.processor, tick_hz=int(tick_hz),
                                  stage_s=float(np.median([s[k] for s in stage_ticks])) / tick_hz, ops=recs))
    out = fit_measured(stages, keras)
    out["profile"] = {"board": {"port": opts.port, "timing": info.timing, "firmware": info.firmware,
                                "bundle_hash": manifest.bundle_hash},
                      "samples": opts.samples, "bundle": str(bundle) if bundle else None, "processors": out["profile"]}
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(opts.out), out)
    return out
