"""Benchmark: a search on a 74-location bottleneck ResNet, in one process and on Ray, and the
threshold phase of 2,776 architectures × 169 configurations.

    python benchmarks/scale.py [--quick] [--work runs/scale] [--memory-limit MiB] [--disk-limit MiB]

The network: a CIFAR-style bottleneck ResNet on 32×32×3 inputs (stem, three stages of
bottleneck blocks of widths 8/16/32 (`--widths`) with 4× expansion, 24 + 25 + 25 = 74 blocks). A residual
block is one node of eenn's block graph, so 74 blocks after the stem give 74 candidate
locations (ResNet-152's 50 blocks would give 50). It is trained for `--train-minutes` on a
synthetic 10-class task whose first five classes differ in colour (early layers can tell them)
and the other five in stripe frequency (they need depth), so early exits are partly useful.

Then `run_search` on `rk3588-cloud` (three processors: up to two exits, 2,776 architectures at
74 locations), once in one process and once with `--ray local:2`, each in a process of its own
(its memory figures are its own) with its own exit cache. Printed per run: wall time per phase,
peak memory (the search process's `ru_maxrss`; sampled, anonymous and file-backed resident memory
of it and of its descendants, Ray's workers, and their largest sum at one instant), peak disk
under the work directory and eenn's temporary directories, exits trained and abandoned, the
feature storage chosen and the bytes and backbone passes it implies. Last, the batched
threshold phase (`cascade_batch`) on 74 synthetic exits × 1,000 calibration samples, and the
search's own threshold and architecture phase for both placements.

`--quick` (a 6-block network, 800 samples, 3 epochs) shows that the script works in a few
minutes; it measures nothing about scale.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def bottleneck_resnet(blocks: tuple[int, ...], widths: tuple[int, ...], classes: int = 10):
    """BatchNormalization's moving statistics at momentum 0.9: the few minutes of training are
    one or two epochs (about 160 steps each), too few for Keras' 0.99, whose moving statistics
    would still be a fifth of the way from their initial values and leave this 74-block network
    at chance in inference."""
    import functools

    import keras
    from keras import layers as L

    bn = functools.partial(L.BatchNormalization, momentum=0.9)

    inp = keras.Input((32, 32, 3), name="img")
    x = L.Conv2D(widths[0] * 4, 3, padding="same", use_bias=False, name="stem")(inp)
    x = bn(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    k = 0
    for stage, (n, w) in enumerate(zip(blocks, widths)):
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            y = L.Conv2D(w, 1, use_bias=False, name=f"b{k}_a")(x)
            y = L.ReLU(name=f"b{k}_a_relu")(bn(name=f"b{k}_a_bn")(y))
            y = L.Conv2D(w, 3, strides=stride, padding="same", use_bias=False, name=f"b{k}_b")(y)
            y = L.ReLU(name=f"b{k}_b_relu")(bn(name=f"b{k}_b_bn")(y))
            y = L.Conv2D(w * 4, 1, use_bias=False, name=f"b{k}_c")(y)
            y = bn(name=f"b{k}_c_bn")(y)
            s = x
            if stride != 1 or x.shape[-1] != w * 4:
                s = bn(name=f"b{k}_p_bn")(
                    L.Conv2D(w * 4, 1, strides=stride, use_bias=False, name=f"b{k}_p")(x))
            x = L.ReLU(name=f"b{k}_out")(L.Add(name=f"b{k}_add")([s, y]))
            k += 1
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(classes, name="fc")(x)  # logits
    return keras.Model(inp, out, name="bottleneck_resnet")


def synthetic_task(n: int, seed: int):
    """Classes 0-4: a colour tint (easy); 5-9: one tint, stripes of five frequencies (harder)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n)
    x = rng.normal(0, 0.6, size=(n, 32, 32, 3)).astype(np.float32)
    tints = np.eye(3)[[0, 1, 2, 0, 1]] * np.array([1, 1, 1, -1, -1])[:, None]
    easy = y < 5
    x[easy] += 0.8 * tints[y[easy]][:, None, None, :]
    cols = np.arange(32)
    for f in range(5):
        sel = y == 5 + f
        stripe = np.sin(2 * np.pi * (f + 1) * cols / 32 + rng.uniform(0, 6.3, size=(sel.sum(), 1)))
        x[sel] += 0.8 * stripe[:, None, :, None]
    return x, y.astype(np.int64)


