"""The search, end to end: exits, architectures, thresholds, choice (README "Search early
exits"; the method is the paper's sections 3–4).

    load_problem   model + data + hardware → block graph, candidates, cost model   (Problem)
    plan_exits     an exit plan at every candidate; architectures pruned by worst-case
                   latency and memory before any training                           (ExitSpace)
    train_exits    one pass over the data (feature maps at the needed locations + the
                   base model's softmax), every needed exit trained once or loaded
                   from the exit store                                               (TrainedExits)
    score_exits    the scores the choice is made on: int8 (as the board) or float    (Scores)
    choose         per architecture the best thresholds on the calibration split
                   (exact grid, batched / graph), the cheapest architecture          (Decision)
    fine_tune      optional joint fine-tuning, then a finer threshold search
    evaluate_on_test   test-split metrics, base vs EENN                              (Tested)
    → SearchResult with the typed Solution; solution.py writes the bundle atomically

Each step is a function of the typed objects before it; `run_search` only sequences them.
Nothing is written to the output directory before the end, so a failed search leaves no
partial bundle.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from eenn import __version__
from eenn.augment import int8_scoring as I8
from eenn.augment import thresholds as T
from eenn.augment.architectures import (
    Architecture,
    count_architectures,
    input_bytes,
    iter_architectures,
    prune,
    require_some,
    stage_loads,
)
from eenn.augment.block_graph import BlockGraph, build_block_graph
from eenn.augment.cascade_batch import evaluate_batch, grid_results
from eenn.augment.bundle import BaseModelInfo, ExitSpec, SegmentSpec, Solution
from eenn.augment.cost import CostModel, MappingCost, Measured, StageLoad
from eenn.augment.data import Dataset, load_dataset
from eenn.augment.exits import ExitPlan, leading_pooling, plan_exit, split_plan
from eenn.augment.features import FeatureCache, augment
from eenn.augment.streaming import choose_storage, map_shapes
from eenn.augment.hardware import HardwareProfile, load_profile
from eenn.augment.layer_graph import build_layer_graph
from eenn.augment.metrics import Metrics, cascade_metrics
from eenn.augment.model_io import file_sha256, load_model
from eenn.augment.progress import Progress
from eenn.augment.selection import pareto_mask
from eenn.augment.exit_store import ExitStore, TrainedExit, exit_key
from eenn.augment.export_fold import channel_stats
from eenn.augment.training import CachedMaps, ExitGraphs, Labels, ThroughBackbone, train_exit
from eenn.augment.search_config import SearchConfig
from eenn.errors import EennError


SUMMARY_SCHEMA_VERSION = 1  # `eenn search --json`


def stage_costs(efficiency: str, stage_macs: list[int], mapping: MappingCost) -> list[float]:
    """What reaching each stage adds, in the search's efficiency measure: MACs, or the seconds /
    joules of the cost model (the hand-off to a stage counted with that stage)."""
    if efficiency == "macs":
        return [float(m) for m in stage_macs]
    cum = mapping.latency_s if efficiency == "latency" else mapping.energy_j
    return [float(c - p) for c, p in zip(cum, [0.0, *cum[:-1]])]


@dataclass
class Evaluated:
    """An architecture that was scored: its best thresholds on the calibration split."""

    arch: Architecture
    mapping: MappingCost
    stage_macs: list[int]
    stage_cost: list[float]  # in the efficiency measure (stage_costs)
    choice: T.Choice
    grid: T.GridResult | None
    graph_gap: float | None = None  # relative cost gap graph vs exact (None: not compared)


@dataclass
class SearchResult:
    """Everything the bundle, the CLI table and the examples report."""

    solution: Solution  # without files: write_result (solution.py) adds them with the bundle
    model: Any
    block_graph: BlockGraph
    profile: HardwareProfile
    dataset: Dataset
    chosen: Evaluated
    evaluated: list[Evaluated]
    exits: dict[int, TrainedExit]  # candidate index → trained exit
    plans: dict[int, ExitPlan]
    pareto_rows: list[dict[str, Any]]
    base_test: Metrics
    eenn_test: Metrics
    stats: dict[str, Any]
    probs: dict[str, dict[str, np.ndarray]]  # split → {location | "final" | "base": softmax}
    finetuned_models: dict[str, Any] = field(default_factory=dict)  # file name → Keras model (fine-tuning)

    @property
    def no_exit(self) -> bool:
        return self.chosen.arch.n_exits == 0


def _is_logits(model: Any) -> bool:
    """True when the model ends without a softmax (detected from its last layer)."""
    last = model.layers[-1]
    cls = type(last).__name__
    if cls == "Softmax":
        return False
    act = getattr(last, "activation", None)
    name = getattr(act, "__name__", str(act))
    return not ("softmax" in str(name))


def _cascade(arch: Architecture, bg: BlockGraph, probs: dict[str, np.ndarray], final: np.ndarray, y: np.ndarray,
             stage_cost: list[float], confidence: str) -> T.CascadeData:
    locs = [bg.candidates[c].after_layer for c in arch.cuts]
    conf = np.stack([T.confidence_of(probs[l], confidence) for l in locs]) if locs else np.zeros((0, len(y)))
    correct = np.stack([probs[l].argmax(1) == y for l in locs] + [final.argmax(1) == y])
    return T.CascadeData(conf=conf, correct=correct, stage_cost=np.asarray(stage_cost, dtype=np.float64))


def _predictions(arch: Architecture, bg: BlockGraph, probs: dict[str, np.ndarray], final: np.ndarray,
                 thresholds: tuple[float, ...], confidence: str) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the class the cascade answers and the stage that answered."""
    n = len(final)
    stage = np.full(n, arch.n_exits, dtype=np.int64)
    pred = final.argmax(1)
    alive = np.ones(n, dtype=bool)
    for k, (c, t) in enumerate(zip(arch.cuts, thresholds)):
        p = probs[bg.candidates[c].after_layer]
        here = alive & T.exits_at(T.confidence_of(p, confidence), t)
        stage[here] = k
        pred = np.where(here, p.argmax(1), pred)
        alive &= ~here
    return pred, stage


