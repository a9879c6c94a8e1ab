"""Block graph: fusing, residual collapse, candidate exit locations, blueprint."""
import networkx as nx

from eenn.augment.block_graph import build_block_graph
from eenn.augment.layer_graph import build_layer_graph
from eenn.augment.model_io import load_model
from tests import models


def blocks_of(model):
    return build_block_graph(build_layer_graph(model))


def test_ds_cnn_candidates_and_blueprint(ds_cnn_path):
    bg = blocks_of(load_model(ds_cnn_path))
    after = [c.after_layer for c in bg.candidates]
    assert after[0] == "conv_1_relu"  # the first convolution's output
    for i in range(1, 5):  # each depthwise-separable block's output
        assert f"conv_ds_{i}_pw_relu" in after
    assert bg.blueprint.class_names == ["AveragePooling2D", "Flatten", "Dense", "Softmax"]
    assert [b.kind for b in bg.blocks] == ["conv"] + ["dwsep"] * 5
    assert bg.total_macs == bg.layer_graph.total_macs
    # macs_before is the cumulative backbone cost up to the location
    assert bg.candidates[1].macs_before == bg.blocks[0].macs + bg.blocks[1].macs


def test_every_layer_belongs_to_exactly_one_block():
    for build in (models.cnn2d, models.ecg_fcn, models.small_resnet, models.sequential_1d):
        bg = blocks_of(build())
        layers = [n for b in bg.blocks + [bg.head] for n in b.layers]
        lg = bg.layer_graph
        assert sorted(layers) == sorted(set(lg.graph) - {lg.input_name})


def test_no_candidate_inside_a_residual_block():
    bg = blocks_of(models.small_resnet())
    lg = bg.layer_graph
    residual = [b for b in bg.blocks if b.kind == "residual"]
    assert len(residual) == 3
    inside = {n for b in residual for n in b.layers[:-1]}
    after = [c.after_layer for c in bg.candidates]
    assert not inside & set(after)
    # every candidate cuts the graph: removing it disconnects input from output
    for layer in after:
        g = lg.graph.copy()
        g.remove_node(layer)
        assert not nx.has_path(g, lg.input_name, lg.output_name), layer
    assert "r0_out" in after and "r1_out" in after  # outputs of the identity blocks
    assert bg.blueprint.class_names == ["GlobalAveragePooling2D", "Dense"]


def test_residual_block_is_a_single_node():
    bg = blocks_of(models.small_resnet())
    res0 = next(b for b in bg.blocks if "r0_add" in b.layers)
    assert set(res0.layers) == {"r0_a", "r0_a_relu", "r0_b", "r0_add", "r0_out"}
    assert res0.macs == sum(bg.layer_graph.info(n).macs for n in res0.layers)
    # the block graph itself is a chain: input → blocks → head
    assert nx.is_directed_acyclic_graph(bg.graph)
    assert all(bg.graph.out_degree(n) <= 1 for n in bg.graph)


def test_post_processing_and_pooling_fuse_into_compute_block():
    bg = blocks_of(models.cnn2d())
    first = bg.blocks[0]
    assert first.layers == ("c1", "c1_bn", "c1_relu", "c1_pool")
    assert bg.candidates[0].after_layer == "c1_pool"
    dwsep = bg.blocks[1]
    assert dwsep.kind == "dwsep" and dwsep.layers == ("ds_dw", "ds_dw_relu", "ds_pw", "ds_pw_relu")


def test_one_dimensional_model():
    bg = blocks_of(models.ecg_fcn())
    assert [c.after_layer for c in bg.candidates] == ["pool0", "pool1"]
    assert [c.shape for c in bg.candidates] == [(64, 8), (32, 16)]
    assert bg.blueprint.class_names == ["GlobalAveragePooling1D", "Dense"]
    assert bg.blueprint.input_shape == (32, 16)
    assert bg.num_classes == 6
