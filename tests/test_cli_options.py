"""The CLI's own behaviour: option errors at once (before TensorFlow is imported), Ctrl-C as exit
code 130 with one line and no traceback."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields, replace

import pytest
from click.testing import CliRunner

from eenn.cli import main

# (command line, the option click must name). MODEL and DATA need not exist: the options fail first.
BAD_OPTIONS = [
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--latency", "0"], "--latency"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--latency", "-1"], "--latency"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--w", "2"], "--w"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--max-drop", "-1"], "--max-drop"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--epochs", "0"], "--epochs"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--qat", "1.5"], "--qat"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--exit-budget", "0"], "--exit-budget"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--exit-budget", "1"], "--exit-budget"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--correction", "0"], "--correction"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--thresholds", "1"], "--thresholds"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--augment", "-1"], "--augment"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--exit-width", "-8"], "--exit-width"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--seed", "-1"], "--seed"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--memory-limit", "-1"], "--memory-limit"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--disk-limit", "-1"], "--disk-limit"),
    (["search", "m.keras", "--data", "d.npz", "--out", "o", "--features", "fp8"], "--features"),
    (["deploy", "--example", "digits", "--out", "o", "--latency", "0"], "--latency"),
    (["deploy", "--example", "digits", "--out", "o", "--w", "2"], "--w"),
    (["deploy", "--example", "digits", "--out", "o", "--max-drop", "101"], "--max-drop"),
    (["deploy", "--example", "digits", "--out", "o", "--epochs", "0"], "--epochs"),
    (["deploy", "--example", "digits", "--out", "o", "--qat", "-0.1"], "--qat"),
    (["deploy", "--example", "digits", "--out", "o", "--exit-budget", "2"], "--exit-budget"),
    (["deploy", "--example", "digits", "--out", "o", "--limit", "0"], "--limit"),
    (["deploy", "--example", "digits", "--out", "o", "--seed", "-3"], "--seed"),
    (["deploy", "--example", "digits", "--out", "o", "--features", "fp8"], "--features"),
    (["deploy", "--example", "digits", "--out", "o", "--disk-limit", "-1"], "--disk-limit"),
    (["deploy", "--example", "digits", "--out", "o", "--thresholds", "1"], "--thresholds"),
]

_PROBE = """
import json, sys
from click.testing import CliRunner
from eenn.cli import main
results = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(main, args)
    results.append([r.exit_code, r.output])