def base_candidates(bg: BlockGraph, cost: CostModel, efficiency: str,
                    latency_bound_s: float | None) -> list[dict[str, Any]]:
    """The base model alone on each processor, the input's transfer included where that is not
    the first; best first: within the latency bound and memory, then cheapest in the search's
    measure (ties, as with MACs: less energy, then less latency, then the earlier processor)."""
    nbytes = input_bytes(bg)
    out = []
    for proc in range(len(cost.profile.processors)):
        mc = cost.mapping([StageLoad(proc, tuple(bg.blocks) + (bg.head,))], nbytes)
        ok = mc.fits_memory and (latency_bound_s is None or mc.worst_latency_s <= latency_bound_s)
        out.append({"index": proc, "mapping": mc, "within_bound": ok,
                    "cost": stage_costs(efficiency, [bg.total_macs], mc)[0]})
    out.sort(key=lambda b: (not b["within_bound"], b["cost"], b["mapping"].energy_j[-1],
                            b["mapping"].latency_s[-1], b["index"]))
    return out


def _fmt_measure(efficiency: str, value: float) -> str:
    if efficiency == "macs":
        return f"{value / 1e6:.3f} M MACs"
    if efficiency == "latency":
        return f"{value * 1e3:.3f} ms"
    return f"{value * 1e3:.4g} mJ"


def _base_row(b: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The base model on one processor, for solution.json (`metrics.base_per_processor`)."""
    mc = b["mapping"]
    return {"processor": names[b["index"]], "latency_s": float(mc.worst_latency_s), "energy_j": float(mc.energy_j[-1]),
            "device_energy_j": float(mc.device_energy_j[-1]), "input_transfer_s": float(mc.input_s),
            "fits": bool(b["within_bound"]), "cost": float(b["cost"])}


def _candidate_summary(e: Evaluated, bg: BlockGraph, names: list[str], objective: T.Objective) -> dict[str, Any]:
    """An architecture's best point on the calibration split, in a few numbers (the best
    candidate the base model beat)."""
    rates = list(e.choice.termination) or [0.0] * e.arch.n_exits + [1.0]
    lat, energy = e.mapping.mean(rates)
    return {"placement": e.arch.placed(bg, names),
            "exits": [bg.candidates[c].after_layer for c in e.arch.cuts],
            "processors": [names[q] for q in e.arch.processors], "thresholds": list(e.choice.thresholds),
            "efficiency_gain": float(objective.gain(e.choice.mean_cost)),
            "accuracy_drop": float(objective.drop(e.choice.accuracy)),
            "mean_energy_j": float(energy), "mean_latency_s": float(lat),
            "mean_macs": float(np.dot(rates, np.cumsum(np.asarray(e.stage_macs, dtype=np.float64))))}


@dataclass
class Problem:
    """What the search starts from: the model analysed, the data split, the target's cost model."""

    model_path: str | Path  # as given (solution.json's base_model.source)
    model: Any
    model_sha: str
    layer_graph: Any
    bg: BlockGraph
    logits: bool
    profile: HardwareProfile
    cost: CostModel
    dataset: Dataset

    @property
    def names(self) -> list[str]:
        return [q.name for q in self.profile.processors]


@dataclass
class ExitSpace:
    """An exit planned at every candidate location and the architectures that survive pruning
    (worst-case latency, memory) before anything is trained."""

    plans: dict[int, ExitPlan]
    over_budget: list[str]
    expected: int  # architectures in the space
    pruning: Any  # architectures.Pruning
    efficiency: str  # the measure actually used (energy falls back to latency without power figures)
    needed: list[int]  # candidates some kept architecture has an exit at

    @property
    def costs(self) -> dict[int, Any]:
        return {i: p.cost for i, p in self.plans.items()}


@dataclass
class TrainedExits:
    """Every needed exit, trained now or loaded from the exit store, and the base model's softmax."""

    exits: dict[int, TrainedExit]
    store: ExitStore
    final: dict[str, np.ndarray]  # split (cal, test) → the base model's float softmax
    storage: Any  # streaming.Storage: where the feature maps were kept
    trained_now: int

    @property
    def aborted(self) -> list[int]:
        return [c for c, e in self.exits.items() if e.aborted]


@dataclass
class Scores:
    """Per split, the softmax every live exit and the final classifier give, as the choice is
    made on (int8 or float), with the float ones beside for the report."""

    probs: dict[str, dict[str, np.ndarray]]  # split → location → scores
    final: dict[str, np.ndarray]
    float_probs: dict[str, dict[str, np.ndarray]]  # split → location | "final" | "base" → float softmax


@dataclass
class Decision:
    """The comparison point, every scored architecture and the one chosen, with its thresholds."""

    bases: list[dict[str, Any]]  # base_candidates, best first
    objective: T.Objective
    grid: np.ndarray
    evaluated: list[Evaluated]
    chosen: Evaluated
    thresholds: tuple[float, ...]  # the chosen ones, with the correction applied
    rejected: dict[str, Any] | None  # the best early-exit candidate, when the base model won

    @property
    def base(self) -> dict[str, Any]:
        return self.bases[0]


@dataclass
class Tested:
    """Test-split figures of the base model alone and of the EENN; the EENN on calibration."""

    base: Metrics
    eenn: Metrics
    eenn_cal: Metrics


def run_search(model_path: str | Path, data_path: str | Path | None, config: SearchConfig,
               progress: Progress | None = None, dataset: Dataset | None = None,
               on_exit_trained: Callable[[TrainedExit], None] | None = None) -> SearchResult:
    """The whole search; raises EennError on bad input before anything expensive happens."""
    config.checked()
    progress = progress or Progress(enabled=False)
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    problem = load_problem(model_path, data_path, config, dataset, progress)
    space = plan_exits(problem, config, progress)
    trained = train_exits(problem, space, config, progress, timings, on_exit_trained)
    scores = score_exits(problem, space, trained, config, progress, timings)
    decision = choose(problem, space, trained, scores, config, progress, timings)
    base_final = dict(scores.final)  # the base model's own softmax: the comparison point stays the original
    finetuned: dict[str, Any] = {}
    if config.finetune and decision.chosen.arch.n_exits > 0:
        decision, scores, finetuned = fine_tune(problem, trained, scores, decision, config, progress, timings)
    tested = evaluate_on_test(problem, decision, scores, base_final, config)
    stats = _stats(space, trained, decision, config, time.monotonic() - t0, timings)
    return _result(problem, space, trained, scores, decision, tested, base_final, stats, finetuned, config)


