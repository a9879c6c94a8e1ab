"""`eenn search --ray`: exits trained on a local Ray cluster equal the in-process ones, and a lost
worker costs only the exits it had in flight. Skipped without Ray (an optional extra)."""
import numpy as np
import pytest

pytest.importorskip("ray", exc_type=ImportError)  # an optional extra: skip, never fail, without it

from eenn.augment.features import AugmentConfig  # noqa: E402
from eenn.augment.search import run_search  # noqa: E402
from eenn.augment.search_config import SearchConfig  # noqa: E402
from eenn.augment.training import TrainConfig  # noqa: E402
from eenn.errors import EennError  # noqa: E402
from tests.test_training import CONTROL_FACTOR, PROB_TOL, WEIGHT_TOL, _weights  # noqa: E402


def _config(cache, **kw):
    return SearchConfig(**{**dict(latency_bound_s=2.5, seed=0, cache_dir=cache, train=TrainConfig(epochs=3),
                                  augment=AugmentConfig(copies=1)), **kw})


def test_ray_local_cluster_trains_the_in_process_exits(trained_digits, tmp_path):
    import tempfile
    from pathlib import Path

    model, data = trained_digits
    here = run_search(model, data, _config(tmp_path / "a"))
    before = set(Path(tempfile.gettempdir()).glob("eenn-worker-*"))
    there = run_search(model, data, _config(tmp_path / "b", ray="local:2"))
    assert set(Path(tempfile.gettempdir()).glob("eenn-worker-*")) <= before  # the workers' maps are removed
    other = run_search(model, data, _config(tmp_path / "c", seed=1))
    assert set(here.exits) == set(there.exits) and there.stats["exits_trained"] == len(there.exits) >= 2
    for c, e in here.exits.items():
        r = there.exits[c]
        assert e.aborted == r.aborted
        if e.aborted:
            continue
        w = _weights(e.load_model())
        dist = float(np.linalg.norm(w - _weights(r.load_model())) / np.linalg.norm(w))
        probs = float(np.abs(e.probs["cal"] - r.probs["cal"]).max())
        print(f"exit {c}: Ray vs in-process weights {dist:.3g} apart, softmax {probs:.3g}")
        assert dist <= WEIGHT_TOL and probs <= PROB_TOL
        if c in other.exits and not other.exits[c].aborted:
            control = float(np.linalg.norm(w - _weights(other.exits[c].load_model())) / np.linalg.norm(w))
            assert control > CONTROL_FACTOR * WEIGHT_TOL, control
    assert there.chosen.arch == here.chosen.arch


def test_a_lost_worker_costs_only_its_exits_in_flight(trained_digits, tmp_path, monkeypatch):
    """The one worker process ends itself when given its second exit; the exits finished before are
    stored, and the re-run trains exactly the others."""
    import eenn.augment.distributed as distributed

    model, data = trained_digits
    real = distributed.train_on_ray
    monkeypatch.setattr(distributed, "train_on_ray", lambda *a, **k: real(*a, **k, die_after=1))
    stored = []
    with pytest.raises(EennError, match="Ray worker was lost"):
        run_search(model, data, _config(tmp_path / "c", ray="local:1"), on_exit_trained=stored.append)
    monkeypatch.setattr(distributed, "train_on_ray", real)
    again = run_search(model, data, _config(tmp_path / "c", ray="local:2"))
    assert 1 <= len(stored) < again.stats["exits_needed"]
    assert again.stats["exits_trained"] == again.stats["exits_needed"] - len(stored)


def test_streamed_exits_on_ray_equal_the_in_process_streamed_ones(trained_digits, tmp_path):
    """Maps that fit no cache stream on Ray too: each worker streams a group of exits of about
    equal MACs; every exit keeps the search seed's batch order, so the grouping changes nothing."""
    from eenn.augment.distributed import balanced_groups

    model, data = trained_digits
    here = run_search(model, data, _config(tmp_path / "a", feature_store="stream"))
    from eenn.augment.progress import Progress

    said: list[str] = []

    class Recording(Progress):
        def say(self, message: str) -> None:
            said.append(message)

    there = run_search(model, data, _config(tmp_path / "b", feature_store="stream", ray="local:2"),
                       progress=Recording(enabled=False))
    assert any("streamed in 2 group(s)" in m for m in said), said
    assert there.stats["feature_store"] == here.stats["feature_store"] == "stream"
    assert there.stats["exits_trained"] == len(there.exits) >= 2
    for c, e in here.exits.items():
        r = there.exits[c]
        assert e.aborted == r.aborted
        if not e.aborted:
            w = _weights(e.load_model())
            dist = float(np.linalg.norm(w - _weights(r.load_model())) / np.linalg.norm(w))
            assert dist <= WEIGHT_TOL and float(np.abs(e.probs["cal"] - r.probs["cal"]).max()) <= PROB_TOL, c
    assert there.chosen.arch == here.chosen.arch
    plans = {c: e.plan for c, e in here.exits.items()}
    groups = balanced_groups(plans, 2)
    assert sorted(c for g in groups for c in g) == sorted(plans) and len(groups) == min(2, len(plans))
