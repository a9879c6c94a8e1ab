"""TensorFlow's start-up chatter kept off the user's terminal.

TensorFlow 2.21 writes, from C++ and before its logging is set up (so `TF_CPP_MIN_LOG_LEVEL`
does not reach them), a handful of lines on every start: the oneDNN notice, "Could not find
cuda drivers", the CPU-feature guard and, at the first operation, "failed call to cuInit". On
a CPU-only machine they are noise that buries eenn's own progress. `import_tensorflow()` does the
import and the device start-up with file descriptor 2 captured, drops exactly those lines and
writes everything else back (a real error still shows).
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Any

NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cpu_feature_guard\.cc:\d+\]|^To enable the following instructions:"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|cuda_executor\.cc:\d+\]|cuda_diagnostics\.cc:\d+\]")


def filter_noise(text: str) -> str:
    """`text` without TensorFlow's known start-up lines."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line))


def import_tensorflow() -> Any:
    """`import tensorflow` (once) with its start-up lines dropped; returns the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_logical_devices("CPU")  # device start-up: where cuInit is tried
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            rest = filter_noise(sink.read().decode(errors="replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()
    return tf