def load_problem(model_path: str | Path, data_path: str | Path | None, config: SearchConfig,
                 dataset: Dataset | None, progress: Progress) -> Problem:
    """Model, its graphs, the target's cost model and the data split; every input checked here."""
    profile = load_profile(config.hardware, config.clock_plan)
    cost = CostModel(profile, Measured.load(config.measured) if config.measured else None)
    model = load_model(model_path)
    lg = build_layer_graph(model)
    bg = build_block_graph(lg)
    cost.measured.check(profile, [b.name for b in bg.blocks])
    if dataset is None:
        if data_path is None:
            raise EennError("no data given: pass --data DATA.npz")
        dataset = load_dataset(data_path, bg.input_shape, bg.num_classes, seed=config.seed,
                               calibration=config.calibration)
    for note in dataset.notes:
        progress.say(f"data: {note}")
    progress.say(f"data: {dataset.sizes()['train']} training, {dataset.sizes()['calibration']} calibration "
                 f"({dataset.calibration}), {dataset.sizes()['test']} test samples")
    return Problem(model_path, model, file_sha256(model_path), lg, bg, _is_logits(model), profile, cost,
                   dataset)


def plan_exits(problem: Problem, config: SearchConfig, progress: Progress) -> ExitSpace:
    """An exit at every candidate, and the architectures pruned before any training."""
    bg, profile = problem.bg, problem.profile
    backbone_macs = sum(b.macs for b in bg.blocks)
    plans = {i: plan_exit(c, bg.blueprint, bg.num_classes, backbone_macs, config.exits)
             for i, c in enumerate(bg.candidates)}
    over_budget = [p.location for p in plans.values() if p.over_budget]
    if over_budget:
        progress.say(f"exits: {len(over_budget)} of {len(plans)} stay above the {config.exits.budget_share * 100:g} % budget "
                     f"even at their smallest ({', '.join(over_budget)}); they are kept, at the cost shown")
    n_procs = len(profile.processors)
    expected = count_architectures(len(bg.candidates), n_procs, config.placement, config.max_exits)
    pruning = prune(bg, iter_architectures(len(bg.candidates), n_procs, config.placement, config.max_exits),
                    {i: p.cost for i, p in plans.items()}, problem.cost, config.latency_bound_s)
    progress.say(f"architectures: placement {config.placement}, up to {config.max_exits} exit(s) on "
                 f"{' → '.join(problem.names)}: {pruning.summary()}")
    efficiency = config.efficiency
    if efficiency == "energy" and not any(q.active_w or q.sleep_w for q in profile.processors):
        efficiency = "latency"
        progress.say(f"efficiency: profile '{profile.name}' has no power figures (all 0 W): measuring latency "
                     "instead of energy")
    require_some(pruning, config.latency_bound_s, problem.names)
    needed = sorted({c for arch, _ in pruning.kept for c in arch.cuts})
    return ExitSpace(plans, over_budget, expected, pruning, efficiency, needed)


def train_exits(problem: Problem, space: ExitSpace, config: SearchConfig, progress: Progress,
                timings: dict[str, float], on_exit_trained: Callable[[TrainedExit], None] | None) -> TrainedExits:
    """Every needed exit once: from the exit store, or trained on the cached feature maps, in
    streaming passes, on Ray, or through the frozen backbone (`--no-feature-cache`). Each
    finished exit lands in the store at once, so an interrupted search loses only those in flight."""
    bg, dataset, plans, needed = problem.bg, problem.dataset, space.plans, space.needed
    x_aug, y_aug = augment(dataset.x_train, dataset.y_train, config.augment, config.seed)
    store = ExitStore(config.cache_dir, warn=progress.say)
    # Where an exit starts with weightless pooling, the cache keeps the pooled map.
    heads = {}
    for c in needed if config.feature_cache else []:
        if n := leading_pooling(plans[c]):
            heads[plans[c].location] = split_plan(plans[c], n)[0]
    counts = {"train": len(x_aug), "cal": len(dataset.x_cal), "test": len(dataset.x_test)}
    storage = choose_storage(map_shapes([plans[c] for c in needed], heads), counts, config.memory_limit,
                             config.disk_limit, config.train.epochs, config.feature_store)
    # int8 maps (and the streaming mode's shared batch order) change what an exit learns: their own keys
    mode_extra = None if storage.mode == "float" or not config.feature_cache else {"features": storage.mode}
    keys = {c: exit_key(problem.model_sha, plans[c], dataset.sha256, config.seed, config.train,
                        config.augment.to_dict(), mode_extra) for c in needed}
    exits: dict[int, TrainedExit] = {}
    for c in needed:
        hit = store.load(keys[c], plans[c])
        if hit is not None:
            exits[c] = hit
    missing = [c for c in needed if c not in exits]
    progress.say(f"exits: {len(needed)} needed, {len(exits)} from the cache, {len(missing)} to train")
    stream = storage.mode == "stream" and config.feature_cache and bool(missing)
    remote = config.ray is not None and config.feature_cache and bool(missing)
    if missing and config.feature_cache:
        progress.say(storage.describe())
    inputs = {"cal": dataset.x_cal, "test": dataset.x_test}
    if missing and not stream and not remote:
        inputs = {"train": x_aug, **inputs}
    t_feat = time.monotonic()
    locs = [bg.candidates[c].after_layer for c in missing] if config.feature_cache and not remote else []
    tmp_root = config.cache_dir / "tmp" if config.cache_dir is not None else None
    pending_locs = {plans[c].location for c in missing}
    heads = {loc: h for loc, h in heads.items() if loc in pending_locs}
    trained_now = 0
    with FeatureCache(problem.model, locs, inputs, logits=problem.logits, batch_size=config.batch_size,
                      memory_limit=config.memory_limit, directory=tmp_root, progress=progress,
                      heads=heads, int8=storage.int8 and config.feature_cache) as cache:
        timings["features_s"] = time.monotonic() - t_feat
        if cache.on_disk:
            progress.say(f"features: {cache.nbytes / 2**20:.0f} MiB memory-mapped on disk")
        final = {s: cache.probs[s] for s in ("cal", "test")}
        t_train = time.monotonic()

        def finished(c: int, trained: TrainedExit, exported: Any) -> None:
            nonlocal trained_now
            trained = store.save(keys[c], trained, exported)
            exits[c] = trained
            trained_now += 1
            step(1)
            if on_exit_trained is not None:
                on_exit_trained(trained)

        with progress.bar("training exits", len(missing)) as step:
            todo = {c: plans[c] for c in missing}
            if remote:
                from eenn.augment.distributed import train_on_ray

                arrays = {"x_train": x_aug, "y_train": y_aug, "x_cal": dataset.x_cal, "y_cal": dataset.y_cal,
                          "x_test": dataset.x_test}
                results = train_on_ray(config.ray, problem.model_path, todo, heads, arrays, bg.num_classes,
                                       problem.logits, storage.int8, config.memory_limit, config.train, config.seed,
                                       config.batch_size, say=progress.say, stream=stream)
            elif stream:
                from eenn.augment.streaming import train_streaming

                results = train_streaming(problem.model, todo, heads, x_aug, y_aug, cache, dataset.y_cal,
                                          bg.num_classes, problem.logits, config.train, config.seed, config.batch_size)
            else:
                results = _train_here(problem, todo, heads, cache, x_aug, y_aug, config)
            for c, trained, exported in results:
                finished(c, trained, exported)
        timings["training_s"] = time.monotonic() - t_train
    for c in needed:
        if exits[c].aborted:
            progress.say(f"exit at {bg.candidates[c].after_layer}: "
                         f"{exits[c].notes[0] if exits[c].notes else 'abandoned'}")
    return TrainedExits(exits, store, final, storage, trained_now)


