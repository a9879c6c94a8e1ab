"""Exit construction (the rule) and the folds that make a trained exit a plain deployable model."""
import numpy as np
import pytest

from eenn.augment.block_graph import build_block_graph
from eenn.augment.exits import ExitConfig, ExitPlan, build_exit, plan_exit
from eenn.augment.fake_quant import is_fake_quant
from eenn.augment.layer_graph import build_layer_graph
from eenn.augment.model_io import load_model
from eenn.augment.export_fold import fit_temperature, fold_into_export, scale_last_layer
from tests import models


def plans(model, config=ExitConfig()):
    bg = build_block_graph(build_layer_graph(model))
    backbone = sum(b.macs for b in bg.blocks)
    return bg, backbone, [plan_exit(c, bg.blueprint, bg.num_classes, backbone, config) for c in bg.candidates]


def test_ds_cnn_exits_adapt_the_fixed_pooling(ds_cnn_path):
    bg, backbone, ps = plans(load_model(ds_cnn_path))
    for c, p in zip(bg.candidates, ps):
        names = [l["class_name"] for l in p.layers]
        assert names[-4:] == ["AveragePooling2D", "Flatten", "Dense", "Softmax"]  # the blueprint, kept
        m = build_exit(p)
        # the blueprint's 13×5 pool became whatever makes this map 1×1: a global pool over the
        # bottleneck's channels (64, or fewer where the budget made the rule halve the width)
        width = [l["config"]["filters"] for l in p.layers if l["class_name"] == "Conv2D"][-1]
        assert 16 <= width <= 64
        assert tuple(m.get_layer(index=len(m.layers) - 4).output.shape[1:]) == (1, 1, width)
        assert m.output.shape[-1] == 12
        assert p.cost.macs <= 0.05 * backbone and not p.over_budget
    # every map is pooled before the 1×1 conv (on 25×10 or 13×5 × 276 channels it would exceed 5 %)
    assert all([l["class_name"] for l in p.layers][:2] == ["AveragePooling2D", "Conv2D"] for p in ps)
    # the 25×10 map, four times larger, also had to give up width; the 13×5 maps keep 64 channels
    assert ps[0].layers[1]["config"]["filters"] == 32
    assert all(p.layers[1]["config"]["filters"] == 64 for p in ps[1:])
    # a looser budget keeps the full width and skips the pooling on the 13×5 maps
    _, _, loose = plans(load_model(ds_cnn_path), ExitConfig(budget_share=0.2))
    assert loose[1].layers[0]["class_name"] == "Conv2D" and loose[1].layers[0]["config"]["filters"] == 64


def test_budget_drives_downsampling_1d_and_2d():
    over = 0
    for model in (models.ecg_fcn(), models.cnn2d(), models.small_resnet()):
        for share in (0.3, 0.05, 0.01, 0.0002):
            bg, backbone, ps = plans(model, ExitConfig(budget_share=share))
            over += sum(p.over_budget for p in ps)
            for p in ps:
                if p.over_budget:  # only when the rule has nothing left to shrink
                    first = p.layers[0]
                    pooled = ([max(1, -(-d // f)) for d, f in zip(p.input_shape[:-1], first["config"]["pool_size"])]
                              if first["class_name"].startswith("AveragePooling") else list(p.input_shape[:-1]))
                    widths = [l["config"]["filters"] for l in p.layers if l["class_name"].startswith("Conv")]
                    assert all(d == 1 for d in pooled) and min(widths, default=0) <= max(16, bg.num_classes), p.describe()
                built = build_exit(p)
                assert built.output.shape[-1] == bg.num_classes
                # the plan's cost is the built exit's, and within budget unless the rule ran out
                assert build_layer_graph(built).total_macs == p.cost.macs
                assert p.over_budget or p.cost.macs <= share * backbone
            if share == 0.3:
                assert not any(p.over_budget for p in ps)  # a generous budget is always met
        # a tighter budget never gives a more expensive exit
        _, _, loose = plans(model, ExitConfig(budget_share=0.3))
        _, _, tight = plans(model, ExitConfig(budget_share=0.01))
        assert all(t.cost.macs <= l.cost.macs for t, l in zip(tight, loose))
    assert over > 0  # the smallest budget is below what the rule can reach: the branch above ran


def test_flatten_blueprint_and_blueprint_only_exits():
    bg, backbone, ps = plans(models.sequential_1d(), ExitConfig(budget_share=0.5, width=0))
    names = [l["class_name"] for l in ps[0].layers]
    assert names[-3:] == ["Flatten", "Dense", "Softmax"] and "Conv1D" not in names
    # Dense(softmax) was split so that the logits can be read before the Softmax
    assert ps[0].layers[-2]["config"]["activation"] == "linear"


def _randomise(model, rng):
    for layer in model.layers:
        if layer.weights and not is_fake_quant(layer):
            new = [rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()]
            if type(layer).__name__ == "BatchNormalization":
                new[3] = np.abs(new[3]) + 0.5  # variance
            layer.set_weights(new)


@pytest.mark.parametrize("pre_pooled,fake_quant", [(False, False), (True, False), (True, True)])
def test_folded_export_equals_the_training_model(pre_pooled, fake_quant):
    import keras

    bg, backbone, ps = plans(models.cnn2d())
    plan = ps[0]
    assert plan.layers[0]["class_name"] == "AveragePooling2D"
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(16,) + plan.input_shape).astype(np.float32)
    mean = rng.normal(size=plan.input_shape[-1])
    std = rng.uniform(0.5, 2.0, size=plan.input_shape[-1])
    tplan = plan
    if pre_pooled:  # as in training on the cache: the leading pooling applied once, outside
        pool = build_exit(ExitPlan(plan.location, plan.input_shape, plan.layers[:1], plan.cost, False), name="pool")
        tplan = ExitPlan(plan.location, tuple(pool.output.shape[1:]), plan.layers[1:], plan.cost, False)
    train, _ = build_exit(tplan, name="t", with_logits=True, training_bn=True, fake_quant=fake_quant)
    _randomise(train, rng)
    assert any(is_fake_quant(l) for l in train.layers) == fake_quant
    inp = keras.Input(tplan.input_shape)
    full = keras.Model(inp, train(keras.layers.Normalization(axis=-1, mean=mean, variance=std ** 2)(inp)))
    export = build_exit(plan, name="e")
    fold_into_export(train, export, (mean, std))
    feed = pool.predict(x, verbose=0) if pre_pooled else x
    np.testing.assert_allclose(export.predict(x, verbose=0), full.predict(feed, verbose=0), rtol=1e-4, atol=1e-5)
    assert not any("norm" in l.name or "bnfold" in l.name or is_fake_quant(l) for l in export.layers)


def test_temperature_is_recovered_and_folded():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(20000, 5)) * 2
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=row) for row in p])  # labels drawn from softmax(z): calibrated at T = 1
    assert fit_temperature(3.0 * z, y) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(z, y) == pytest.approx(1.0, rel=0.05)
    bg, backbone, ps = plans(models.cnn2d())
    model, logits = build_exit(ps[0], with_logits=True)
    x = rng.normal(size=(4,) + ps[0].input_shape).astype(np.float32)
    before = logits.predict(x, verbose=0)
    scale_last_layer(model, 0.5)
    np.testing.assert_allclose(logits.predict(x, verbose=0), before * 0.5, rtol=1e-5, atol=1e-6)
