"""`eenn analyze` end to end through the CLI, including its error exits."""
import json

import pytest
from click.testing import CliRunner

from eenn.cli import main
from tests import models


@pytest.fixture(scope="module")
def ecg_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "ecg.keras"
    models.ecg_fcn().save(path)
    return path


def run(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_json_is_a_stable_interface(ecg_model):
    r = run("analyze", ecg_model, "--hw", "psoc6", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["total_macs"] == models.independent_macs(models.ecg_fcn())
    assert [c["after_layer"] for c in report["candidates"]] == ["pool0", "pool1"]
    for c in report["candidates"]:
        assert set(c) >= {"after_layer", "macs_before", "shape"}
    assert report["blocks"][-1]["cumulative_macs"] + report["head"]["macs"] == report["total_macs"]
    assert set(report["blocks"][0]["latency_s"]) == {"cm0p", "cm4"}


def test_table_and_plot(ecg_model, tmp_path):
    png = tmp_path / "macs.png"
    r = run("analyze", ecg_model, "--plot", png)
    assert r.exit_code == 0, r.output
    assert "candidate exit locations (2" in r.output and "GlobalAveragePooling1D → Dense" in r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ds_cnn_table(ds_cnn_path):
    r = run("analyze", ds_cnn_path, "--hw", "psoc6")
    assert r.exit_code == 0, r.output
    assert "28,327,812 MACs" in r.output


@pytest.mark.parametrize("args, message", [
    (["analyze", "missing.keras"], "model file 'missing.keras' not found"),
    (["analyze", "{bad}"], "not a Keras model: an .h5 file is HDF5"),
    (["analyze", "{model}", "--hw", "nope"], "hardware profile 'nope' not found"),
    (["analyze", "{model}", "--hw", "{hw}"], "missing field 'wakeup_s'"),
])
def test_bad_inputs_exit_2(tmp_path, ecg_model, args, message):
    bad = tmp_path / "bad.h5"
    bad.write_text("garbage")
    hw = tmp_path / "hw.toml"
    hw.write_text('name = "x"\n[[processor]]\nname = "a"\ncore = "m0"\nclock_hz = 1e6\nmacs_per_s = 1e6\n'
                  'sram_bytes = 1\nflash_bytes = 1\nactive_w = 0.1\nsleep_w = 0.0\n')
    args = [a.format(bad=bad, model=ecg_model, hw=hw) for a in args]
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


def test_unsupported_layer_exit_2(tmp_path):
    import keras

    inp = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(2, 3)(inp)
    x = keras.layers.Conv3D(1, 1, name="vox")(keras.layers.Reshape((6, 6, 2, 1))(x))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    path = tmp_path / "m.keras"
    model.save(path)
    r = run("analyze", path)
    assert r.exit_code == 2 and "'vox' (Conv3D)" in r.output


def test_a_fresh_process_keeps_tensorflow_start_up_lines_off_stderr(ecg_model):
    """`eenn analyze` in a new process: TensorFlow's C++ start-up notices (oneDNN, CUDA drivers,
    cuInit) are dropped (eenn/quiet_tf.py); what the user must see is still there."""
    import subprocess
    import sys

    cmd = [sys.executable, "-c", "from eenn.cli import main; main()", "analyze", str(ecg_model), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for noise in ("oneDNN custom operations", "Could not find cuda drivers", "cuInit", "absl::InitializeLog"):
        assert noise not in r.stderr, r.stderr
    assert json.loads(r.stdout)["total_macs"] > 0
    bad = subprocess.run(cmd[:4] + [str(ecg_model) + ".missing"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "not found" in bad.stderr


def test_noise_filter_keeps_everything_else():
    from eenn.quiet_tf import filter_noise

    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. You may see ...\n"
            "I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your machine\n"
            "E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"
            "E0000 00:00:1.0 1 util.cc:131] oneDNN supports DT_HALF only on platforms with AVX-512. Falling back\n"
            "2026-12-01 W tensorflow/core/framework/op_kernel.cc:1] OP_REQUIRES failed: out of memory\n"
            "Traceback (most recent call last):\n")
    assert filter_noise(text) == ("2026-12-01 W tensorflow/core/framework/op_kernel.cc:1] OP_REQUIRES failed: "
                                  "out of memory\nTraceback (most recent call last):\n")


def _regression_model():
    import keras

    inp = keras.Input((16, 1))
    x = keras.layers.Conv1D(4, 3, activation="relu")(inp)
    return keras.Model(inp, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(x)))


def _lambda_model():
    import keras

    inp = keras.Input((16, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double_it")(inp)
    x = keras.layers.Conv1D(4, 3, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling1D()(x)))


@pytest.mark.parametrize("name, make, expected", [
    ("text.keras", "text", ["not a Keras model: a .keras file is a zip archive", "this is a text file"]),
    ("text.h5", "text", ["not a Keras model: an .h5 file is HDF5", "this is a text file"]),
    ("regression.keras", "regression", ["not a classifier", "at least 2 output classes (softmax or logits)"]),
    ("regression.h5", "regression", ["not a classifier", "at least 2 output classes"]),
    ("lambda.keras", "lambda", ["'double_it' is a Lambda layer", "replace it with built-in Keras layers"]),
    ("lambda.h5", "lambda", ["'double_it' is a Lambda layer", "replace it with built-in Keras layers"]),
])
def test_a_model_eenn_cannot_use_is_one_clear_error(tmp_path, name, make, expected):
    path = tmp_path / name
    if make == "text":
        path.write_text("this is not a model\n")
    else:
        (_regression_model() if make == "regression" else _lambda_model()).save(path)
    r = run("analyze", path)
    assert r.exit_code == 2, r.output
    assert str(path) in r.output and all(e in r.output for e in expected), r.output
    assert "Traceback" not in r.output and "safe_mode" not in r.output and "File not found" not in r.output
    assert "labels must be" not in r.output and len(r.output.strip().splitlines()) == 1
