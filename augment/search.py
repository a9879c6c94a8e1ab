"""The search, end to end (DESIGN §3–5): exits, architectures, thresholds, choice, bundle.

    model + data + hardware
      → analysis (block graph, candidates, blueprint) and exit plans at every candidate
      → architectures, pruned by worst-case latency and memory before any training
      → one pass over the data: feature maps at the needed locations + the base model's softmax
      → every needed exit trained once (or loaded from the disk cache)
      → per architecture: the best thresholds on the calibration split (exact grid / graph)
      → the cheapest architecture, the Pareto front, optional joint fine-tuning
      → test-split metrics, base vs EENN, and the solution bundle (written atomically)

Each step is a function of plain data; this module only sequences them. Nothing is written
to the output directory before the end, so a failed search leaves no partial bundle.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from eenn import __version__
from eenn.augment import thresholds as T
from eenn.augment.architectures import (
    Architecture,
    count_architectures,
    enumerate_architectures,
    prune,
    require_some,
    stage_loads,
)
from eenn.augment.block_graph import BlockGraph, build_block_graph
from eenn.augment.cost import CostModel, MappingCost, Measured, StageLoad
from eenn.augment.data import Dataset, load_dataset
from eenn.augment.exits import ExitConfig, ExitPlan, leading_pooling, plan_exit, split_plan
from eenn.augment.features import AugmentConfig, FeatureCache, augment
from eenn.augment.streaming import choose_storage, map_shapes
from eenn.augment.hardware import HardwareProfile, load_profile
from eenn.augment.layer_graph import build_layer_graph
from eenn.augment.metrics import Metrics, cascade_metrics
from eenn.augment.model_io import file_sha256, load_model
from eenn.augment.progress import Progress
from eenn.augment.selection import pareto_mask
from eenn.augment.training import ExitGraphs, ExitStore, TrainConfig, TrainedExit, channel_stats, exit_key, train_exit
from eenn.errors import EennError


EFFICIENCIES = ("macs", "latency", "energy")


def stage_costs(efficiency: str, stage_macs: list[int], mapping: MappingCost) -> list[float]:
    """What reaching each stage adds, in the search's efficiency measure: MACs, or the seconds /
    joules of the cost model (the hand-off to a stage counted with that stage)."""
    if efficiency == "macs":
        return [float(m) for m in stage_macs]
    cum = mapping.latency_s if efficiency == "latency" else mapping.energy_j
    return [float(c - p) for c, p in zip(cum, [0.0, *cum[:-1]])]


def default_cache_dir() -> Path:
    root = os.environ.get("EENN_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                            os.path.expanduser("~/.cache"), "eenn")
    return Path(root)


@dataclass
class SearchConfig:
    hardware: str = "psoc6"
    clock_plan: str | None = None  # the profile's clock plan (None: its first; see hardware.py)
    measured: str | None = None
    latency_bound_s: float | None = None
    objective: str = "weighted"  # or "max_drop"
    efficiency: str = "macs"  # what efficiency_gain measures: mean MACs (the paper's), latency or energy
    w: float = 0.9
    max_accuracy_drop: float | None = None  # fraction (0.02 = 2 points); implies objective max_drop
    confidence: str = "max"
    threshold_steps: int = 13
    threshold_method: str = "auto"  # auto | exact | graph
    calibration: str = "auto"  # auto | val | split | train
    correction: float = 1.0  # thresholds are multiplied by this (the paper: 1, 2/3, 1/2 when calibrating on train)
    seed: int = 0
    exits: ExitConfig = field(default_factory=ExitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cache_dir: Path | None = field(default_factory=default_cache_dir)  # None: no disk cache
    feature_cache: bool = True  # False: train exits through the frozen backbone (the benchmark's baseline)
    memory_limit: int = 2 << 30  # bytes of cached feature maps kept in memory; beyond, numpy.memmap
    disk_limit: int | None = None  # bytes of memory-mapped maps allowed on disk; beyond, streaming (streaming.py)
    feature_store: str = "auto"  # auto | float | int8 | stream (streaming.choose_storage)
    ray: str | None = None  # train exits on Ray: an address or local:N (distributed.py)
    finetune: bool = False
    fine_steps: int = 101
    batch_size: int = 64  # inference batch of the feature pass

    def checked(self) -> SearchConfig:
        if self.latency_bound_s is not None and not self.latency_bound_s > 0:
            raise EennError(f"latency bound {self.latency_bound_s}: expected a positive number of seconds")
        if self.max_accuracy_drop is not None:
            if not 0 <= self.max_accuracy_drop <= 1:
                raise EennError(f"max accuracy drop {self.max_accuracy_drop}: expected a fraction in [0, 1] "
                                "(0.02 = 2 points)")
            self.objective = "max_drop"
        if self.efficiency not in EFFICIENCIES:
            raise EennError(f"efficiency '{self.efficiency}': expected one of {', '.join(EFFICIENCIES)}")
        if self.objective not in ("weighted", "max_drop"):
            raise EennError(f"objective '{self.objective}': expected weighted or max_drop")
        if self.objective == "max_drop" and self.max_accuracy_drop is None:
            raise EennError("objective max_drop needs a maximum accuracy drop")
        if not 0 <= self.w <= 1:
            raise EennError(f"w = {self.w}: expected a weight between 0 and 1")
        if not 0 < self.correction <= 1.5:
            raise EennError(f"correction {self.correction}: expected a factor in (0, 1.5]")
        if self.confidence not in T.CONFIDENCES:
            raise EennError(f"confidence '{self.confidence}': expected max or margin")
        if self.threshold_method not in ("auto", "exact", "graph"):
            raise EennError(f"threshold method '{self.threshold_method}': expected auto, exact or graph")
        if not 0 < self.exits.budget_share < 1:
            raise EennError(f"exit budget {self.exits.budget_share}: expected a share of the backbone in (0, 1)")
        if self.feature_store not in ("auto", "float", "int8", "stream"):
            raise EennError(f"feature storage '{self.feature_store}': expected auto, float, int8 or stream")
        if self.ray is not None:
            import importlib.util

            from eenn.augment.distributed import parse_address

            parse_address(self.ray)
            if importlib.util.find_spec("ray") is None:
                raise EennError(f"--ray {self.ray}: Ray is not installed (pip install 'eenn[ray]')")
        if self.train.epochs < 1:
            raise EennError("exit training needs at least one epoch")
        if not 0 <= self.train.quant_aware <= 1:
            raise EennError(f"--qat {self.train.quant_aware}: expected a share of the training epochs in [0, 1]")
        return self


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

    solution: dict[str, Any]
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


def run_search(model_path: str | Path, data_path: str | Path | None, config: SearchConfig,
               progress: Progress | None = None, dataset: Dataset | None = None,
               on_exit_trained: Callable[[TrainedExit], None] | None = None) -> SearchResult:
    """The whole search; raises EennError on bad input before anything expensive happens."""
    config.checked()
    progress = progress or Progress(enabled=False)
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    profile = load_profile(config.hardware, config.clock_plan)
    cost = CostModel(profile, Measured.load(config.measured) if config.measured else None)
    model = load_model(model_path)
    model_sha = file_sha256(model_path)
    lg = build_layer_graph(model)
    bg = build_block_graph(lg)
    cost.measured.check(profile, [b.name for b in bg.blocks])
    logits = _is_logits(model)
    if dataset is None:
        if data_path is None:
            raise EennError("no data given: pass --data DATA.npz")
        dataset = load_dataset(data_path, bg.input_shape, bg.num_classes, seed=config.seed,
                               calibration=config.calibration)
    for note in dataset.notes:
        progress.say(f"data: {note}")
    progress.say(f"data: {dataset.sizes()['train']} training, {dataset.sizes()['calibration']} calibration "
                 f"({dataset.calibration}), {dataset.sizes()['test']} test samples")

    # -- exits and architectures, pruned before any training ---------------------------------
    backbone_macs = sum(b.macs for b in bg.blocks)
    plans = {i: plan_exit(c, bg.blueprint, bg.num_classes, backbone_macs, config.exits)
             for i, c in enumerate(bg.candidates)}
    costs = {i: p.cost for i, p in plans.items()}
    over_budget = [p.location for p in plans.values() if p.over_budget]
    if over_budget:
        progress.say(f"exits: {len(over_budget)} of {len(plans)} stay above the {config.exits.budget_share * 100:g} % budget "
                     f"even at their smallest ({', '.join(over_budget)}); they are kept, at the cost shown")
    archs = enumerate_architectures(len(bg.candidates), len(profile.processors))
    pruning = prune(bg, archs, costs, cost, config.latency_bound_s)
    progress.say(f"architectures: {pruning.summary()}")
    require_some(pruning, config.latency_bound_s, [p.name for p in profile.processors])
    needed = sorted({c for arch, _ in pruning.kept for c in arch.cuts})

    # -- exit training (with reuse across architectures and runs) -----------------------------
    x_aug, y_aug = augment(dataset.x_train, dataset.y_train, config.augment, config.seed)
    store = ExitStore(config.cache_dir, warn=progress.say)
    aug_info = config.augment.to_dict()
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
    keys = {c: exit_key(model_sha, plans[c], dataset.sha256, config.seed, config.train, aug_info, mode_extra)
            for c in needed}
    exits: dict[int, TrainedExit] = {}
    for c in needed:
        hit = store.load(keys[c], plans[c])
        if hit is not None:
            exits[c] = hit
    missing = [c for c in needed if c not in exits]
    progress.say(f"exits: {len(needed)} needed, {len(exits)} from the cache, {len(missing)} to train")
    stream = storage.mode == "stream" and config.feature_cache and bool(missing)
    remote = config.ray is not None and config.feature_cache and bool(missing)
    if remote and stream:
        raise EennError("--ray: the feature maps fit neither --memory-limit nor --disk-limit, and streaming runs in "
                        "one process only; raise a limit (each worker caches the maps itself)")
    if missing and config.feature_cache:
        progress.say(storage.describe())
    inputs = {"cal": dataset.x_cal, "test": dataset.x_test}
    if missing and not stream and not remote:
        inputs = {"train": x_aug, **inputs}
    t_feat = time.monotonic()
    locs = [bg.candidates[c].after_layer for c in missing] if config.feature_cache and not remote else []
    tmp_root = config.cache_dir / "tmp" if config.cache_dir is not None else None
    trained_now = 0
    pending_locs = {plans[c].location for c in missing}
    heads = {loc: h for loc, h in heads.items() if loc in pending_locs}
    with FeatureCache(model, locs, inputs, logits=logits, batch_size=config.batch_size,
                      memory_limit=config.memory_limit, directory=tmp_root, progress=progress,
                      heads=heads, int8=storage.int8 and config.feature_cache) as cache:
        timings["features_s"] = time.monotonic() - t_feat
        if cache.on_disk:
            progress.say(f"features: {cache.nbytes / 2**20:.0f} MiB memory-mapped on disk")
        final = {s: cache.probs[s] for s in ("cal", "test")}
        teacher = cache.probs.get("train")
        t_train = time.monotonic()
        graphs = ExitGraphs()

        def finished(c: int, trained: TrainedExit, exported: Any) -> None:
            nonlocal trained_now
            trained = store.save(keys[c], trained, exported)
            exits[c] = trained
            trained_now += 1
            step(1)
            if on_exit_trained is not None:
                on_exit_trained(trained)

        with progress.bar("training exits", len(missing)) as step:
            if remote:
                from eenn.augment.distributed import train_on_ray

                arrays = {"x_train": x_aug, "y_train": y_aug, "x_cal": dataset.x_cal, "y_cal": dataset.y_cal,
                          "x_test": dataset.x_test}
                for c, trained, exported in train_on_ray(
                        config.ray, model_path, {c: plans[c] for c in missing}, heads, arrays, bg.num_classes, logits,
                        storage.int8, config.memory_limit, config.train, config.seed, config.batch_size,
                        say=progress.say):
                    finished(c, trained, exported)
            if stream:
                from eenn.augment.streaming import train_streaming

                for c, trained, exported in train_streaming(
                        model, {c: plans[c] for c in missing}, heads, x_aug, y_aug, cache, dataset.y_cal,
                        bg.num_classes, logits, config.train, config.seed, config.batch_size):
                    finished(c, trained, exported)
            for c in missing if not (stream or remote) else []:
                plan = plans[c]
                loc = plan.location
                evaluate_split = {"cal": dataset.x_cal, "test": dataset.x_test}
                if config.feature_cache:
                    trained, exported = train_exit(
                        plan, bg.num_classes, cache.features["train"][loc], teacher, y_aug,
                        {s: cache.features[s][loc] for s in ("cal", "test")}, dataset.y_cal, config.train,
                        config.seed, pooled=loc in heads, input_range=cache.ranges["cal"][loc], graphs=graphs,
                        grid=cache.grids.get(loc))
                else:
                    from eenn.augment.segments import frozen_prefix

                    prefix = frozen_prefix(model, lg, loc)
                    stats = channel_stats(lambda: (prefix.predict_on_batch(x_aug[lo:lo + 256])
                                                   for lo in range(0, len(x_aug), 256)), plan.input_shape[-1])
                    trained, exported = train_exit(plan, bg.num_classes, x_aug, teacher, y_aug, evaluate_split,
                                                   dataset.y_cal, config.train, config.seed, prefix=prefix,
                                                   stats=stats)
                finished(c, trained, exported)
        timings["training_s"] = time.monotonic() - t_train
    aborted = [c for c in needed if exits[c].aborted]
    for c in aborted:
        progress.say(f"exit at {bg.candidates[c].after_layer}: {exits[c].notes[0] if exits[c].notes else 'abandoned'}")

    # -- thresholds per architecture ----------------------------------------------------------
    t_thr = time.monotonic()
    probs = {s: {bg.candidates[c].after_layer: exits[c].probs[s] for c in needed if not exits[c].aborted}
             for s in ("cal", "test")}
    base_acc_cal = float(np.mean(final["cal"].argmax(1) == dataset.y_cal))
    last = len(profile.processors) - 1
    base_map = cost.mapping([StageLoad(last, tuple(bg.blocks) + (bg.head,))])
    base_cost = stage_costs(config.efficiency, [bg.total_macs], base_map)[0]
    objective = T.Objective(kind=config.objective, base_cost=base_cost, base_accuracy=base_acc_cal,
                            w=config.w, max_drop=config.max_accuracy_drop)
    grid = T.default_grid(config.confidence, config.threshold_steps)
    evaluated: list[Evaluated] = []
    for arch, mc in pruning.kept:
        if any(exits[c].aborted for c in arch.cuts):
            continue
        smacs = [s.macs for s in stage_loads(bg, arch, costs)]
        scost = stage_costs(config.efficiency, smacs, mc)
        data = _cascade(arch, bg, probs["cal"], final["cal"], dataset.y_cal, scost, config.confidence)
        choice, result = T.search(data, grid, objective, config.threshold_method)
        gap = None
        if result is not None and arch.n_exits > 0 and objective.kind == "weighted":
            g = T.graph_search(data, grid, objective)
            gap = (g.cost - choice.cost) / max(abs(choice.cost), 1e-12)
        evaluated.append(Evaluated(arch, mc, smacs, scost, choice, result, gap))
    timings["thresholds_s"] = time.monotonic() - t_thr
    feasible = [e for e in evaluated if np.isfinite(e.choice.cost)]
    if not feasible:
        raise EennError("no architecture satisfies the accuracy-drop bound on the calibration split")
    # Ties: fewer exits, then earlier cuts (the enumeration order).
    chosen = min(feasible, key=lambda e: (round(e.choice.cost, 12), e.arch.n_exits))
    thresholds = tuple(min(t * config.correction, 1.0) if t < 1.0 else t for t in chosen.choice.thresholds)

    # -- optional joint fine-tuning, then a finer threshold search -----------------------------
    base_final = dict(final)  # the base model's own softmax: the comparison point stays the original
    finetuned: dict[str, Any] = {}
    if config.finetune and chosen.arch.n_exits > 0:
        from eenn.augment.finetune import finetune

        t_ft = time.monotonic()
        ft = finetune(model, lg, bg, chosen.arch, {c: exits[c] for c in chosen.arch.cuts}, dataset, logits,
                      config, progress)
        finetuned = ft.models
        progress.say(f"fine-tuning: training loss {ft.loss_before:.4f} → {ft.loss_after:.4f}")
        fine_probs = ft.probs
        probs = {s: {**probs[s], **fine_probs[s]["exits"]} for s in ("cal", "test")}
        final = {s: fine_probs[s]["final"] for s in ("cal", "test")}
        fine_grid = np.round(np.linspace(float(grid[0]), float(grid[-1]), config.fine_steps), 6)
        data = _cascade(chosen.arch, bg, probs["cal"], final["cal"], dataset.y_cal, chosen.stage_cost,
                        config.confidence)
        choice, result = T.search(data, fine_grid, objective, config.threshold_method)
        chosen = Evaluated(chosen.arch, chosen.mapping, chosen.stage_macs, chosen.stage_cost, choice, result, None)
        thresholds = tuple(min(t * config.correction, 1.0) if t < 1.0 else t for t in choice.thresholds)
        timings["finetune_s"] = time.monotonic() - t_ft

    # -- test-split metrics: base model alone on the last processor vs the EENN ----------------
    base_pred = base_final["test"].argmax(1)
    base_test = cascade_metrics(dataset.y_test, base_pred, np.zeros(len(base_pred), dtype=np.int64), 1,
                                [bg.total_macs], base_map)
    pred, stage = _predictions(chosen.arch, bg, probs["test"], final["test"], thresholds, config.confidence)
    eenn_test = cascade_metrics(dataset.y_test, pred, stage, chosen.arch.n_exits + 1, chosen.stage_macs,
                                chosen.mapping)
    pred_c, stage_c = _predictions(chosen.arch, bg, probs["cal"], final["cal"], thresholds, config.confidence)
    eenn_cal = cascade_metrics(dataset.y_cal, pred_c, stage_c, chosen.arch.n_exits + 1, chosen.stage_macs,
                               chosen.mapping)

    pareto_rows = _pareto_rows(evaluated, bg, profile, objective, chosen)
    gaps = [e.graph_gap for e in evaluated if e.graph_gap is not None]
    stats = {
        "architectures": len(archs), "expected_architectures": count_architectures(len(bg.candidates), len(profile.processors)),
        "pruned": pruning.pruned, "pruned_latency": pruning.too_slow, "pruned_memory": pruning.no_memory,
        "kept": len(pruning.kept), "evaluated": len(evaluated),
        "fastest_worst_latency_s": pruning.fastest_worst_latency_s,
        "exits_needed": len(needed), "exits_trained": trained_now, "exits_from_cache": len(needed) - trained_now,
        "exits_aborted": len(aborted), "exits_over_budget": over_budget, "feature_cache": config.feature_cache,
        "feature_store": storage.mode if config.feature_cache else "none", "feature_bytes": storage.nbytes,
        "backbone_passes": storage.passes,
        "graph_gap_max": max(gaps) if gaps else None, "graph_compared": len(gaps),
        "seconds": time.monotonic() - t0, **timings,
    }
    solution = _solution_dict(model_path, model_sha, bg, profile, config, dataset, chosen, thresholds, grid, logits,
                              base_test, eenn_test, eenn_cal, exits, plans, stats)
    return SearchResult(solution=solution, model=model, block_graph=bg, profile=profile, dataset=dataset,
                        chosen=chosen, evaluated=evaluated, exits=exits, plans=plans, pareto_rows=pareto_rows,
                        base_test=base_test, eenn_test=eenn_test, stats=stats,
                        probs={s: {**probs[s], "final": final[s], "base": base_final[s]} for s in ("cal", "test")},
                        finetuned_models=finetuned)


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


def _solution_dict(model_path, model_sha, bg, profile, config, dataset, chosen, thresholds, grid, logits,
                   base_test, eenn_test, eenn_cal, exits, plans, stats) -> dict[str, Any]:
    arch = chosen.arch
    segs = _segment_layers(bg, arch)
    segments, exit_specs = [], []
    for i, (first, last_layer, shape) in enumerate(segs):
        is_last = i == len(segs) - 1
        if is_last and logits:
            last_layer = "final_softmax"
        seg_macs = chosen.stage_macs[i] - (plans[arch.cuts[i]].cost.macs if not is_last else 0)
        segments.append({"index": i, "processor": profile.processors[arch.processors[i]].name, "first_layer": first,
                         "last_layer": last_layer, "file": f"segment_{i}.keras", "macs": int(seg_macs),
                         "output_shape": [bg.num_classes] if is_last else shape})
    for i, c in enumerate(arch.cuts):
        exit_specs.append({"index": i, "after_layer": bg.candidates[c].after_layer,
                           "processor": profile.processors[arch.processors[i]].name, "threshold": float(thresholds[i]),
                           "file": f"exit_{i}.keras", "macs": int(plans[c].cost.macs)})
    # Extra per-exit facts go under "search": bundle.Solution reads exits/segments with fixed fields.
    exit_details = [{"after_layer": bg.candidates[c].after_layer, "structure": plans[c].describe(),
                     "calibration_accuracy": float(np.mean(exits[c].probs["cal"].argmax(1) == dataset.y_cal)),
                     "test_accuracy": float(np.mean(exits[c].probs["test"].argmax(1) == dataset.y_test))}
                    for c in arch.cuts]
    base = base_test.to_dict(with_termination=False)
    return {
        "schema_version": 1,
        "generator": f"eenn {__version__}",
        "base_model": {"source": str(model_path), "sha256": model_sha, "file": "base.keras",
                       "input_shape": list(bg.input_shape), "num_classes": bg.num_classes,
                       "total_macs": int(bg.total_macs), "output": "logits" if logits else "softmax"},
        "hardware": profile.to_dict(),
        "search": {"objective": config.objective, "efficiency": config.efficiency, "w": config.w,
                   "max_accuracy_drop": config.max_accuracy_drop,
                   "latency_bound_s": config.latency_bound_s, "confidence": config.confidence,
                   "threshold_grid": [float(t) for t in grid], "calibration": dataset.calibration,
                   "correction": config.correction, "seed": config.seed, "fine_tuned": bool(config.finetune and arch.n_exits),
                   "fine_threshold_steps": config.fine_steps if config.finetune and arch.n_exits else None,
                   "threshold_method": chosen.choice.method, "exit_rule": config.exits.to_dict(),
                   "training": config.train.to_dict(), "augmentation": config.augment.to_dict(),
                   "splits": {**dataset.sizes(), "test_source": dataset.test_source}, "exit_details": exit_details,
                   "stats": _jsonable(stats)},
        "segments": segments,
        "exits": exit_specs,
        "metrics": {"split": "test", "n": int(len(dataset.y_test)), "base": base, "eenn": eenn_test.to_dict(),
                    "calibration": {"n": int(len(dataset.y_cal)), "eenn": eenn_cal.to_dict(),
                                    "cost": chosen.choice.cost}},
    }


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=lambda o: float(o) if isinstance(o, np.generic) else str(o)))


def summary_dict(result: SearchResult) -> dict[str, Any]:
    """The `--json` output: the solution's metrics and choices plus search statistics."""
    s = result.solution
    return {"schema_version": 1, "no_exit": result.no_exit, "exits": s["exits"], "segments": s["segments"],
            "metrics": s["metrics"], "search": s["search"]}


def asdict_metrics(m: Metrics) -> dict[str, Any]:
    return asdict(m)
