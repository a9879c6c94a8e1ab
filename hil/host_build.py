"""Build the firmware runtime for the host: the shared library behind the virtual board.

`firmware/src` + `firmware/ports/host` compiled with the system C compiler into one shared
library, cached under `firmware-host/<hash>/` of `eenn.paths.cache_dir()` (`$EENN_CACHE_DIR`, else
`$XDG_CACHE_HOME/eenn`, else `~/.cache/eenn`). The
hash covers every source and header, the flags and the compiler's identity, so an edited
source or another compiler builds afresh and an unchanged tree never compiles twice.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from eenn.errors import EennError
from eenn.paths import cache_dir, firmware_dir

LIB_NAME = "libeenn_host.so"
HOST_FLAGS = ("-std=c99", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror")


def host_sources(root: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(C sources, include directories) of the host build."""
    root = root or firmware_dir()
    sources = sorted((root / "src").glob("*.c")) + sorted((root / "ports" / "host").glob("*.c"))
    if not sources:
        raise EennError(f"{root}: no firmware sources found (expected src/*.c and ports/host/*.c)")
    return sources, [root / "include", root / "ports" / "host"]


def find_compiler() -> str:
    cc = os.environ.get("CC")
    candidates = [cc] if cc else ["cc", "gcc", "clang"]
    for name in candidates:
        path = shutil.which(name) if name else None
        if path:
            return path
    raise EennError(
        "no C compiler found for the virtual board's firmware build: install gcc "
        f"(apt-get install gcc) or set CC (tried {', '.join(c for c in candidates if c)})"
    )


def _compiler_identity(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise EennError(f"cannot run the C compiler {cc}: {exc}") from exc
    return f"{os.path.realpath(cc)}\n{out.stdout.splitlines()[0] if out.stdout else ''}"


def source_hash(cc: str, root: Path | None = None, flags: tuple[str, ...] = HOST_FLAGS) -> str:
    root = root or firmware_dir()
    h = hashlib.sha256()
    h.update(_compiler_identity(cc).encode())
    h.update("\0".join(flags).encode())
    files = []
    for sub in ("include", "src", "ports/host"):
        files += [p for p in (root / sub).rglob("*") if p.is_file() and p.suffix in (".c", ".h")]
    for path in sorted(files):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def build_host_library(cache: Path | None = None, root: Path | None = None) -> Path:
    """The cached host build's path; compile it first when no build of these sources exists."""
    cc = find_compiler()
    root = root or firmware_dir()
    key = source_hash(cc, root)
    out_dir = (cache or cache_dir()) / "firmware-host" / key[:20]
    lib = out_dir / LIB_NAME
    if lib.is_file():
        return lib
    sources, includes = host_sources(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=out_dir)
    os.close(fd)
    cmd = [cc, *HOST_FLAGS, *(f"-I{d}" for d in includes), *map(str, sources), "-o", tmp]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise EennError(
            f"building the firmware for the host failed ({' '.join(cmd[:3])} ...):\n{proc.stderr[-4000:]}"
        )
    os.replace(tmp, lib)  # atomic: a concurrent build of the same key wins harmlessly
    return lib