def _train_here(problem: Problem, todo: dict[int, ExitPlan], heads: dict[str, Any], cache: FeatureCache,
                x_aug: np.ndarray, y_aug: np.ndarray, config: SearchConfig):
    """In this process, one exit after the other: on the cached maps, or through the backbone."""
    bg, dataset = problem.bg, problem.dataset
    graphs = ExitGraphs()
    labels = Labels(bg.num_classes, y_aug, cache.probs.get("train"), dataset.y_cal)
    for c, plan in todo.items():
        loc = plan.location
        if config.feature_cache:
            trained, exported = train_exit(plan, CachedMaps.of(cache, loc, pooled=loc in heads), labels, config.train,
                                           config.seed, graphs=graphs)
        else:
            from eenn.augment.segments import frozen_prefix

            prefix = frozen_prefix(problem.model, problem.layer_graph, loc)
            stats = channel_stats(lambda: (prefix.predict_on_batch(x_aug[lo:lo + 256])
                                           for lo in range(0, len(x_aug), 256)), plan.input_shape[-1])
            inputs = ThroughBackbone(prefix, x_aug, {"cal": dataset.x_cal, "test": dataset.x_test})
            trained, exported = train_exit(plan, inputs, labels, config.train, config.seed, stats=stats)
        yield c, trained, exported


def score_exits(problem: Problem, space: ExitSpace, trained: TrainedExits, config: SearchConfig,
                progress: Progress, timings: dict[str, float]) -> Scores:
    """The scores the choice is made on: the float softmax, or (default) the int8 subgraphs'."""
    exits = trained.exits
    probs = {s: {problem.bg.candidates[c].after_layer: exits[c].probs[s] for c in space.needed if not exits[c].aborted}
             for s in ("cal", "test")}
    final = trained.final
    float_probs = {s: {**probs[s], "final": final[s], "base": final[s]} for s in ("cal", "test")}
    if config.scoring == "int8":
        probs, final = _int8_scores(problem, config, space.needed, exits, trained.store, timings, progress)
    return Scores(probs, final, float_probs)