print(json.dumps({"results": results, "tensorflow": "tensorflow" in sys.modules}))
"""


def test_option_errors_come_before_tensorflow_is_imported(tmp_path):
    """Every bad value is click's usage error (exit 2, naming the option), in a fresh interpreter
    that never imports TensorFlow (its start-up alone takes ~20 s)."""

    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps([a for a, _ in BAD_OPTIONS])],
                         capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path)
    seconds = time.monotonic() - start
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert not got["tensorflow"], "an option error imported TensorFlow"
    for (args, option), (code, text) in zip(BAD_OPTIONS, got["results"]):
        assert code == 2, (args, code, text)
        assert f"Invalid value for '{option}'" in text and "Usage:" in text, (args, text)
    assert seconds < 30, f"{len(BAD_OPTIONS)} option errors took {seconds:.1f} s"


@pytest.mark.parametrize("command, target, resumable", [
    (["deploy", "--example", "digits", "--out", "OUT"], "eenn.deploy.deploy", True),
    (["search", "m.keras", "--data", "d.npz", "--out", "OUT"], "eenn.augment.search.run_search", True),
    (["search", "m.keras", "--data", "d.npz", "--out", "OUT", "--no-cache"], "eenn.augment.search.run_search", False),
    (["report", "BUNDLE", "--out", "OUT/report.html"], "eenn.report.write_report", False),
])
def test_ctrl_c_exits_130_with_one_line(command, target, resumable, tmp_path, monkeypatch):
    import importlib

    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, _interrupted)
    monkeypatch.setattr("eenn.quiet_tf.import_tensorflow", lambda: None)  # the patched step needs none
    (tmp_path / "BUNDLE").mkdir()
    args = [a.replace("OUT", str(tmp_path / "out")).replace("BUNDLE", str(tmp_path / "BUNDLE")) for a in command]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 130, (r.exit_code, r.output, r.exception)
    lines = r.output.strip().splitlines()
    assert lines[-1] == ("interrupted; run the same command again to continue" if resumable else "interrupted")
    assert "Traceback" not in r.output and "Aborted" not in r.output


def _interrupted(*args, **kwargs):
    raise KeyboardInterrupt


def test_sigint_during_a_long_step_exits_130_without_a_traceback(tmp_path):
    """A real Ctrl-C (SIGINT), here while `eenn deploy` is still importing TensorFlow."""
    probe = "import sys; sys.stderr.write('ready\\n'); sys.stderr.flush(); from eenn.cli import main; main()"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", probe, "deploy", "--example", "digits", "--out", str(tmp_path / "o")],
                            cwd=tmp_path,
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr.readline().strip() == "ready"
        time.sleep(1.5)  # the CLI is loaded and parsing is done: TensorFlow's import takes far longer
        assert proc.poll() is None, "the command ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "interrupted; run the same command again to continue"


def test_search_and_deploy_declare_the_same_search_options():
    """One declaration: the same names, types, defaults and help texts in both commands."""
    from eenn.augment.commands import search
    from eenn.deploy_command import deploy

    def described(cmd, own):
        return {p.name: (p.opts, p.type.to_info_dict(), p.default, p.help) for p in cmd.params if p.name not in own}

    shared = described(search, {"model", "data", "out", "force", "as_json", "quiet"})
    assert described(deploy, {"model", "data", "example", "kit", "port", "limit", "out", "force", "as_json",
                              "quiet"}) == shared
    assert {"memory_limit", "disk_limit", "feature_store", "ray", "measured", "steps"} <= set(shared)


def test_option_defaults_are_the_config_defaults():
    """`eenn search` without options runs SearchConfig() (its defaults are the only ones)."""
    from eenn.augment.commands import search_config
    from eenn.augment.search_config import SearchConfig

    assert search_config() == SearchConfig()
    assert search_config(epochs=3, copies=0) == SearchConfig(
        train=replace(SearchConfig().train, epochs=3), augment=replace(SearchConfig().augment, copies=0))
    assert search_config(no_cache=True).cache_dir is None
    assert search_config(max_drop=2.0, memory_limit=1).max_accuracy_drop == pytest.approx(0.02)
    with pytest.raises(TypeError, match="not search options: epoch"):
        search_config(epoch=3)


def test_every_config_field_is_an_answer_or_a_run_setting():
    """The deploy's cache key is SearchConfig.answer_key(): a new field must say whether it
    changes the answer, or an old bundle would be served for a search it does not match."""
    from eenn.augment.search_config import ANSWER_FIELDS, RUN_FIELDS, SearchConfig

    names = [f.name for f in fields(SearchConfig)]
    assert not set(ANSWER_FIELDS) & set(RUN_FIELDS)
    assert sorted(ANSWER_FIELDS + RUN_FIELDS) == sorted(names)
    a, b = SearchConfig(), SearchConfig(seed=1)
    assert a.answer_key() != b.answer_key()
    assert SearchConfig(ray="local:2", batch_size=8).answer_key() == a.answer_key()
    assert json.loads(json.dumps(a.answer_key())) == a.answer_key()  # plain JSON, nested configs included


def test_deploy_hands_the_search_options_to_the_search(monkeypatch, tmp_path):
    """`eenn deploy --ray local:2 --features int8 ...` reaches the SearchConfig the deploy runs."""
    import eenn.deploy

    got = []

    def capture(opts, say):
        got.append(opts)
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(eenn.deploy, "deploy", capture)
    r = CliRunner().invoke(main, ["deploy", "--example", "digits", "--out", str(tmp_path / "o"), "--ray", "local:2",
                                  "--features", "int8", "--memory-limit", "5", "--disk-limit", "7", "--epochs", "3",
                                  "--max-drop", "2", "--kit", "CY8CPROTO-062-4343W"])
    assert r.exit_code == 130, r.output
    (opts,) = got
    c = opts.search
    assert (c.ray, c.feature_store, c.memory_limit, c.disk_limit) == ("local:2", "int8", 5 << 20, 7 << 20)
    assert c.train.epochs == 3 and c.max_accuracy_drop == pytest.approx(0.02) and opts.kit == "CY8CPROTO-062-4343W"