class _Disk:
    """Peak bytes under a directory and under the temporary directories eenn makes (feature maps,
    Ray's workers: `eenn-*`, `features-*` in the system's temporary directory), sampled every
    half second in a thread."""

    def __init__(self, root: Path):
        self.root, self.peak, self._stop = root, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _roots(self) -> list[Path]:
        tmp = Path(tempfile.gettempdir())
        return [self.root] + sorted(tmp.glob("eenn-*")) + sorted(tmp.glob("features-*"))

    def _size(self) -> int:
        total = 0
        for dirpath, _, files in (w for root in self._roots() for w in os.walk(root)):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
                except OSError:
                    pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._size())
            self._stop.wait(0.5)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._size())


class _Memory:
    """Peak resident memory of a process (the search) and its descendants (Ray's workers),
    sampled every half second: anonymous (what they allocated) and file-backed (mapped pages:
    libraries, memory-mapped feature maps; `ru_maxrss` counts both). `total` and `total_anon`
    are the largest sums over the whole tree at one instant: the machine's memory the run used."""

    def __init__(self, root: int):
        self.root = root
        self.peak = {"anon": 0, "file": 0, "workers_anon": 0, "workers_file": 0, "worker_anon_max": 0,
                     "total": 0, "total_anon": 0}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss(pid: int) -> tuple[int, int]:
        fields = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile"):
                    fields[key] = int(value.split()[0]) << 10
        return fields.get("RssAnon", 0), fields.get("RssFile", 0)

    @staticmethod
    def _descendants(root: int) -> list[int]:
        parent = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    pass
        out, frontier = [], [root]
        while frontier:
            kids = [p for p, pp in parent.items() if pp in frontier]
            out += kids
            frontier = kids
        return out

    def _sample(self) -> None:
        try:
            anon, file = self._rss(self.root)
        except OSError:
            return
        workers = []
        for pid in self._descendants(self.root):
            try:
                workers.append(self._rss(pid))
            except OSError:
                pass
        p = self.peak
        p["anon"], p["file"] = max(p["anon"], anon), max(p["file"], file)
        w_anon, w_file = sum(a for a, _ in workers), sum(f for _, f in workers)
        p["workers_anon"], p["workers_file"] = max(p["workers_anon"], w_anon), max(p["workers_file"], w_file)
        p["worker_anon_max"] = max([p["worker_anon_max"]] + [a for a, _ in workers])
        p["total"] = max(p["total"], anon + file + w_anon + w_file)
        p["total_anon"] = max(p["total_anon"], anon + w_anon)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.5)

    def __enter__(self):
        if Path(f"/proc/{self.root}/status").exists():  # Linux; elsewhere only ru_maxrss is printed
            self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._t.is_alive():
            self._t.join()

    def mib(self) -> dict[str, float]:
        return {f"peak_{k}_mib": v / 2**20 for k, v in self.peak.items()}


