"""The virtual board: the firmware's C runtime on the host, serving the HIL protocol.

The C sources (`firmware/src` + `firmware/ports/host`) are built once per source hash
(`eenn.hil.host_build`) and loaded with ctypes. Core 0's protocol parser gets the bytes a
client writes to a pseudo-terminal (or a TCP socket); the subgraphs run on the `tflite_micro`
runtime from the project's int8 models, called back from C. Time is virtual: each stage
advances the clock by the cost model's `predicted_s`, each handoff by `link_s + wakeup_s`,
and `profile` says so. See docs/protocol.md for the protocol.
"""
from __future__ import annotations

import ctypes
import os
import selectors
import shutil
import socket
import sys
import tempfile
import threading
import tty
from collections.abc import Callable
from pathlib import Path

import numpy as np

from eenn.augment.bundle import SOLUTION_FILE
from eenn.codegen.manifest import MANIFEST_PATH, ProjectManifest, load_manifest, stage_handoff_s
from eenn.codegen.manifest import handoff_timeout_s as default_handoff_timeout_s
from eenn.codegen.manifest import handoff_timeout_us
from eenn.errors import EennError
from eenn.hil.host_build import build_host_library
from eenn.hil.input_types import INPUT_TYPE_CODE, start_input_type
from eenn.hil.timing import StageTiming, TimingModel, project_ops

ABI_VERSION = 4
TIMING_NOTE = "virtual: cost model (predicted_s x tick_hz per stage, handoff link_s + wakeup_s), not measured"
MAX_STAGES, MAX_CORES = 8, 4  # EE_MAX_STAGES, EE_MAX_CORES of firmware/include/ee_runtime.h
CONFIDENCE = {"max": 0, "margin": 1}
MAX_PENDING_OUTPUT = 4 << 20

_WRITE_FN = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t, ctypes.c_void_p)
_STAGE_FN = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_uint32,
    ctypes.POINTER(ctypes.c_int8),
    ctypes.c_size_t,
    ctypes.POINTER(ctypes.c_int8),
    ctypes.c_size_t,
    ctypes.POINTER(ctypes.c_int8),
    ctypes.c_size_t,
    ctypes.c_void_p,
)
_PULSE_FN = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.c_void_p)

StageRunner = Callable[[int, np.ndarray, int, int], tuple[np.ndarray, np.ndarray | None]]


