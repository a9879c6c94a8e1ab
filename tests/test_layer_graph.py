"""Layer graph: MAC counts, shapes, int8 bytes, model loading and its errors."""
import numpy as np
import pytest

from eenn.augment.layer_graph import build_layer_graph
from eenn.augment.model_io import load_model
from eenn.errors import EennError
from tests import models


def test_ds_cnn_total_macs_match_independent_count(ds_cnn_path):
    model = load_model(ds_cnn_path)
    lg = build_layer_graph(model)
    independent = models.independent_macs(model)
    assert abs(lg.total_macs - independent) / independent < 0.005
    assert lg.total_params == 419_808
    assert lg.input_shape == (49, 10, 1) and lg.output_shape == (12,)


@pytest.mark.parametrize("build", [models.cnn2d, models.ecg_fcn, models.small_resnet, models.sequential_1d])
def test_macs_equal_kernel_shape_count(build):
    model = build()
    lg = build_layer_graph(model)
    assert lg.total_macs == models.independent_macs(model) > 0
    assert lg.total_params == model.count_params()


def test_conv_macs_formula_by_hand():
    import keras

    inp = keras.Input((10, 10, 3))
    out = keras.layers.Conv2D(4, (3, 3), strides=2, padding="valid", name="c")(inp)  # → 4×4×4
    lg = build_layer_graph(keras.Model(inp, out))
    assert lg.info("c").macs == 4 * 4 * 4 * 3 * 3 * 3
    assert lg.info("c").param_bytes == 3 * 3 * 3 * 4 + 4 * 4  # int8 kernel + int32 bias
    assert lg.info("c").activation_bytes == 4 * 4 * 4


def test_folded_batchnorm_costs_no_bytes():
    lg = build_layer_graph(models.ecg_fcn())
    assert lg.info("bn0").param_bytes == 0
    assert lg.info("bn0").params == 4 * 8


def test_nodes_are_connected_in_model_order():
    lg = build_layer_graph(models.small_resnet())
    order = lg.topological()
    assert order[0] == "img" and order[-1] == "fc"
    assert set(lg.graph.predecessors("r0_add")) == {"stem_relu", "r0_b"}


def test_sequential_model_is_read():
    lg = build_layer_graph(models.sequential_1d())
    assert lg.topological()[1:] == ["s_conv", "s_sep", "s_flat", "s_fc"]


def test_unsupported_layer_is_named_not_skipped():
    import keras

    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="ok_conv")(inp)
    x = keras.layers.Conv3D(2, 1, name="weird")(keras.layers.Reshape((6, 6, 4, 1))(x))
    out = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    with pytest.raises(EennError, match=r"'weird' \(Conv3D\)"):
        build_layer_graph(keras.Model(inp, out))


def test_missing_model_file(tmp_path):
    with pytest.raises(EennError, match="not found"):
        load_model(tmp_path / "nope.h5")


def test_non_keras_file(tmp_path):
    bad = tmp_path / "model.h5"
    bad.write_text("this is not HDF5")
    with pytest.raises(EennError, match="not a Keras model"):
        load_model(bad)


def test_unknown_extension(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\0")
    with pytest.raises(EennError, match="expected .keras, .h5"):
        load_model(bad)


def test_keras_and_h5_files_load_the_same_graph(tmp_path):
    model = models.ecg_fcn()
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    a = build_layer_graph(load_model(tmp_path / "m.keras"))
    b = build_layer_graph(load_model(tmp_path / "m.h5"))
    assert a.total_macs == b.total_macs == models.independent_macs(model)


def test_savedmodel_directory_from_keras2(tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    m = tf_keras.Sequential([tf_keras.Input((16, 1)), tf_keras.layers.Conv1D(4, 3, activation="relu"),
                             tf_keras.layers.GlobalAveragePooling1D(), tf_keras.layers.Dense(3, activation="softmax")])
    m.save(str(tmp_path / "sm"), save_format="tf")
    lg = build_layer_graph(load_model(tmp_path / "sm"))
    assert lg.total_macs == 14 * 4 * 3 + 4 * 3
    x = np.zeros((1, 16, 1), np.float32)
    assert lg.model(x).shape == (1, 3)


def test_savedmodel_without_keras_metadata_is_refused(tmp_path):
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(EennError, match="without Keras metadata"):
        load_model(tmp_path / "sm")