def threshold_phase(n_loc: int = 74, n: int = 1000, steps: int = 13) -> dict:
    """The batched threshold phase on synthetic exits: 1 + L + L(L-1)/2 architectures × G**K."""
    import numpy as np

    from eenn.augment import thresholds as T
    from eenn.augment.cascade_batch import best_choices, evaluate_batch

    rng = np.random.default_rng(0)
    correct = np.vstack([rng.random((n_loc, n)) < np.linspace(0.3, 0.9, n_loc)[:, None], rng.random((1, n)) < 0.95])
    conf = np.clip(rng.beta(2, 2, size=(n_loc, n)) + 0.3 * correct[:-1], 0, 1)
    archs = [()] + [(a,) for a in range(n_loc)] + [(a, b) for a in range(n_loc) for b in range(a + 1, n_loc)]
    depth = np.linspace(0.02, 0.98, n_loc)
    costs = [np.diff([0.0] + [depth[a] for a in arch] + [1.0]) * 100 + 1 for arch in archs]
    grid = T.default_grid("max", steps)
    objective = T.Objective(kind="weighted", base_cost=100.0, base_accuracy=float(correct[-1].mean()), w=0.9)
    t0 = time.perf_counter()
    result = evaluate_batch(conf, correct, archs, costs, grid)
    t1 = time.perf_counter()
    best_choices(result, objective)
    t2 = time.perf_counter()
    # the per-architecture exact simulation on a sample of 100 two-exit architectures, for scale
    two = [i for i, a in enumerate(archs) if len(a) == 2][:100]
    t3 = time.perf_counter()
    for i in two:
        a = archs[i]
        T.search(T.CascadeData(conf[list(a)], correct[list(a) + [n_loc]], costs[i]), grid, objective, "exact")
    t4 = time.perf_counter()
    for i in two:  # the search also runs the paper's graph search per architecture (its gap check)
        a = archs[i]
        T.graph_search(T.CascadeData(conf[list(a)], correct[list(a) + [n_loc]], costs[i]), grid, objective)
    t5 = time.perf_counter()
    configs = sum(int(np.size(a)) for a in result.accuracy)
    return {"architectures": len(archs), "configurations": configs, "samples": n, "batch_s": t1 - t0,
            "best_s": t2 - t1, "exact_per_arch_s_estimate": (t4 - t3) / len(two) * len(archs),
            "graph_per_arch_s_estimate": (t5 - t4) / len(two) * len(archs)}


