"""Scale: the int8 feature cache, the automatic storage choice and the streaming mode."""
import numpy as np
import pytest

from eenn.augment.block_graph import build_block_graph
from eenn.augment.exits import ExitConfig, leading_pooling, plan_exit, split_plan
from eenn.augment.features import FeatureCache, Int8Grid
from eenn.augment.fake_quant import round_int8
from eenn.augment.layer_graph import build_layer_graph
from eenn.augment.streaming import choose_storage, train_streaming
from eenn.augment.training import CachedMaps, Labels, TrainConfig, train_exit
from tests import models
from tests.test_training import CLASSES, _class_signals, assert_same_exit


@pytest.fixture(scope="module")
def ecg():
    import keras

    keras.utils.set_random_seed(0)
    model = models.ecg_fcn(num_classes=CLASSES, length=64)
    bg = build_block_graph(build_layer_graph(model))
    backbone = sum(b.macs for b in bg.blocks)
    plans = {i: plan_exit(c, bg.blueprint, CLASSES, backbone, ExitConfig(budget_share=0.3, width=16))
             for i, c in enumerate(bg.candidates[:2])}
    return model, bg, plans


def _heads(plans):
    return {p.location: split_plan(p, leading_pooling(p))[0] for p in plans.values() if leading_pooling(p)}


def test_int8_cache_is_a_quarter_of_float32_and_holds_the_boards_codes(ecg):
    """Every split's maps take 1 byte a value (float32: 4); dequantized they are the float maps
    rounded to the int8 grid of the calibration split's range, as `round_int8` (QAT) rounds them."""
    model, bg, _ = ecg
    locs = [c.after_layer for c in bg.candidates]
    rng = np.random.default_rng(0)
    inputs = {"train": rng.normal(size=(37, 64, 1)).astype(np.float32),
              "cal": rng.normal(size=(11, 64, 1)).astype(np.float32)}
    with FeatureCache(model, locs, inputs, batch_size=8) as ref, FeatureCache(model, locs, inputs, batch_size=8,
                                                                              int8=True) as q:
        for s in inputs:
            for loc in locs:
                a, f = q.features[s][loc], ref.features[s][loc]
                assert a.dtype == np.int8 and a.shape == f.shape
                assert a.nbytes * 4 == np.asarray(f, dtype=np.float32).nbytes
        float32_bytes = sum(np.asarray(a, dtype=np.float32).nbytes for d in ref.features.values() for a in d.values())
        assert q.nbytes * 4 == float32_bytes
        for loc in locs:
            g = q.grids[loc]
            assert g == Int8Grid.spanning(*ref.ranges["cal"][loc])
            lo, hi = min(0.0, ref.ranges["cal"][loc][0]), max(0.0, ref.ranges["cal"][loc][1])
            for s in inputs:
                want = np.asarray(round_int8(np.asarray(ref.features[s][loc], dtype=np.float32), lo, hi))
                got = g.dequantize_numpy(q.features[s][loc])
                # the training split's reference went through float16 first: a value at a rounding
                # boundary may land one step away; everything else within float noise
                off = np.abs(got - want) > 1e-5 * max(1.0, hi - lo)
                assert off.mean() <= (0.01 if s == "train" else 0.0), (s, loc, off.mean())
                assert np.abs(got - want).max() <= g.scale * 1.001
            np.testing.assert_array_equal(q.probs["cal"], ref.probs["cal"])


def test_the_storage_ladder_float_int8_disk_stream():
    shapes = {"a": (32, 16), "b": (8, 8)}  # 512 + 64 values a sample
    counts = {"train": 1000, "cal": 100, "test": 100}
    as_float = 1000 * 576 * 2 + 200 * 576 * 4
    as_int8 = 1200 * 576
    plan = choose_storage(shapes, counts, memory_limit=as_float, disk_limit=None, epochs=5)
    assert (plan.mode, plan.on_disk, plan.nbytes, plan.passes) == ("float", False, as_float, 1)
    plan = choose_storage(shapes, counts, memory_limit=as_float - 1, disk_limit=0, epochs=5)
    assert (plan.mode, plan.on_disk, plan.nbytes) == ("int8", False, as_int8)
    assert as_float / plan.nbytes == pytest.approx((1000 * 2 + 200 * 4) / 1200)
    plan = choose_storage(shapes, counts, memory_limit=as_int8 - 1, disk_limit=as_int8, epochs=5)
    assert (plan.mode, plan.on_disk) == ("int8", True)
    plan = choose_storage(shapes, counts, memory_limit=as_int8 - 1, disk_limit=as_int8 - 1, epochs=5)
    assert (plan.mode, plan.on_disk, plan.nbytes, plan.passes) == ("stream", False, 200 * 576, 6)
    assert "streaming" in plan.describe() and "6 times" in plan.describe()
    assert not plan.over_disk
    plan = choose_storage(shapes, counts, memory_limit=100, disk_limit=100, epochs=5)
    assert (plan.mode, plan.on_disk, plan.over_disk) == ("stream", True, True)
    assert "exceed --disk-limit" in plan.describe()
    assert choose_storage(shapes, counts, 1 << 40, None, 5, mode="stream").mode == "stream"
    assert choose_storage(shapes, counts, 0, 0, 5, mode="int8").on_disk