def choose(problem: Problem, space: ExitSpace, trained: TrainedExits, scores: Scores, config: SearchConfig,
           progress: Progress, timings: dict[str, float]) -> Decision:
    """Each kept architecture's best thresholds on the calibration split, and the cheapest one."""
    t_thr = time.monotonic()
    bg, dataset, names, efficiency = problem.bg, problem.dataset, problem.names, space.efficiency
    probs, final = scores.probs, scores.final
    base_acc_cal = float(np.mean(final["cal"].argmax(1) == dataset.y_cal))
    bases = base_candidates(bg, problem.cost, efficiency, config.latency_bound_s)
    base_proc, base_map, base_cost = bases[0]["index"], bases[0]["mapping"], bases[0]["cost"]
    progress.say(f"base: the base model on {names[base_proc]}, the cheapest single processor in {efficiency}"
                 + ("" if bases[0]["within_bound"] else " (none meets the latency bound)")
                 + (" (" + ", ".join(f"{names[b['index']]} {_fmt_measure(efficiency, b['cost'])}" for b in
                                     sorted(bases, key=lambda b: b["index"])) + ")" if len(bases) > 1 else ""))
    objective = T.Objective(kind=config.objective, base_cost=base_cost, base_accuracy=base_acc_cal,
                            w=config.w, max_drop=config.max_accuracy_drop)
    grid = T.default_grid(config.confidence, config.threshold_steps)
    # The comparison point, and the answer when nothing beats it: the base model alone on its
    # cheapest processor. Enumerated architectures without an exit are other single-processor
    # bases (or, in the paper's space, the base on the last processor): never better, not scored.
    base_arch = Architecture(cuts=(), processors=(base_proc,))
    base_choice, base_grid = T.search(_cascade(base_arch, bg, probs["cal"], final["cal"], dataset.y_cal, [base_cost],
                                               config.confidence), grid, objective, config.threshold_method)
    evaluated: list[Evaluated] = []
    if bases[0]["within_bound"]:
        evaluated.append(Evaluated(base_arch, base_map, [bg.total_macs], [base_cost], base_choice, base_grid))
    evaluated += _evaluate_architectures(problem, space, trained, scores, grid, objective, config)
    timings["thresholds_s"] = time.monotonic() - t_thr
    feasible = [e for e in evaluated if np.isfinite(e.choice.cost)]
    if not feasible:
        raise EennError("no architecture satisfies the accuracy-drop bound on the calibration split"
                        + ("" if bases[0]["within_bound"] else
                           ", and the base model alone meets the latency bound on no processor"))
    # Ties: fewer exits (the base model first), then the enumeration order.
    chosen = min(feasible, key=lambda e: (round(e.choice.cost, 12), e.arch.n_exits))
    rejected = None
    if chosen.arch.n_exits == 0:
        candidates = [e for e in evaluated if e.arch.n_exits]
        if candidates:
            finite = [e for e in candidates if np.isfinite(e.choice.cost)]
            best = (min(finite, key=lambda e: e.choice.cost) if finite else
                    min(candidates, key=lambda e: objective.drop(e.choice.accuracy)))
            rejected = _candidate_summary(best, bg, names, objective)
    return Decision(bases, objective, grid, evaluated, chosen, _corrected(chosen.choice.thresholds, config), rejected)


def _corrected(thresholds: tuple[float, ...], config: SearchConfig) -> tuple[float, ...]:
    return tuple(min(t * config.correction, 1.0) if t < 1.0 else t for t in thresholds)


def _evaluate_architectures(problem: Problem, space: ExitSpace, trained: TrainedExits, scores: Scores,
                            grid: np.ndarray, objective: T.Objective, config: SearchConfig) -> list[Evaluated]:
    """Every kept architecture with live exits, scored. Placements of the same cuts share who
    exits where (only their costs differ), so each cut set is simulated once."""
    bg, y_cal = problem.bg, problem.dataset.y_cal
    by_cuts: dict[tuple[int, ...], list[tuple[Architecture, MappingCost]]] = {}
    for arch, mc in space.pruning.kept:
        if arch.n_exits and not any(trained.exits[c].aborted for c in arch.cuts):
            by_cuts.setdefault(arch.cuts, []).append((arch, mc))
    smacs = {cuts: [s.macs for s in stage_loads(bg, placed[0][0], space.costs)]  # not dependent on the processors
             for cuts, placed in by_cuts.items()}
    scosts = {cuts: [stage_costs(space.efficiency, smacs[cuts], mc) for _, mc in placed]
              for cuts, placed in by_cuts.items()}
    batched = _batched_grids(problem, scores, {cuts: c[0] for cuts, c in scosts.items()}, grid, config)
    evaluated = []
    for cuts, placed in by_cuts.items():
        compare = objective.kind == "weighted"  # the graph is checked against the exact optimum
        data = (_cascade(placed[0][0], bg, scores.probs["cal"], scores.final["cal"], y_cal, scosts[cuts][0],
                         config.confidence) if compare or cuts not in batched else None)
        if cuts in batched:
            answers = [(T.best_exact(r, objective), r) for r in map(batched[cuts].recost, scosts[cuts])]
        else:
            answers = T.search_placements(data, scosts[cuts], grid, objective, config.threshold_method)
        group = [Evaluated(arch, mc, smacs[cuts], sc, choice, result)
                 for (arch, mc), sc, (choice, result) in zip(placed, scosts[cuts], answers)]
        if compare and group[0].grid is not None:
            # the paper's graph against the exact optimum, on this cut set's best placement
            best = min(group, key=lambda e: e.choice.cost)
            g = T.graph_search(dataclasses.replace(data, stage_cost=np.asarray(best.stage_cost)), grid, objective)
            best.graph_gap = (g.cost - best.choice.cost) / max(abs(best.choice.cost), 1e-12)
        evaluated.extend(group)
    return evaluated


def _batched_grids(problem: Problem, scores: Scores, first_costs: dict[tuple[int, ...], list[float]],
                   grid: np.ndarray, config: SearchConfig) -> dict[tuple[int, ...], T.GridResult]:
    """The exact grid of every cut set with at most two exits, all at once (cascade_batch: the
    per-exit work shared by every architecture that contains the exit): what `search_placements`
    would simulate one by one, as the same integer counts. Cut sets the graph search gets
    (`--threshold-method graph`, or a grid too large for `auto`) are left to it."""
    bg, y_cal = problem.bg, problem.dataset.y_cal
    n = len(y_cal)
    if config.threshold_method == "graph":
        return {}
    limit = T.EXACT_LIMIT if config.threshold_method == "auto" else None
    eligible = [cuts for cuts in first_costs
                if len(cuts) <= 2 and (limit is None or len(grid) ** len(cuts) * n <= limit)]
    if not eligible:
        return {}
    locs = sorted({c for cuts in eligible for c in cuts})
    row = {c: i for i, c in enumerate(locs)}
    probs = [scores.probs["cal"][bg.candidates[c].after_layer] for c in locs]
    conf = np.stack([T.confidence_of(p, config.confidence) for p in probs])
    correct = np.stack([p.argmax(1) == y_cal for p in probs] + [scores.final["cal"].argmax(1) == y_cal])
    archs = [tuple(row[c] for c in cuts) for cuts in eligible]
    result = evaluate_batch(conf, correct, archs, [first_costs[cuts] for cuts in eligible], grid)
    return dict(zip(eligible, grid_results(result, n)))