def search_threshold_phase(blocks=(24, 25, 25), widths=(8, 16, 32), n: int = 1000, steps: int = 13,
                           hardware: str = "rk3588-cloud", placement: str = "any") -> dict:
    """The search's own threshold and architecture phase (`search.plan_exits` + `search.choose`)
    on the 74-location network with synthetic exit scores: every architecture the search keeps,
    priced on the real cost model, as `run_search` does after training."""
    from types import SimpleNamespace

    import numpy as np

    from eenn.augment.block_graph import build_block_graph
    from eenn.augment.cost import CostModel
    from eenn.augment.hardware import load_profile
    from eenn.augment.layer_graph import build_layer_graph
    from eenn.augment.progress import Progress
    from eenn.augment.search import Problem, Scores, choose, plan_exits
    from eenn.augment.search_config import SearchConfig

    model = bottleneck_resnet(blocks, widths)
    lg = build_layer_graph(model)
    bg = build_block_graph(lg)
    profile = load_profile(hardware)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n)

    def scores(skill: float) -> np.ndarray:
        logits = rng.normal(0, 1, (n, 10))
        logits[np.arange(n), y] += skill
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    config = SearchConfig(hardware=hardware, placement=placement, threshold_steps=steps).checked()
    problem = Problem("synthetic", model, "0" * 64, lg, bg, True, profile, CostModel(profile),
                      SimpleNamespace(y_cal=y))
    quiet = Progress(enabled=False)
    t0 = time.perf_counter()
    space = plan_exits(problem, config, quiet)
    t1 = time.perf_counter()
    probs = {c.after_layer: scores(0.5 + 3.0 * i / len(bg.candidates)) for i, c in enumerate(bg.candidates)}
    exits = SimpleNamespace(exits={c: SimpleNamespace(aborted=False) for c in space.needed})
    timings: dict[str, float] = {}
    decision = choose(problem, space, exits, Scores({"cal": probs}, {"cal": scores(4.0)}, {}), config, quiet, timings)
    configs = sum(int(np.size(e.grid.accuracy)) for e in decision.evaluated if e.grid is not None)
    return {"placement": placement, "candidates": len(bg.candidates), "architectures": space.pruning.total,
            "evaluated": len(decision.evaluated), "configurations": configs, "samples": n,
            "plan_s": t1 - t0, "thresholds_s": timings["thresholds_s"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 6-block network on 800 samples: proves the script only")
    ap.add_argument("--work", type=Path, default=Path("runs/scale"))
    ap.add_argument("--samples", type=int, default=None, help="training samples [10,000; --quick: 800]")
    ap.add_argument("--blocks", default=None, help="blocks per stage, e.g. 8,8,8 [24,25,25; --quick: 2,2,2]")
    ap.add_argument("--widths", default="8,16,32", help="bottleneck widths per stage (4x expansion) [8,16,32]")
    ap.add_argument("--train-minutes", type=float, default=4.0)
    ap.add_argument("--epochs", type=int, default=10, help="exit training epochs")
    ap.add_argument("--augment", type=int, default=1)
    ap.add_argument("--exit-budget", type=float, default=0.005,
                    help="share of the backbone's MACs per exit (search --exit-budget) [0.005; the search's "
                         "default 0.05 gives these 74 exits 119 M MACs, 1.4x the backbone]")
    ap.add_argument("--memory-limit", type=int, default=2048, help="MiB (search --memory-limit)")
    ap.add_argument("--disk-limit", type=int, default=8192, help="MiB (search --disk-limit)")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--thresholds-only", action="store_true",
                    help="only the threshold and architecture phase (no training): seconds, not minutes")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one search run, in a process of its own
    ap.add_argument("--child-ray", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args)
    if args.thresholds_only:
        return _print_threshold_phases(args.json)
    if args.quick:
        blocks, widths, samples, minutes, epochs = (2, 2, 2), (8, 16, 32), 800, 0.5, 3
    else:
        blocks, widths, samples, minutes, epochs = (24, 25, 25), tuple(int(w) for w in args.widths.split(",")), 10_000, args.train_minutes, args.epochs
    if args.blocks:
        blocks = tuple(int(b) for b in args.blocks.split(","))
    samples = args.samples or samples

    import keras
    import numpy as np

    from eenn.augment.block_graph import build_block_graph
    from eenn.augment.layer_graph import build_layer_graph

    work = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    figures: dict = {"quick": args.quick, "blocks": list(blocks), "samples": samples, "epochs": epochs,
                     "augment": args.augment, "exit_budget": args.exit_budget}
    t0 = time.monotonic()
    keras.utils.set_random_seed(0)
    model = bottleneck_resnet(blocks, widths)
    x, y = synthetic_task(samples + 2000, 0)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    deadline = time.monotonic() + minutes * 60
    epochs_run = 0
    while time.monotonic() < deadline or epochs_run == 0:
        model.fit(x[:samples], y[:samples], batch_size=64, epochs=1, verbose=0)
        epochs_run += 1
    acc = float(np.mean(model.predict(x[samples:], verbose=0).argmax(1) == y[samples:]))
    model.save(work / "model.keras")
    half = samples + 1000
    np.savez(work / "data.npz", x_train=x[:samples], y_train=y[:samples], x_val=x[samples:half], y_val=y[samples:half],
             x_test=x[half:], y_test=y[half:])
    bg = build_block_graph(build_layer_graph(model))
    figures["backbone"] = {"candidates": len(bg.candidates), "macs": int(bg.total_macs), "epochs": epochs_run,
                           "test_accuracy": acc, "train_s": time.monotonic() - t0}
    print(f"backbone: {len(bg.candidates)} candidate locations, {bg.total_macs / 1e6:.1f} M MACs, "
          f"{epochs_run} epoch(s) in {time.monotonic() - t0:.0f} s, test accuracy {acc:.3f}", flush=True)

    runs = [("one process", None)] + ([] if args.no_ray else [("ray local:2", "local:2")])
    for i, (tag, ray) in enumerate(runs):
        figures[tag] = _run_child(work, i, tag, ray, epochs, args)
    figures.update(_threshold_figures())
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


class _Say:
    """eenn's progress, one tagged line per message and per tenth of each phase: a long run's log."""

    def __init__(self, tag: str):
        self.tag = tag

    def say(self, m: str) -> None:
        print(f"  [{self.tag}] {m}", flush=True)

    @contextlib.contextmanager
    def bar(self, label: str, length: int):
        start, done, shown = time.monotonic(), [0], [0]

        def step(n=1):
            done[0] += n
            if length and done[0] * 10 // length > shown[0]:
                shown[0] = done[0] * 10 // length
                print(f"  [{self.tag}] {label}: {done[0]}/{length} in {time.monotonic() - start:.0f} s", flush=True)

        yield step


def _run_child(work: Path, index: int, tag: str, ray: str | None, epochs: int, args: argparse.Namespace) -> dict:
    """One search in a process of its own, so that its memory figures are its own (a process's
    peak RSS never falls, and the backbone's training or the previous run would be in it):
    `ru_maxrss` of that process, and sampled, its and its descendants' (Ray's workers)."""
    out = work / f"row-{index}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", tag, "--work", str(work), "--epochs", str(epochs),
           "--augment", str(args.augment), "--exit-budget", str(args.exit_budget),
           "--memory-limit", str(args.memory_limit), "--disk-limit", str(args.disk_limit), "--json", str(out)]
    if ray:
        cmd += ["--child-ray", ray]
    start = time.monotonic()
    with _Disk(work) as disk:
        proc = subprocess.Popen(cmd)
        with _Memory(proc.pid) as memory:
            _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not out.exists():
        print(f"{tag}: not run (exit status {proc.returncode})", flush=True)
        return {"not_run": f"exit status {proc.returncode}"}
    row = json.loads(out.read_text())
    if "not_run" not in row:
        row = {"wall_s": time.monotonic() - start, **row, "peak_rss_mib": usage.ru_maxrss / 1024.0,
               "peak_disk_mib": disk.peak / 2**20, **memory.mib()}
    print(f"{tag}: " + json.dumps(row), flush=True)
    return row


