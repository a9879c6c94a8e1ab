"""TensorFlow's output kept off the user's terminal.

TensorFlow 2.21 writes, from C++ and before its logging is set up (so `TF_CPP_MIN_LOG_LEVEL`
does not reach them), a handful of lines on every start: the oneDNN notice, "Could not find
cuda drivers", the CPU-feature guard and, at the first operation, "failed call to cuInit". On
a CPU-only machine they are noise that buries eenn's own progress (as is oneDNN's notice, at the
first float16 operation, that it falls back to Eigen for half precision: the feature cache's
training maps are float16). The TFLite converter, for
its part, prints its SavedModel signature and MLIR passes from Python and C++ alike.
`captured_output()` holds both file descriptors while such code runs and hands the text back;
`import_tensorflow()` uses it to drop exactly the start-up lines and write everything else back
(a real error still shows).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
from typing import Any, Callable, Iterator

NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cpu_feature_guard\.cc:\d+\]|^To enable the following instructions:"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|cuda_executor\.cc:\d+\]|cuda_diagnostics\.cc:\d+\]"
    r"|util\.cc:\d+\] oneDNN supports DT_HALF only on platforms with AVX-512")


def filter_noise(text: str) -> str:
    """`text` without TensorFlow's known start-up lines."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line))


@contextlib.contextmanager
def captured_output() -> Iterator[Callable[[], str]]:
    """File descriptors 1 and 2 (C and C++ output) and Python's stdout captured while the block
    runs; yields a function that returns everything written so far."""
    sink = tempfile.TemporaryFile(mode="w+b")
    saved = []
    try:
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except (AttributeError, ValueError):
                pass
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:
                pass
        text = io.StringIO()

        def everything() -> str:
            sink.seek(0)
            return text.getvalue() + sink.read().decode(errors="replace")

        with contextlib.redirect_stdout(text):
            yield everything
    finally:
        for fd, dup in saved:
            os.dup2(dup, fd)
            os.close(dup)
        sink.close()


def quiet_log_level(level: str = "2") -> None:
    """`TF_CPP_MIN_LOG_LEVEL` for TensorFlow's C++ logging, unless the user set it (the one place
    eenn sets it; call before TensorFlow is imported). "2" drops info and warnings, "3" errors too."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", level)


def import_tensorflow() -> Any:
    """`import tensorflow` (once) with its start-up lines dropped; returns the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    quiet_log_level()
    text = ""
    try:
        with captured_output() as output:
            try:
                import tensorflow as tf

                tf.config.list_logical_devices("CPU")  # device start-up: where cuInit is tried
                tf.cast(tf.zeros([1]), tf.float16)  # the once-per-process float16 notice
            finally:
                text = output()
    finally:
        rest = filter_noise(text)
        if rest:
            sys.stderr.write(rest)
            sys.stderr.flush()
    return tf


class _NoRetracingAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def drop_retracing_advice() -> None:
    """eenn traces one training graph per exit by design (`training._train_epoch`; lent between exits
    of one structure); TensorFlow's advice on "excessive retracing", printed from the fifth exit
    on, is about that design, not the user's code, so it is dropped (every other TF warning stays)."""
    import tensorflow as tf

    log = tf.get_logger()
    if not any(isinstance(f, _NoRetracingAdvice) for f in log.filters):
        log.addFilter(_NoRetracingAdvice())
