"""Feature cache (memory and memmap), exit training (early abort, seeds) and the exit store."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eenn.augment.block_graph import build_block_graph
from eenn.augment.exits import ExitConfig, plan_exit
from eenn.augment.features import FeatureCache
from eenn.augment.layer_graph import build_layer_graph
from eenn.augment.selection import pareto_mask
from eenn.augment.training import ExitStore, TrainConfig, TrainedExit, exit_key, train_exit
from tests import models

CLASSES = 4


@pytest.fixture(scope="module")
def ecg():
    """A small 1-D model and its first candidate's exit plan."""
    model = models.ecg_fcn(num_classes=CLASSES, length=64)
    bg = build_block_graph(build_layer_graph(model))
    backbone = sum(b.macs for b in bg.blocks)
    plan = plan_exit(bg.candidates[1], bg.blueprint, CLASSES, backbone, ExitConfig(budget_share=0.3, width=16))
    return model, bg, plan


def test_memmap_cache_equals_memory_cache_and_the_model(ecg, tmp_path):
    import keras

    model, bg, _ = ecg
    locs = [c.after_layer for c in bg.candidates]
    rng = np.random.default_rng(0)
    inputs = {"train": rng.normal(size=(37, 64, 1)).astype(np.float32),
              "cal": rng.normal(size=(11, 64, 1)).astype(np.float32)}
    with FeatureCache(model, locs, inputs, batch_size=8) as mem:
        assert not mem.on_disk
        ref = {s: {l: np.array(a) for l, a in d.items()} for s, d in mem.features.items()}
        ref_probs = dict(mem.probs)
    with FeatureCache(model, locs, inputs, batch_size=8, memory_limit=1, directory=tmp_path) as disk:
        assert disk.on_disk and disk.nbytes > 1
        for s in inputs:
            for loc in locs:
                a = disk.features[s][loc]
                assert isinstance(a, np.memmap)
                assert a.dtype == (np.float16 if s == "train" else np.float32)  # training maps at half size
                np.testing.assert_array_equal(np.asarray(a), ref[s][loc])
            np.testing.assert_array_equal(disk.probs[s], ref_probs[s])
        assert list(tmp_path.iterdir())  # the memmap files live under the given directory
    assert not list(tmp_path.iterdir())  # and are removed on close
    probe = keras.Model(model.inputs, model.get_layer(locs[-1]).output)
    np.testing.assert_allclose(ref["cal"][locs[-1]], probe.predict(inputs["cal"], verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ref_probs["cal"], model.predict(inputs["cal"], verbose=0), rtol=1e-5, atol=1e-6)


def _informative(plan, n, seed):
    """Feature maps whose first CLASSES channels carry the label (plus noise)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES
    x = rng.normal(0, 0.3, size=(n,) + plan.input_shape).astype(np.float32)
    x[np.arange(n), :, y] += 2.0
    return x, y


def _train(plan, x, y, xc, yc, seed=0, epochs=8, **kw):
    teacher = np.eye(CLASSES, dtype=np.float32)[y] * 0.9 + 0.1 / CLASSES
    cfg = TrainConfig(epochs=epochs, batch_size=32, abort_min_steps=1, learning_rate=1e-2, **kw)
    return train_exit(plan, CLASSES, x, teacher, y, {"cal": xc, "test": xc[:10]}, yc, cfg, seed)


def test_uninformative_exit_is_abandoned_after_its_first_epoch(ecg):
    _, _, plan = ecg
    x = np.zeros((96,) + plan.input_shape, dtype=np.float32)  # every sample looks the same
    y = np.arange(96) % CLASSES
    trained, model = _train(plan, x, y, x[:40], y[:40], epochs=5)
    # identical inputs give one class for all: accuracy = that class's share <= chance (the majority share)
    assert trained.aborted and model is None and trained.epochs == 1 and trained.probs == {}
    assert "abandoned after epoch 1" in trained.notes[0]


def test_informative_exit_trains_and_is_reproducible(ecg):
    _, _, plan = ecg
    x, y = _informative(plan, 128, 0)
    xc, yc = _informative(plan, 40, 1)
    a, model = _train(plan, x, y, xc, yc)
    assert not a.aborted and a.epochs == 8 and a.cal_accuracy > 0.9
    assert a.probs["cal"].shape == (40, CLASSES) and a.probs["test"].shape == (10, CLASSES)
    np.testing.assert_allclose(a.probs["cal"].sum(1), 1.0, rtol=1e-5)
    # the exported model (standardisation and temperature folded in) gives the recorded softmax
    np.testing.assert_allclose(model.predict(xc, verbose=0), a.probs["cal"], rtol=1e-4, atol=1e-5)
    b, _ = _train(plan, x, y, xc, yc)
    np.testing.assert_array_equal(a.probs["cal"], b.probs["cal"])  # same seed: the same exit
    c, _ = _train(plan, x, y, xc, yc, seed=1)
    assert not np.array_equal(a.probs["cal"], c.probs["cal"])


def test_quant_aware_training_rounds_only_the_last_epochs(ecg, monkeypatch):
    """The int8 rounding is on for the last round(share · epochs) epochs only, each of them
    preceded by a range calibration on the calibration split; the exported exit has none of the
    training-only layers, and it still gives the recorded softmax."""
    import eenn.augment.training as training

    _, _, plan = ecg
    x, y = _informative(plan, 128, 0)
    xc, yc = _informative(plan, 40, 1)
    events = []
    real_active, real_calibrate = training.set_active, training.calibrate
    monkeypatch.setattr(training, "set_active", lambda m, on: (events.append(f"round {on}"), real_active(m, on)))
    monkeypatch.setattr(training, "calibrate", lambda m, run: (events.append("calibrate"), real_calibrate(m, run)))
    real_epoch = training._Batches.epoch
    monkeypatch.setattr(training._Batches, "epoch", lambda self: (events.append("epoch"), real_epoch(self))[1])
    a, model = _train(plan, x, y, xc, yc, epochs=5, quant_aware=0.4)
    assert events == ["epoch"] * 3 + ["calibrate", "round True", "epoch"] * 2
    assert not a.aborted and a.cal_accuracy > 0.9
    assert not any(l.name.endswith("_fakequant") for l in model.layers)
    np.testing.assert_allclose(model.predict(xc, verbose=0), a.probs["cal"], rtol=1e-4, atol=1e-5)
    events.clear()
    f, _ = _train(plan, x, y, xc, yc, epochs=5, quant_aware=0.0)
    assert events == ["epoch"] * 5
    assert not np.array_equal(a.probs["cal"], f.probs["cal"])  # the rounding changed what was learnt


def test_exit_store_round_trip_and_keys(ecg, tmp_path):
    _, _, plan = ecg
    store = ExitStore(tmp_path)
    key = exit_key("m" * 64, plan, "d" * 64, 0, TrainConfig(), {"copies": 1})
    assert store.load(key, plan) is None
    probs = {"cal": np.full((3, CLASSES), 0.25, np.float32), "test": np.full((2, CLASSES), 0.25, np.float32)}
    t = TrainedExit(plan.location, plan, probs, aborted=True, cal_accuracy=0.2, epochs=1, path=None)
    store.save(key, t, None)
    back = store.load(key, plan)
    assert back is not None and back.from_cache and back.aborted and back.epochs == 1
    np.testing.assert_array_equal(back.probs["cal"], probs["cal"])
    assert not [p for p in (tmp_path / "exits").iterdir() if p.name.startswith(".")]  # no temporary entry left
    (tmp_path / "exits" / key / "outputs.npz").write_bytes(b"garbage")
    assert store.load(key, plan) is None  # unreadable entries are trained again
    # every ingredient of the key matters
    others = [exit_key("n" * 64, plan, "d" * 64, 0, TrainConfig(), {"copies": 1}),
              exit_key("m" * 64, plan, "e" * 64, 0, TrainConfig(), {"copies": 1}),
              exit_key("m" * 64, plan, "d" * 64, 1, TrainConfig(), {"copies": 1}),
              exit_key("m" * 64, plan, "d" * 64, 0, TrainConfig(epochs=3), {"copies": 1}),
              exit_key("m" * 64, plan, "d" * 64, 0, TrainConfig(), {"copies": 2})]
    assert len({key, *others}) == 6
    assert ExitStore(None).load(key, plan) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=40))
def test_pareto_mask_keeps_exactly_the_undominated_points(points):
    macs = np.array([p[0] for p in points], dtype=float)
    acc = np.array([p[1] for p in points], dtype=float)
    keep = pareto_mask(macs, acc)
    for i in range(len(points)):
        dominated = any(macs[j] <= macs[i] and acc[j] >= acc[i] and (macs[j] < macs[i] or acc[j] > acc[i])
                        for j in range(len(points)))
        if dominated:
            assert not keep[i]
    # duplicates are kept once; every undominated (MACs, accuracy) pair is on the front
    front = {(macs[i], acc[i]) for i in np.flatnonzero(keep)}
    assert len(front) == int(keep.sum())
    for i in range(len(points)):
        if not any(macs[j] <= macs[i] and acc[j] >= acc[i] and (macs[j] < macs[i] or acc[j] > acc[i])
                   for j in range(len(points))):
            assert (macs[i], acc[i]) in front