def _child(args: argparse.Namespace) -> int:
    """`--child TAG`: one `run_search` on the work directory's model and data; its figures to `--json`."""
    from eenn.augment.exits import ExitConfig
    from eenn.augment.features import AugmentConfig
    from eenn.augment.search import run_search
    from eenn.augment.search_config import SearchConfig
    from eenn.augment.training import TrainConfig
    from eenn.errors import EennError

    work, tag, ray = args.work, args.child, args.child_ray
    cache = work / ("cache-" + ("ray" if ray else "local"))
    cfg = SearchConfig(hardware="rk3588-cloud", latency_bound_s=None, seed=0, cache_dir=cache,
                       train=TrainConfig(epochs=args.epochs), augment=AugmentConfig(copies=args.augment),
                       exits=ExitConfig(budget_share=args.exit_budget),
                       memory_limit=args.memory_limit << 20, disk_limit=args.disk_limit << 20, ray=ray)
    try:
        res = run_search(work / "model.keras", work / "data.npz", cfg, progress=_Say(tag))
    except EennError as exc:  # bad input, a lost Ray worker: said, and the next run goes on
        args.json.write_text(json.dumps({"not_run": str(exc)}))
        return 0
    s = res.stats
    row = {"features_s": s.get("features_s"), "training_s": s.get("training_s"), "thresholds_s": s.get("thresholds_s"),
           "architectures": s["architectures"], "exits_needed": s["exits_needed"],
           "exits_trained": s["exits_trained"], "exits_aborted": s["exits_aborted"],
           "feature_store": s["feature_store"], "feature_mib": s["feature_bytes"] / 2**20,
           "backbone_passes": s["backbone_passes"], "chosen": res.chosen.arch.key(res.block_graph),
           "test_accuracy_base": res.base_test.accuracy, "test_accuracy_eenn": res.eenn_test.accuracy,
           "mean_macs_base": res.base_test.mean_macs, "mean_macs_eenn": res.eenn_test.mean_macs}
    args.json.write_text(json.dumps(row))
    return 0


def _threshold_figures() -> dict:
    thr = threshold_phase()
    print(f"threshold phase (synthetic exits): {thr['architectures']} architectures, {thr['configurations']} "
          f"configurations on {thr['samples']} samples: batched {thr['batch_s']:.2f} s (+ {thr['best_s']:.2f} s "
          f"picking the best); per architecture, extrapolated from 100: exact simulation "
          f"{thr['exact_per_arch_s_estimate']:.1f} s, graph search {thr['graph_per_arch_s_estimate']:.1f} s", flush=True)
    out = {"threshold_phase": thr}
    for placement in ("boundary", "any"):
        ph = search_threshold_phase(placement=placement)
        out[f"search_threshold_phase_{placement}"] = ph
        print(f"search threshold phase, placement {placement}: {ph['candidates']} locations, {ph['architectures']} "
              f"architectures ({ph['evaluated']} scored), {ph['configurations']} configurations on {ph['samples']} "
              f"samples: {ph['thresholds_s']:.2f} s (planning and pruning {ph['plan_s']:.2f} s)", flush=True)
    return out


def _print_threshold_phases(json_path: Path | None) -> int:
    figures = _threshold_figures()
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