def fine_tune(problem: Problem, trained: TrainedExits, scores: Scores, decision: Decision, config: SearchConfig,
              progress: Progress, timings: dict[str, float]) -> tuple[Decision, Scores, dict[str, Any]]:
    """Joint fine-tuning of the chosen architecture, then a finer threshold search on its scores."""
    from eenn.augment.finetune import finetune

    t_ft = time.monotonic()
    chosen, bg, dataset = decision.chosen, problem.bg, problem.dataset
    ft = finetune(problem.model, problem.layer_graph, bg, chosen.arch, {c: trained.exits[c] for c in chosen.arch.cuts},
                  dataset, problem.logits, config, progress)
    progress.say(f"fine-tuning: training loss {ft.loss_before:.4f} → {ft.loss_after:.4f}")
    fine_probs = ft.probs
    float_probs = {s: {**scores.float_probs[s], **fine_probs[s]["exits"], "final": fine_probs[s]["final"]}
                   for s in ("cal", "test")}
    if config.scoring == "int8":
        fine_probs = _int8_finetuned(ft.models, chosen.arch, bg, dataset, config, timings)
    probs = {s: {**scores.probs[s], **fine_probs[s]["exits"]} for s in ("cal", "test")}
    final = {s: fine_probs[s]["final"] for s in ("cal", "test")}
    grid = decision.grid
    fine_grid = np.round(np.linspace(float(grid[0]), float(grid[-1]), config.fine_steps), 6)
    data = _cascade(chosen.arch, bg, probs["cal"], final["cal"], dataset.y_cal, chosen.stage_cost, config.confidence)
    choice, result = T.search(data, fine_grid, decision.objective, config.threshold_method)
    chosen = Evaluated(chosen.arch, chosen.mapping, chosen.stage_macs, chosen.stage_cost, choice, result, None)
    timings["finetune_s"] = time.monotonic() - t_ft
    decision = dataclasses.replace(decision, chosen=chosen, thresholds=_corrected(choice.thresholds, config))
    return decision, Scores(probs, final, float_probs), ft.models


def evaluate_on_test(problem: Problem, decision: Decision, scores: Scores, base_final: dict[str, np.ndarray],
         config: SearchConfig) -> Tested:
    """Test-split figures: the base model alone on its cheapest processor against the EENN."""
    bg, dataset, chosen, thresholds = problem.bg, problem.dataset, decision.chosen, decision.thresholds
    base_pred = base_final["test"].argmax(1)
    base = cascade_metrics(dataset.y_test, base_pred, np.zeros(len(base_pred), dtype=np.int64), 1,
                           [bg.total_macs], decision.base["mapping"])
    figures = []
    for split, y in (("test", dataset.y_test), ("cal", dataset.y_cal)):
        pred, stage = _predictions(chosen.arch, bg, scores.probs[split], scores.final[split], thresholds,
                                   config.confidence)
        figures.append(cascade_metrics(y, pred, stage, chosen.arch.n_exits + 1, chosen.stage_macs, chosen.mapping))
    return Tested(base, figures[0], figures[1])


def _stats(space: ExitSpace, trained: TrainedExits, decision: Decision, config: SearchConfig, seconds: float,
           timings: dict[str, float]) -> dict[str, Any]:
    """The search's own figures (solution.json `search.stats`, the CLI's summary)."""
    pruning, storage = space.pruning, trained.storage
    gaps = [e.graph_gap for e in decision.evaluated if e.graph_gap is not None]
    return {
        "architectures": pruning.total, "expected_architectures": space.expected,
        "pruned": pruning.pruned, "pruned_latency": pruning.too_slow, "pruned_memory": pruning.no_memory,
        "kept": len(pruning.kept), "evaluated": len(decision.evaluated),
        "fastest_worst_latency_s": pruning.fastest_worst_latency_s,
        "exits_needed": len(space.needed), "exits_trained": trained.trained_now,
        "exits_from_cache": len(space.needed) - trained.trained_now,
        "exits_aborted": len(trained.aborted), "exits_over_budget": space.over_budget,
        "feature_cache": config.feature_cache,
        "feature_store": storage.mode if config.feature_cache else "none", "feature_bytes": storage.nbytes,
        "backbone_passes": storage.passes,
        "graph_gap_max": max(gaps) if gaps else None, "graph_compared": len(gaps),
        "seconds": seconds, **timings,
    }


def _result(problem: Problem, space: ExitSpace, trained: TrainedExits, scores: Scores, decision: Decision,
            tested: Tested, base_final: dict[str, np.ndarray], stats: dict[str, Any], finetuned: dict[str, Any],
            config: SearchConfig) -> SearchResult:
    names = problem.names
    base_rows = [_base_row(b, names) for b in sorted(decision.bases, key=lambda b: b["index"])]
    solution = _build_solution(problem, config, decision, tested, scores, trained.exits, space.plans, stats,
                               efficiency=space.efficiency, base_rows=base_rows)
    pareto_rows = _pareto_rows(decision.evaluated, problem.bg, problem.profile, decision.objective, decision.chosen)
    return SearchResult(solution=solution, model=problem.model, block_graph=problem.bg, profile=problem.profile,
                        dataset=problem.dataset, chosen=decision.chosen, evaluated=decision.evaluated,
                        exits=trained.exits, plans=space.plans, pareto_rows=pareto_rows, base_test=tested.base,
                        eenn_test=tested.eenn, stats=stats,
                        probs={s: {**scores.probs[s], "final": scores.final[s], "base": base_final[s]}
                               for s in ("cal", "test")},
                        finetuned_models=finetuned)


def _int8_scores(problem: Problem, config: SearchConfig, needed: list[int], exits: dict[int, TrainedExit],
                 store: ExitStore, timings: dict[str, float], progress: Progress):
    """Every trained exit's and the final classifier's int8 scores (augment/int8_scoring.py)."""
    dataset = problem.dataset
    live = [c for c in needed if not exits[c].aborted]
    paths = {exits[c].location: exits[c].path for c in live}
    in_store = {exits[c].location for c in live if store.root is not None}
    sc = I8.score_search(problem.model, problem.layer_graph, problem.logits, paths, dataset.x_cal,
                         {"cal": dataset.x_cal, "test": dataset.x_test}, config.seed, config.cache_dir,
                         I8.final_key(problem.model_sha, dataset.sha256, config.seed, problem.logits), in_store)
    timings.update(int8_s=sc.seconds, int8_convert_s=sc.convert_s, int8_run_s=sc.run_s,
                   int8_conversions=sc.conversions, int8_from_cache=sc.from_cache)
    progress.say(f"int8 scores: {len(live)} exits and the final classifier, {sc.from_cache} from the cache, "
                 f"{sc.conversions} conversion(s), {sc.seconds:.1f} s")
    return sc.exits, sc.final


