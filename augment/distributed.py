"""Exit training on a Ray cluster (`eenn search --ray ADDRESS | local:N`); imported only then.

Why: exits are independent once the backbone is frozen, so their training divides over
machines; what does not divide is each worker's copy of the backbone and the data and its own
feature pass (module doc of `features.py`), paid once per worker (README, "Scale").

How: the model file and the data go into Ray's object store once (`ray.put`) and become the
state of a few actors (`ExitWorker`); each actor builds one feature cache of every pending
location on its first exit and trains exits with the same code and seeds as the in-process
search (`train_exit` on the cache, `ExitGraphs` kept per actor). Ray's `ActorPool` hands the
exits out longest-first (MACs × samples, the same samples for all: MACs order them); each
finished exit comes back to the driver, which writes it to the exit store at once, so a killed
driver or worker loses only the exits in flight and a re-run trains only those.

When the maps must stream (they fit no cache), each actor streams one group of the exits
instead (`streaming.train_streaming`: one backbone pass per epoch for its whole group, every
exit on the search seed's batch order, so the grouping does not change what an exit learns);
the groups are balanced by MACs, one per worker, and a group's exits come back when it ends
(a lost worker costs its group).
"""
from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from eenn.augment.exits import ExitPlan
from eenn.augment.exit_store import TrainedExit
from eenn.augment.training import TrainConfig
from eenn.errors import EennError


