"""Child process for the arena search (codegen/sizes.py): `python -m eenn.codegen._arena_probe MODEL`.

Reads arena sizes from stdin, one per line, and answers `1` when the model allocates and runs
once in that many bytes, `0` when it does not. A separate process because the `tflite_micro`
runtime may crash outright (not raise) when some kernels' allocations fail in a too-small arena:
the parent then counts that size as failed and starts a new child.
"""
from __future__ import annotations

import os
import sys


def main() -> None:
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    data = open(sys.argv[1], "rb").read()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # the runtime reports each failed allocation on stderr
    for line in sys.stdin:
        size = int(line)
        try:
            interp = runtime.Interpreter.from_bytes(data, arena_size=size)
            d = interp.get_input_details(0)
            interp.set_input(np.zeros(d["shape"], dtype=np.int8), 0)
            interp.invoke()
            ok = True
            del interp
        except (RuntimeError, ValueError):
            ok = False
        sys.stdout.write("1\n" if ok else "0\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