def _int8_finetuned(models, arch, bg, dataset, config, timings):
    """The fine-tuned architecture's int8 scores, in finetune's {split: {exits, final}} form."""
    n = arch.n_exits
    sc = I8.score_parts([models[f"segment_{i}.keras"] for i in range(n + 1)],
                        [models[f"exit_{i}.keras"] for i in range(n)],
                        [bg.candidates[c].after_layer for c in arch.cuts], dataset.x_cal,
                        {"cal": dataset.x_cal, "test": dataset.x_test}, config.seed)
    timings["int8_finetuned_s"] = sc.seconds
    return {s: {"exits": sc.exits[s], "final": sc.final[s]} for s in ("cal", "test")}


def evaluated_points(e: Evaluated) -> dict[str, Any]:
    """Every (thresholds) point of one evaluated architecture on the calibration split: its
    termination rates and what follows from them (mean MACs, latency, energy), its accuracy and
    its mean cost in the search's efficiency measure."""
    k = e.arch.n_exits
    if e.grid is not None:
        rates = np.asarray(e.grid.termination, dtype=np.float64).reshape(-1, k + 1)
        acc = np.asarray(e.grid.accuracy, dtype=np.float64).reshape(-1)
        mean_cost = np.asarray(e.grid.mean_cost, dtype=np.float64).reshape(-1)
        shape = np.shape(e.grid.mean_cost)
        thresholds = [[float(e.grid.grid[g]) for g in (np.unravel_index(j, shape) if k else ())]
                      for j in range(len(acc))]
    else:
        rates = np.asarray([e.choice.termination], dtype=np.float64)
        acc = np.array([e.choice.accuracy])
        mean_cost = np.array([e.choice.mean_cost])
        thresholds = [list(e.choice.thresholds)]
    mean_latency, mean_energy = e.mapping.mean(rates)
    return {"rates": rates, "accuracy": acc, "mean_cost": mean_cost, "thresholds": thresholds,
            "mean_macs": rates @ np.cumsum(np.asarray(e.stage_macs, dtype=np.float64)),
            "mean_latency_s": mean_latency, "mean_energy_j": mean_energy}


def _pareto_rows(evaluated: list[Evaluated], bg: BlockGraph, profile: HardwareProfile, objective: T.Objective,
                 chosen: Evaluated) -> list[dict[str, Any]]:
    """Every evaluated point on the calibration split, reduced to its Pareto front (mean cost in the
    search's efficiency measure vs accuracy)."""
    points = [evaluated_points(e) for e in evaluated]
    recs = [(i, j) for i, pt in enumerate(points) for j in range(len(pt["accuracy"]))]
    cost_a = np.concatenate([pt["mean_cost"] for pt in points])
    acc_a = np.concatenate([pt["accuracy"] for pt in points])
    keep = np.flatnonzero(pareto_mask(cost_a, acc_a))
    rows = []
    for p in sorted(keep, key=lambda p: cost_a[p]):
        i, j = recs[p]
        e, pt = evaluated[i], points[i]
        th = pt["thresholds"][j]
        rows.append({
            "exits": " ".join(bg.candidates[c].after_layer for c in e.arch.cuts) or "(none)",
            "processors": " ".join(profile.processors[p].name for p in e.arch.processors),
            "thresholds": " ".join(f"{t:g}" for t in th),
            "mean_macs": round(float(pt["mean_macs"][j]), 1),
            "efficiency_gain": round(float(objective.gain(cost_a[p])), 6),
            "accuracy": round(float(acc_a[p]), 6),
            "accuracy_drop": round(float(objective.drop(acc_a[p])), 6),
            "cost": round(float(objective.cost(cost_a[p], acc_a[p])), 6),
            "worst_latency_s": e.mapping.worst_latency_s,
            "mean_latency_s": float(pt["mean_latency_s"][j]),
            "mean_energy_j": float(pt["mean_energy_j"][j]),
            "chosen": int(e is chosen and tuple(th) == tuple(chosen.choice.thresholds)),
        })
    return rows


def _segment_layers(bg: BlockGraph, arch: Architecture) -> list[tuple[str, str, list[int]]]:
    """(first layer, last layer, output shape) of each segment."""
    out = []
    start = 0
    cuts = [bg.candidates[c].block for c in arch.cuts] + [None]
    for b in cuts:
        blocks = bg.blocks[start:b + 1] if b is not None else bg.blocks[start:] + [bg.head]
        first = blocks[0].layers[0]
        last_layer = blocks[-1].output_layer
        shape = list(blocks[-1].output_shape)
        out.append((first, last_layer, shape))
        start = (b + 1) if b is not None else start
    return out