def test_streaming_trains_the_exits_the_int8_cache_trains(ecg):
    """One backbone pass per epoch, two exits stepping on it, gives each the exit that the int8
    cache trains with the same mini-batch order (within the WEIGHT_TOL of test_training); the
    same exit with another seed is the negative control."""
    model, bg, plans = ecg
    heads = _heads(plans)
    x, y = _class_signals(160, 0)
    xc, yc = _class_signals(48, 1)
    cfg = TrainConfig(epochs=8, batch_size=32, abort_min_steps=1, abort_margin=-1.0, learning_rate=1e-2,
                      quant_aware=0.5)  # no abort: both exits are compared to the end
    locs = [p.location for p in plans.values()]
    inputs = {"train": x, "cal": xc, "test": xc[:16]}
    with FeatureCache(model, locs, inputs, batch_size=16, heads=heads, int8=True) as cache:
        teacher = cache.probs["train"]

        def cached(c, seed):
            loc = plans[c].location
            return train_exit(plans[c], CachedMaps.of(cache, loc, pooled=loc in heads), Labels(CLASSES, y, teacher, yc),
                              cfg, seed, order_seed=0)

        ref = {c: cached(c, 0) for c in plans}
        control = {c: cached(c, 1) for c in plans}
    with FeatureCache(model, locs, {"cal": xc, "test": xc[:16]}, batch_size=16, heads=heads, int8=True) as cal:
        got = {c: (t, m) for c, t, m in train_streaming(model, plans, heads, x, y, cal, yc, CLASSES, False, cfg, 0,
                                                         batch_size=16)}
    for c in plans:
        assert not ref[c][0].aborted and not got[c][0].aborted
        assert ref[c][0].cal_accuracy > 0.6, ref[c][0].cal_accuracy  # trained on int8 maps, the exits learn
        assert_same_exit(ref[c], got[c], control[c])


class _Lines:
    def __init__(self):
        self.lines = []

    def say(self, message):
        self.lines.append(message)

    def bar(self, *a, **k):
        from eenn.augment.progress import Progress

        return Progress(enabled=False).bar(*a, **k)


def test_search_under_tight_limits_streams_and_says_so(trained_digits, tmp_path):
    """With neither memory nor disk for the maps, the search streams (said in one line, with the
    passes), trains every needed exit and stores them under their own keys: a re-run trains none."""
    from eenn.augment.features import AugmentConfig
    from eenn.augment.search import run_search
    from eenn.augment.search_config import SearchConfig

    model, data = trained_digits
    cfg = dict(latency_bound_s=2.5, seed=0, cache_dir=tmp_path / "c", train=TrainConfig(epochs=3),
               augment=AugmentConfig(copies=1), memory_limit=1 << 10, disk_limit=1 << 10)
    lines = _Lines()
    res = run_search(model, data, SearchConfig(**cfg), progress=lines)
    assert res.stats["feature_store"] == "stream" and res.stats["backbone_passes"] == 4
    assert res.stats["exits_trained"] == res.stats["exits_needed"] > 0
    said = [l for l in lines.lines if l.startswith("features: streaming")]
    assert len(said) == 1 and "4 times" in said[0], lines.lines
    again = run_search(model, data, SearchConfig(**cfg))
    assert again.stats["exits_trained"] == 0
    roomy = run_search(model, data, SearchConfig(**{**cfg, "memory_limit": 1 << 30}))
    assert roomy.stats["feature_store"] == "float" and roomy.stats["exits_trained"] == roomy.stats["exits_needed"]


@pytest.mark.parametrize("spec", ["local:0", "local:x", ""])
def test_bad_ray_addresses_fail_before_any_work(spec):
    from eenn.augment.search_config import SearchConfig
    from eenn.errors import EennError

    with pytest.raises(EennError, match="--ray"):
        SearchConfig(ray=spec, cache_dir=None).checked()


def test_streamed_epochs_run_the_backbone_only_as_deep_as_the_exits_still_training(ecg, monkeypatch):
    """Pass 1 computes maps, ranges and the teacher; the epochs only the maps of the exits still
    training, rebuilt without an abandoned exit's location (and so without the layers after the
    deepest one left)."""
    from eenn.augment import streaming
    from eenn.augment.features import feature_extractor
    from eenn.augment.training import ExitRun

    model, bg, plans = ecg
    heads = _heads(plans)
    locs = [p.location for p in plans.values()]
    calls = []

    def recording(model, locations, heads=None, maps_only=False):
        calls.append((list(locations), maps_only))
        return feature_extractor(model, locations, heads, maps_only)

    real_end = ExitRun.end_epoch

    def deepest_gives_up(self, epoch):
        return real_end(self, epoch) and self.plan.location != locs[-1]

    monkeypatch.setattr(streaming, "feature_extractor", recording)
    monkeypatch.setattr(ExitRun, "end_epoch", deepest_gives_up)
    x, y = _class_signals(64, 0)
    xc, yc = _class_signals(32, 1)
    cfg = TrainConfig(epochs=3, batch_size=32, abort_min_steps=1, abort_margin=-1.0)
    with FeatureCache(model, locs, {"cal": xc, "test": xc[:16]}, batch_size=16, heads=heads, int8=True) as cal:
        done = [c for c, _, _ in train_streaming(model, plans, heads, x, y, cal, yc, CLASSES, False, cfg, 0,
                                                 batch_size=16)]
    assert sorted(done) == sorted(plans)
    assert calls == [(locs, False), (locs, True), (locs[:-1], True)]
    shallow = feature_extractor(model, locs[:1], heads, maps_only=True)[0]
    assert len(shallow.layers) < len(feature_extractor(model, locs, heads)[0].layers)
