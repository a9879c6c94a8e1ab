"""TEST-ONLY: a solution bundle and the generated project that belongs to it, for the HIL harness.

Built on `tests/int8_project.py` (the stand-in for `eenn generate`): the project is copied, a
bundle is written with `augment/bundle.py` (its `solution.json` carries a prediction; its
`test.npz` is the fixture's test set) and the project's `bundle_hash` is set to the bundle's
hash, as `eenn generate` would. `eenn/reference.json` holds the Python int8 chain's answers.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.int8_project import HANDOFF, PREDICTED_S, int8_project

ENERGY = {"active_w": [0.019, 0.032], "sleep_w": [0.0005, 0.0005]}

_built: dict = {}


@dataclass(frozen=True)
class HilPair:
    bundle: Path
    project: Path
    data: Path  # test.npz inside the bundle
    ref_class: np.ndarray
    ref_exit: np.ndarray
    labels: np.ndarray
    bundle_hash: str


def path_latency_s() -> list[float]:
    """The cost model's latency of each exit path of the fixture."""
    return [PREDICTED_S[0], PREDICTED_S[0] + HANDOFF["link_s"] + HANDOFF["wakeup_s"] + PREDICTED_S[1]]


def path_energy_j() -> list[float]:
    """The cost model's energy per exit path (augment/cost.py: active core + sleeping others;
    the link at the sender's power, the wake-up at the receiver's)."""
    a, s = ENERGY["active_w"], ENERGY["sleep_w"]
    p0, p1 = a[0] + s[1], a[1] + s[0]
    e0 = PREDICTED_S[0] * p0
    return [e0, e0 + HANDOFF["link_s"] * p0 + HANDOFF["wakeup_s"] * p1 + PREDICTED_S[1] * p1]


def _solution(acc: float, rates: list[float]):
    from eenn.augment.bundle import BaseModelInfo, ExitSpec, SegmentSpec, Solution
    from eenn.augment.hardware import load_profile

    lat, en = path_latency_s(), path_energy_j()
    metrics = {
        "split": "test", "n": 120,
        "base": {"accuracy": acc, "precision": acc, "recall": acc, "mean_macs": 3000, "mean_latency_s": 0.006,
                 "worst_latency_s": 0.006, "mean_energy_j": 2e-4},
        "eenn": {"accuracy": acc, "precision": acc, "recall": acc, "mean_macs": 2000,
                 "mean_latency_s": sum(r * t for r, t in zip(rates, lat)), "worst_latency_s": lat[-1],
                 "mean_energy_j": sum(r * e for r, e in zip(rates, en)),
                 "early_termination": rates[0], "termination_rates": rates},
    }
    return Solution(
        base_model=BaseModelInfo(source="tests", sha256="0" * 64, file="base.keras", input_shape=[8, 8, 1],
                                 num_classes=3, total_macs=3000),
        hardware=load_profile("psoc6").to_dict(),
        search={"objective": "weighted", "confidence": "max"},
        segments=[SegmentSpec(0, "cm0p", "c1", "c1", "segment_0.keras", 100, [8, 8, 4]),
                  SegmentSpec(1, "cm4", "c2", "final", "segment_1.keras", 200, [3])],
        exits=[ExitSpec(0, "c1", "cm0p", 0.5, "exit_0.keras", 12)],
        metrics=metrics,
    )


def hil_pair(tmp_path_factory) -> HilPair:
    """Built once per test session; treat as read-only (copy the project to change it)."""
    if "plain" in _built:
        return _built["plain"]
    from eenn.augment.bundle import write_bundle
    from eenn.codegen.reference import Int8Chain

    src = int8_project(tmp_path_factory, "plain")
    root = tmp_path_factory.mktemp("hil_pair")
    project = root / "project"
    shutil.copytree(src, project)
    fixture = np.load(project / "fixture_test.npz")
    x, y = fixture["x"], fixture["y"]
    chain = Int8Chain(project)
    cls, ex = chain.run_many(x)
    acc = float(np.mean(cls == y))
    rates = [float(np.mean(ex == k)) for k in range(2)]

    def populate(tmp: Path) -> None:
        np.savez(tmp / "test.npz", x=x, y=y)

    bundle = root / "bundle"
    bundle_hash = write_bundle(bundle, _solution(acc, rates), populate)
    manifest_path = project / "eenn" / "project.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["bundle_hash"] = bundle_hash
    manifest["energy"] = ENERGY
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    from eenn.codegen.manifest import REFERENCE_PATH, Reference, ReferenceSample, reference_json_bytes
    from eenn.codegen.reference import encode_scores

    samples = [ReferenceSample(cls=int(c), exit=int(e), label=int(t), scores_q=encode_scores(chain.run(xi).scores))
               for c, e, t, xi in zip(cls, ex, y, x)]
    reference = Reference(bundle_hash=bundle_hash, n=len(samples), accuracy=acc, termination_rates=rates,
                          early_termination=1.0 - rates[-1], samples=samples)
    (project / REFERENCE_PATH).write_bytes(reference_json_bytes(reference))
    _built["plain"] = HilPair(bundle=bundle, project=project, data=bundle / "test.npz", ref_class=cls,
                              ref_exit=ex, labels=y, bundle_hash=bundle_hash)
    return _built["plain"]


def hil_session(tmp_path_factory) -> Path:
    """A complete `eenn hil run` session on the virtual board (built once per test session)."""
    if "session" in _built:
        return _built["session"]
    from eenn.hil.run import RunOptions, run

    pair = hil_pair(tmp_path_factory)
    out = tmp_path_factory.mktemp("hil_session") / "session"
    run(RunOptions(port="virtual", out=out, bundle=pair.bundle, project=pair.project, progress=False, plots=False))
    _built["session"] = out
    return out


def project_of_another_bundle(project: Path, dst: Path, bundle_hash: str) -> Path:
    """A copy of `project` at `dst` whose eenn/project.json names the bundle `bundle_hash`."""
    shutil.copytree(project, dst)
    mf = dst / "eenn" / "project.json"
    raw = json.loads(mf.read_text())
    raw["bundle_hash"] = bundle_hash
    mf.write_text(json.dumps(raw))
    return dst