def _build_solution(problem: Problem, config: SearchConfig, decision: Decision, tested: Tested, scores: Scores,
                    exits: dict[int, TrainedExit], plans: dict[int, ExitPlan], stats: dict[str, Any], *,
                    efficiency: str, base_rows: list[dict[str, Any]]) -> Solution:
    """The chosen network as the bundle describes it (docs/interfaces.md §2); the model files
    and their hashes are added when the bundle is written (solution.py)."""
    bg, profile, dataset, logits = problem.bg, problem.profile, problem.dataset, problem.logits
    chosen, thresholds, grid, objective = decision.chosen, decision.thresholds, decision.grid, decision.objective
    base_processor, rejected = problem.names[decision.base["index"]], decision.rejected
    base_test, eenn_test, eenn_cal = tested.base, tested.eenn, tested.eenn_cal
    arch = chosen.arch
    segs = _segment_layers(bg, arch)
    segments = []
    for i, (first, last_layer, shape) in enumerate(segs):
        is_last = i == len(segs) - 1
        if is_last and logits:
            last_layer = "final_softmax"
        seg_macs = chosen.stage_macs[i] - (plans[arch.cuts[i]].cost.macs if not is_last else 0)
        segments.append(SegmentSpec(index=i, processor=profile.processors[arch.processors[i]].name, first_layer=first,
                                    last_layer=last_layer, file=f"segment_{i}.keras", macs=int(seg_macs),
                                    output_shape=[bg.num_classes] if is_last else shape))
    exit_specs = [ExitSpec(index=i, after_layer=bg.candidates[c].after_layer,
                           processor=profile.processors[arch.processors[i]].name, threshold=float(thresholds[i]),
                           file=f"exit_{i}.keras", macs=int(plans[c].cost.macs)) for i, c in enumerate(arch.cuts)]
    # Extra per-exit facts go under "search": ExitSpec keeps the fields codegen needs.
    exit_details = [{"after_layer": bg.candidates[c].after_layer, "structure": plans[c].describe(),
                     "calibration_accuracy": float(np.mean(exits[c].probs["cal"].argmax(1) == dataset.y_cal)),
                     "test_accuracy": float(np.mean(exits[c].probs["test"].argmax(1) == dataset.y_test))}
                    for c in arch.cuts]
    base = {**base_test.to_dict(with_termination=False), "processor": base_processor}
    search = {"objective": config.objective, "efficiency": efficiency, "w": config.w,
              "max_accuracy_drop": config.max_accuracy_drop, "placement": config.placement,
              "max_exits": config.max_exits, "base_processor": base_processor,
              "rejected": rejected,
              "latency_bound_s": config.latency_bound_s, "confidence": config.confidence,
              "threshold_grid": [float(t) for t in grid], "calibration": dataset.calibration,
              "correction": config.correction, "seed": config.seed, "fine_tuned": bool(config.finetune and arch.n_exits),
              "fine_threshold_steps": config.fine_steps if config.finetune and arch.n_exits else None,
              "threshold_method": chosen.choice.method, "exit_rule": config.exits.to_dict(),
              "training": config.train.to_dict(), "augmentation": config.augment.to_dict(),
              "splits": {**dataset.sizes(), "test_source": dataset.test_source}, "exit_details": exit_details,
              "stats": _jsonable(stats),
              # the measured rates the costs were computed with (`--measured`): codegen predicts with them too
              **({"measured": {n: asdict(m) for n, m in Measured.load(config.measured).processors.items()}}
                 if config.measured else {})}
    metrics = {"split": "test", "n": int(len(dataset.y_test)), "base": base, "eenn": eenn_test.to_dict(),
               "base_per_processor": base_rows,
               "calibration": {"n": int(len(dataset.y_cal)), "eenn": eenn_cal.to_dict(),
                               "cost": chosen.choice.cost,
                               "efficiency_gain": float(objective.gain(chosen.choice.mean_cost)),
                               "accuracy_drop": float(objective.drop(chosen.choice.accuracy))}}
    _add_scoring(search, metrics, config, bg, dataset, chosen, thresholds, scores)
    return Solution(
        base_model=BaseModelInfo(source=str(problem.model_path), sha256=problem.model_sha, file="base.keras",
                                 input_shape=list(bg.input_shape), num_classes=bg.num_classes,
                                 total_macs=int(bg.total_macs), output="logits" if logits else "softmax"),
        hardware=profile.to_dict(), search=search, segments=segments, exits=exit_specs, metrics=metrics,
        generator=f"eenn {__version__}")


def _add_scoring(search: dict[str, Any], m: dict[str, Any], config: SearchConfig, bg: BlockGraph, dataset: Dataset,
                 chosen: Evaluated, thresholds: tuple[float, ...], scores: Scores) -> None:
    """What the scores were (`metrics.scoring`), per exit its accuracy on them, and beside the
    figures scored on int8 the float ones for the same choice (`metrics.float`)."""
    probs, float_probs = scores.probs, scores.float_probs
    m["scoring"] = search["scoring"] = config.scoring
    arch = chosen.arch
    for d, c in zip(search["exit_details"], arch.cuts):
        loc = bg.candidates[c].after_layer
        d["calibration_accuracy"] = float(np.mean(probs["cal"][loc].argmax(1) == dataset.y_cal))
        d["test_accuracy"] = float(np.mean(probs["test"][loc].argmax(1) == dataset.y_test))
        d["float_calibration_accuracy"] = float(np.mean(float_probs["cal"][loc].argmax(1) == dataset.y_cal))
        d["float_test_accuracy"] = float(np.mean(float_probs["test"][loc].argmax(1) == dataset.y_test))
    flt = {}
    for split, y in (("test", dataset.y_test), ("cal", dataset.y_cal)):
        p = float_probs[split]
        pred, stage = _predictions(arch, bg, p, p["final"], thresholds, config.confidence)
        flt[split] = cascade_metrics(y, pred, stage, arch.n_exits + 1, chosen.stage_macs, chosen.mapping).to_dict()
    m["float"] = {"eenn": flt["test"], "calibration": {"eenn": flt["cal"]},
                  "base_accuracy": float(np.mean(float_probs["test"]["base"].argmax(1) == dataset.y_test))}
    m["eenn"]["float_accuracy"] = flt["test"]["accuracy"]
    m["base"]["float_accuracy"] = m["float"]["base_accuracy"]


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=lambda o: float(o) if isinstance(o, np.generic) else str(o)))


def summary_dict(result: SearchResult) -> dict[str, Any]:
    """The `--json` output: the solution's metrics and choices plus search statistics."""
    s = result.solution.to_dict()
    return {"schema_version": SUMMARY_SCHEMA_VERSION, "no_exit": result.no_exit, "exits": s["exits"],
            "segments": s["segments"], "metrics": s["metrics"], "search": s["search"]}