def parse_address(spec: str) -> tuple[str | None, int | None]:
    """`local:N` → (None, N): a local cluster of N worker processes; anything else is a Ray
    address (`auto`, `ray://host:10001`, `host:6379`) and the workers are the cluster's CPUs."""
    if spec.startswith("local:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise EennError(f"--ray {spec}: expected local:N with N >= 1 worker processes")
        return None, n
    if not spec:
        raise EennError("--ray: expected an address of a Ray cluster or local:N")
    return spec, None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise EennError("--ray needs Ray: pip install 'eenn[ray]'") from exc
    return ray


def _model_bytes(model: Any | None) -> bytes | None:
    if model is None:
        return None
    with tempfile.TemporaryDirectory(prefix="eenn-ray-") as d:
        model.save(Path(d) / "exit.keras")
        return (Path(d) / "exit.keras").read_bytes()


def _load_model(blob: bytes, directory: Path) -> Any:
    import keras

    path = directory / "exit.keras"
    path.write_bytes(blob)
    zipfile.ZipFile(io.BytesIO(blob)).testzip()
    return keras.models.load_model(path, compile=False)


class ExitWorker:
    """An actor's state: the backbone and the data (arrived once), its feature cache (built on
    the first exit it is given) and the training graphs it lends between exits of one shape."""

    def __init__(self, model_blob: bytes, arrays: dict[str, np.ndarray], plans: dict[int, ExitPlan],
                 heads: dict[str, ExitPlan], num_classes: int, logits: bool, int8: bool, memory_limit: int,
                 config: TrainConfig, seed: int, batch_size: int, threads: int = 1, die_after: int | None = None):
        import tensorflow as tf

        try:  # only possible before TensorFlow's first op in this process
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass
        self.dir = Path(tempfile.mkdtemp(prefix="eenn-worker-"))
        self.model = _load_model(model_blob, self.dir)
        self.arrays, self.plans, self.heads = arrays, plans, heads
        self.num_classes, self.logits, self.int8, self.memory_limit = num_classes, logits, int8, memory_limit
        self.config, self.seed, self.batch_size = config, seed, batch_size
        self.cache: Any = None
        self.graphs: Any = None
        self.done = 0
        self.die_after = die_after  # tests: the process ends after this many exits (a lost worker)

    def _features(self) -> Any:
        from eenn.augment.features import FeatureCache
        from eenn.augment.training import ExitGraphs

        if self.cache is None:
            a = self.arrays
            locs = [p.location for p in self.plans.values()]
            self.cache = FeatureCache(self.model, locs, {"train": a["x_train"], "cal": a["x_cal"], "test": a["x_test"]},
                                      logits=self.logits, batch_size=self.batch_size, memory_limit=self.memory_limit,
                                      directory=self.dir, heads=self.heads, int8=self.int8)
            self.graphs = ExitGraphs()
        return self.cache

    def close(self) -> None:
        """Remove the feature cache and the worker's files (its maps can be gigabytes on disk)."""
        import shutil

        if self.cache is not None:
            self.cache.close()
            self.cache = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def train_streamed(self, cs: list[int]) -> list[tuple[int, dict[str, Any], bytes | None]]:
        """Stream the exits `cs` together: one backbone pass per epoch over the training split,
        only the calibration and test maps cached (int8)."""
        import os

        from eenn.augment.features import FeatureCache
        from eenn.augment.streaming import train_streaming

        if self.die_after is not None and self.done >= self.die_after:
            os._exit(1)
        a, plans = self.arrays, {c: self.plans[c] for c in cs}
        heads = {p.location: self.heads[p.location] for p in plans.values() if p.location in self.heads}
        out = []
        with FeatureCache(self.model, [p.location for p in plans.values()], {"cal": a["x_cal"], "test": a["x_test"]},
                          logits=self.logits, batch_size=self.batch_size, memory_limit=self.memory_limit,
                          directory=self.dir, heads=heads, int8=True) as cache:
            for c, trained, exported in train_streaming(self.model, plans, heads, a["x_train"], a["y_train"], cache,
                                                        a["y_cal"], self.num_classes, self.logits, self.config,
                                                        self.seed, self.batch_size):
                out.append((c, _exit_fields(trained), _model_bytes(exported)))
        self.done += len(cs)
        return out

    def train(self, c: int) -> tuple[int, dict[str, Any], bytes | None]:
        import os

        from eenn.augment.training import CachedMaps, Labels, train_exit

        if self.die_after is not None and self.done >= self.die_after:
            os._exit(1)
        cache = self._features()
        plan, a = self.plans[c], self.arrays
        loc = plan.location
        labels = Labels(self.num_classes, a["y_train"], cache.probs["train"], a["y_cal"])
        trained, exported = train_exit(plan, CachedMaps.of(cache, loc, pooled=loc in self.heads), labels, self.config,
                                       self.seed, graphs=self.graphs)
        self.done += 1
        return c, _exit_fields(trained), _model_bytes(exported)


def _exit_fields(trained: TrainedExit) -> dict[str, Any]:
    """A trained exit as it travels back to the driver (its plan is known there; no path yet)."""
    from dataclasses import asdict

    fields = {k: v for k, v in asdict(trained).items() if k not in ("plan", "path", "probs")}
    return {**fields, "probs": trained.probs}


def _longest_first(plans: dict[int, ExitPlan]) -> list[int]:
    """Candidates by MACs, largest first (all train on the same samples: MACs order their cost)."""
    return sorted(plans, key=lambda c: (-plans[c].cost.macs, c))


def balanced_groups(plans: dict[int, ExitPlan], n: int) -> list[list[int]]:
    """`plans` in at most `n` groups of about equal MACs (longest first, each to the lightest
    group): the streamed exits of one worker each."""
    groups: list[list[int]] = [[] for _ in range(min(n, len(plans)))]
    load = [0] * len(groups)
    for c in _longest_first(plans):
        k = load.index(min(load))
        groups[k].append(c)
        load[k] += plans[c].cost.macs
    return [g for g in groups if g]


def train_on_ray(spec: str, model_path: str | Path, plans: dict[int, ExitPlan], heads: dict[str, ExitPlan],
                 arrays: dict[str, np.ndarray], num_classes: int, logits: bool, int8: bool, memory_limit: int,
                 config: TrainConfig, seed: int, batch_size: int, say: Callable[[str], None] = print,
                 die_after: int | None = None, stream: bool = False) -> Iterator[tuple[int, TrainedExit, Any]]:
    """Train `plans` (candidate → plan) on Ray; yields (candidate, trained exit, exported Keras
    model or None) in the order they finish. `stream`: the maps fit no cache, each worker streams
    a group (module doc). A lost worker ends the run with an EennError after every exit finished
    before it has been yielded (and so stored)."""
    ray = _import_ray()
    from ray.util import ActorPool

    address, local = parse_address(spec)
    started = not ray.is_initialized()
    workers: list[Any] = []
    if started:
        if local is not None:
            ray.init(num_cpus=local, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n_workers = max(1, min(local or cpus, cpus, len(plans)))
        model_ref = ray.put(Path(model_path).read_bytes())
        data_ref = ray.put(arrays)
        actor = ray.remote(num_cpus=1, max_restarts=0)(ExitWorker)
        workers = [actor.remote(model_ref, data_ref, plans, heads, num_classes, logits, int8, memory_limit, config,
                                seed, batch_size, 1, die_after) for _ in range(n_workers)]
        where = "local" if local else address
        pool = ActorPool(workers)
        if stream:
            groups = balanced_groups(plans, n_workers)
            say(f"ray: {len(plans)} exit(s) streamed in {len(groups)} group(s) of about equal MACs ({where}), "
                "one backbone pass per epoch and group")
            for g in groups:
                pool.submit(lambda w, g: w.train_streamed.remote(g), g)
        else:
            order = _longest_first(plans)
            say(f"ray: {len(order)} exit(s) on {n_workers} worker(s) ({where}), longest first")
            for c in order:
                pool.submit(lambda w, c: w.train.remote(c), c)
        with tempfile.TemporaryDirectory(prefix="eenn-ray-driver-") as d:
            while pool.has_next():
                try:
                    got = pool.get_next_unordered()
                except ray.exceptions.RayActorError as exc:
                    raise EennError(f"a Ray worker was lost ({type(exc).__name__}); the exits it had not finished "
                                    "are not stored: run the search again to train only those") from exc
                for c, fields, blob in got if stream else [got]:
                    sub = Path(d) / str(c)
                    sub.mkdir()
                    exported = _load_model(blob, sub) if blob is not None else None
                    probs = fields.pop("probs")
                    trained = TrainedExit(plan=plans[c], probs=probs, path=None, **fields)
                    yield c, trained, exported
    finally:
        for w in workers:  # best effort: a lost worker's files stay in its temp dir
            try:
                ray.get(w.close.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - the worker is gone already
                pass
        if started:
            ray.shutdown()