class HostFirmware:
    """One private instance of the host build (its own copy of the library, so its own state).

    `run_stage(stage, input_int8, fm_len, n_scores) -> (scores, feature_map | None)` runs a
    subgraph; `feed(bytes) -> bytes` pushes client bytes in and returns what the firmware wrote.
    """

    def __init__(self, run_stage: StageRunner, lib_path: Path | None = None):
        src = Path(lib_path) if lib_path else build_host_library()
        self._tmp = tempfile.TemporaryDirectory(prefix="eenn-vboard-")
        private = Path(self._tmp.name) / src.name
        shutil.copyfile(src, private)  # dlopen of a distinct path = distinct static state
        self.lib = lib = ctypes.CDLL(str(private))
        self._declare(lib)
        if lib.ee_host_abi_version() != ABI_VERSION:
            raise EennError(f"{src}: host firmware ABI {lib.ee_host_abi_version()}, this eenn needs {ABI_VERSION}")
        self._run_stage = run_stage
        # stage -> [(op_index, name, ticks)]: what the stage reports per operator while profiling
        self.op_records: Callable[[int], list[tuple[int, str, int]]] | None = None
        self._out = bytearray()
        self.pulses: list[int] = []
        self.stage_errors: list[str] = []
        self._cb_write = _WRITE_FN(self._on_write)
        self._cb_stage = _STAGE_FN(self._on_stage)
        self._cb_pulse = _PULSE_FN(self._on_pulse)
        lib.ee_host_reset()
        lib.ee_host_set_callbacks(self._cb_write, self._cb_stage, self._cb_pulse, None)

    @staticmethod
    def _declare(lib: ctypes.CDLL) -> None:
        u32, i32, u64 = ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64
        lib.ee_host_abi_version.restype = u32
        lib.ee_host_set_callbacks.argtypes = [_WRITE_FN, _STAGE_FN, _PULSE_FN, ctypes.c_void_p]
        lib.ee_host_set_model.argtypes = [u32, u32, u32, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
        lib.ee_host_set_stage.argtypes = [u32, u32, u32, u32, i32, ctypes.c_float, i32, i32, i32, i32, i32, i32,
                                          u32, u64, u64]
        lib.ee_host_set_input.argtypes = [ctypes.c_float, i32, u32]
        lib.ee_host_set_placement.argtypes = [u32, ctypes.POINTER(u32), ctypes.POINTER(u32)]
        lib.ee_host_start.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.ee_op_active.restype = ctypes.c_int
        lib.ee_op_record.argtypes = [u32, ctypes.c_char_p, u64]
        lib.ee_op_record.restype = ctypes.c_int
        lib.ee_host_start.restype = ctypes.c_char_p
        lib.ee_host_feed.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.ee_host_set_core_alive.argtypes = [u32, ctypes.c_int]
        lib.ee_host_set_notify_busy.argtypes = [u32]
        lib.ee_host_time_ns.restype = u64
        lib.ee_host_core_ticks.argtypes = [u32]
        lib.ee_host_core_ticks.restype = u64
        lib.ee_host_pulses.restype = u32

    # ---------------------------------------------------------------- callbacks from C
    def _on_write(self, data, length, _user) -> None:
        self._out += ctypes.string_at(data, length)

    def _on_pulse(self, time_ns, _user) -> None:
        self.pulses.append(int(time_ns))

    def _on_stage(self, stage, inp, in_len, fm, fm_len, scores, n_scores, _user) -> int:
        try:
            x = np.ctypeslib.as_array(inp, shape=(in_len,)).copy()
            out_scores, out_fm = self._run_stage(int(stage), x, int(fm_len), int(n_scores))
            out_scores = np.ascontiguousarray(out_scores, dtype=np.int8).reshape(-1)
            if out_scores.size != n_scores:
                raise ValueError(f"stage {stage} gave {out_scores.size} scores, the firmware expects {n_scores}")
            ctypes.memmove(scores, out_scores.ctypes.data, n_scores)
            if fm_len:
                out_fm = np.ascontiguousarray(out_fm, dtype=np.int8).reshape(-1)
                if out_fm.size != fm_len:
                    raise ValueError(f"stage {stage} gave a {out_fm.size}-element feature map, expected {fm_len}")
                ctypes.memmove(fm, out_fm.ctypes.data, fm_len)
            if self.op_records is not None and self.lib.ee_op_active():
                for index, name, ticks in self.op_records(int(stage)):
                    self.lib.ee_op_record(index, name.encode("ascii"), ticks)
            return 0
        except Exception as exc:  # noqa: BLE001 - an exception must not cross the C frames
            self.stage_errors.append(f"stage {stage}: {type(exc).__name__}: {exc}")
            return 1

    # ---------------------------------------------------------------- configuration
    def configure(self, manifest: ProjectManifest, *, model_id: str = "eenn", timing: str = TIMING_NOTE,
                  handoff_timeout_s: float | None = None, input_type: str | None = None,
                  stage_s: list[float] | None = None) -> None:
        """Fill the C `ee_config_t` from a project manifest (the cost model gives the times, or
        `stage_s`, seconds per stage, from a timing model).

        input_type: `eenn-input` at start; default: the model id's benchmark type, as the
        generated ee_config.h (uint8 for ic01/vww01, float32 for ad01, else int8)."""
        lib = self.lib
        stages = manifest.stages
        run_s = [float(st.predicted_s) for st in stages] if stage_s is None else [float(t) for t in stage_s]
        if manifest.confidence not in CONFIDENCE:
            raise EennError(f"project.json: confidence {manifest.confidence!r}, expected 'max' or 'margin'")
        cores = manifest.stage_cores()
        if handoff_timeout_s is None:
            handoff_timeout_s = default_handoff_timeout_s(stages, run_s, cores)
        timeout_us = handoff_timeout_us(handoff_timeout_s)
        rc = lib.ee_host_set_model(len(stages), CONFIDENCE[manifest.confidence], timeout_us,
                                   manifest.bundle_hash.encode(), model_id.encode(), timing.encode())
        if rc != 0:
            raise EennError(f"project.json: {len(stages)} stages; the firmware supports 1..{MAX_STAGES}")
        # the model input's quantization: what `eenn-input float32` quantizes with (ad01)
        kind = input_type or start_input_type(model_id)
        lib.ee_host_set_input(float(manifest.input.scale), int(manifest.input.zero_point), INPUT_TYPE_CODE[kind])
        for k, st in enumerate(stages):
            last = k == len(stages) - 1
            rq = st.requant
            thr = 0 if last or st.threshold_q is None else int(st.threshold_q)
            if not -(2**31) <= thr < 2**31:
                raise EennError(f"project.json: stages[{k}].threshold_q {thr} does not fit int32")
            rc = lib.ee_host_set_stage(
                k, st.input.size, 0 if last else st.feature_map.size, st.scores.size, thr,
                float(st.scores.scale), int(st.scores.zero_point),
                int(rq is not None), *(_requant_ints(rq) if rq is not None else (0, 0, 0, 0)),
                int(st.tick_hz), int(round(run_s[k] * 1e9)), int(round(stage_handoff_s(st) * 1e9)),
            )
            if rc != 0:
                raise EennError(f"project.json: stages[{k}] rejected by the firmware")
        if manifest.cores is not None:
            hz = manifest.core_tick_hz()
            if not 1 <= len(hz) <= MAX_CORES:
                raise EennError(f"project.json: {len(hz)} cores; the firmware supports 1..{MAX_CORES}")
            arr = ctypes.c_uint32 * MAX_STAGES
            if lib.ee_host_set_placement(len(hz), arr(*cores), (ctypes.c_uint32 * MAX_CORES)(*hz)) != 0:
                raise EennError(f"project.json: placement {cores} on {len(hz)} cores rejected by the firmware")

    def start(self, *, energy_mode: bool = False, banner: bool = True) -> bytes:
        why = self.lib.ee_host_start(int(energy_mode), int(banner))
        if why is not None:
            raise EennError(f"project.json: the firmware rejects this configuration: {why.decode()}")
        return self.take_output()

    # ---------------------------------------------------------------- running
    def feed(self, data: bytes) -> bytes:
        if data:
            self.lib.ee_host_feed(data, len(data))
        return self.take_output()

    def take_output(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def set_core_alive(self, core: int, alive: bool) -> None:
        self.lib.ee_host_set_core_alive(core, int(alive))

    def set_notify_busy(self, count: int) -> None:
        self.lib.ee_host_set_notify_busy(count)

    def time_ns(self) -> int:
        return int(self.lib.ee_host_time_ns())

    def core_ticks(self, core: int) -> int:
        return int(self.lib.ee_host_core_ticks(core))

    def close(self) -> None:
        self._tmp.cleanup()


def _requant_ints(rq) -> tuple[int, int, int, int]:
    vals = (int(rq.multiplier), int(rq.shift), int(rq.in_zero_point), int(rq.out_zero_point))
    if not 0 <= vals[0] < 2**31:
        raise EennError(f"project.json: requant multiplier {vals[0]} is not in [0, 2^31)")
    return vals


class TfliteStages:
    """Runs a project's stage subgraphs on the `tflite_micro` runtime (the int8 models)."""

    def __init__(self, project_dir: Path, manifest: ProjectManifest):
        from tflite_micro.python.tflite_micro import runtime

        self.manifest = manifest
        self._interp = []
        for st in manifest.stages:
            path = project_dir / "eenn" / st.model
            if not path.is_file():
                raise EennError(f"{path}: stage {st.index}'s model is missing (project.json stages[{st.index}].model)")
            self._interp.append(runtime.Interpreter.from_bytes(path.read_bytes()))

    def __call__(self, stage: int, x: np.ndarray, fm_len: int, n_scores: int):
        st = self.manifest.stages[stage]
        interp = self._interp[stage]
        interp.set_input(x.reshape(st.input.shape), 0)
        interp.invoke()
        scores = np.asarray(interp.get_output(st.scores.output_index))
        fm = None
        if fm_len:
            fm = np.asarray(interp.get_output(st.feature_map.output_index))
        return scores, fm


def resolve_project(path: str | Path) -> Path:
    """A generated project directory, or a clear error for anything else (bundles included)."""
    p = Path(path)
    if (p / MANIFEST_PATH).is_file():
        return p
    if (p / SOLUTION_FILE).is_file():
        raise EennError(
            f"{p} is a solution bundle, not a generated project; the virtual board runs the int8 models "
            f"of a project: run `eenn generate {p} --kit KIT --out PROJECT_DIR`, then `eenn hil virtual PROJECT_DIR`"
        )
    raise EennError(f"{p}: neither a generated project ({MANIFEST_PATH} not found) nor a solution bundle "
                    "(solution.json not found)")


class VirtualBoard:
    """A generated project's firmware on the host, serving the HIL protocol."""

    def __init__(self, project_dir: str | Path, *, model_id: str | None = None, energy_mode: bool = False,
                 lib_path: Path | None = None, handoff_timeout_s: float | None = None,
                 timing: str | Path | TimingModel | None = None):
        """`timing`: a timing model (or its file, `--timing`) that makes the ticks per stage and per
        operator; None: the cost model's predicted_s, spread over the operators by MACs."""
        self.project_dir = resolve_project(project_dir)
        self.manifest = load_manifest(self.project_dir)
        model = TimingModel.load(timing) if isinstance(timing, (str, Path)) else timing
        self.timing = StageTiming(self.manifest, project_ops(self.project_dir, self.manifest), model)
        settings = self.manifest.firmware
        if model_id is None:
            model_id = settings.model_id if settings else "eenn"
        if handoff_timeout_s is None and settings is not None:
            handoff_timeout_s = settings.handoff_timeout_s
        self.stages = TfliteStages(self.project_dir, self.manifest)
        self.fw = HostFirmware(self.stages, lib_path)
        self.fw.op_records = self._op_records
        note = TIMING_NOTE if model is None else (
            f"virtual: timing model {Path(model.source).name} (cycles per MAC and per call of each operator"
            "), not measured")
        self.fw.configure(self.manifest, model_id=model_id, handoff_timeout_s=handoff_timeout_s, timing=note,
                          stage_s=[self.timing.stage_s(k) for k in range(len(self.manifest.stages))])
        self._banner = self.fw.start(energy_mode=energy_mode, banner=True)
        self._sel: selectors.BaseSelector | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self.pty_path: str | None = None
        self.socket_url: str | None = None
        self._master = self._slave = None
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._pending: dict[object, bytearray] = {}
        self._sink: object | None = None
        self._thread: threading.Thread | None = None

    def _op_records(self, stage: int) -> list[tuple[int, str, int]]:
        return [(o.index, o.name, t) for o, t in zip(self.timing.ops[stage], self.timing.op_ticks[stage])]

    # ---------------------------------------------------------------- transports
    def open_pty(self) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes pass as they are
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.pty_path = os.ttyname(slave)
        self._pending["pty"] = bytearray(self._banner)
        self._sink = "pty"
        return self.pty_path

    def open_socket(self, port: int = 0, host: str = "127.0.0.1") -> str:
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            lst.bind((host, port))
        except OSError as exc:
            lst.close()
            raise EennError(f"cannot listen on {host}:{port}: {exc}") from exc
        lst.listen(1)
        lst.setblocking(False)
        self._listener = lst
        self.socket_url = f"socket://{host}:{lst.getsockname()[1]}"
        return self.socket_url

    def stop(self) -> None:
        """Ask serve() to return (safe from signal handlers and other threads)."""
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # ---------------------------------------------------------------- the loop
    def serve(self) -> None:
        """Serve until stop(). Input from a transport is answered on that transport."""
        if self._master is None and self._listener is None:
            raise EennError("the virtual board has no transport: open_pty() or open_socket() first")
        sel = self._sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        if self._master is not None:
            sel.register(self._master, selectors.EVENT_READ, "pty")
        if self._listener is not None:
            sel.register(self._listener, selectors.EVENT_READ, "listen")
        try:
            while not self._stop.is_set():
                self._update_write_interest()
                for key, events in sel.select(timeout=0.5):
                    what = key.data
                    if what == "wake":
                        os.read(self._wake_r, 64)
                    elif what == "listen":
                        self._accept()
                    elif what in ("pty", "conn"):
                        if events & selectors.EVENT_READ:
                            self._read(what)
                        if events & selectors.EVENT_WRITE:
                            self._flush(what)
        finally:
            sel.close()
            self._sel = None

    def _fd(self, what):
        return self._master if what == "pty" else self._conn

    def _update_write_interest(self) -> None:
        for what in ("pty", "conn"):
            fd = self._fd(what)
            if fd is None:
                continue
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._pending.get(what) else 0)
            try:
                self._sel.modify(fd, events, what)
            except KeyError:
                self._sel.register(fd, events, what)

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._conn is not None:  # one client at a time: the newest wins
            self._drop_conn()
        conn.setblocking(False)
        self._conn = conn
        self._pending["conn"] = bytearray()

    def _drop_conn(self) -> None:
        if self._conn is None:
            return
        try:
            self._sel.unregister(self._conn)
        except (KeyError, ValueError):
            pass
        self._conn.close()
        self._conn = None
        self._pending.pop("conn", None)
        if self._sink == "conn":
            self._sink = "pty" if self._master is not None else None

    def _read(self, what) -> None:
        try:
            data = os.read(self._master, 65536) if what == "pty" else self._conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            if what == "conn":
                self._drop_conn()
            return
        self._sink = what
        out = self.fw.feed(data)
        for err in self.fw.stage_errors:
            print(f"eenn virtual board: {err}", file=sys.stderr)
        self.fw.stage_errors.clear()
        self._queue(what, out)
        self._flush(what)

    def _queue(self, what, out: bytes) -> None:
        buf = self._pending.setdefault(what, bytearray())
        if len(buf) + len(out) > MAX_PENDING_OUTPUT:
            print(f"eenn virtual board: client on {what} is not reading; dropping {len(out)} bytes", file=sys.stderr)
            return
        buf += out

    def _flush(self, what) -> None:
        buf = self._pending.get(what)
        fd = self._fd(what)
        while buf and fd is not None:
            try:
                n = os.write(fd, buf) if what == "pty" else self._conn.send(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                if what == "conn":
                    self._drop_conn()
                return
            del buf[:n]

    def serve_in_thread(self) -> threading.Thread:
        """serve() in a daemon thread (tests, embedding); close() stops and joins it."""
        self._thread = threading.Thread(target=self.serve, name="eenn-virtual-board", daemon=True)
        self._thread.start()
        return self._thread

    def handle(self, data: bytes) -> bytes:
        """Feed bytes straight to the firmware (no transport) and return its answer."""
        return self.fw.feed(data)

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.fw.close()

    def __enter__(self) -> VirtualBoard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
