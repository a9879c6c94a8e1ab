"""A pyserial client of the HIL protocol (docs/protocol.md), built to survive a real bench.

One command at a time, replies read up to `m-ready` against a deadline. Garbage, a timeout
or a board that reset (its boot banner, `m-init-done`, shows up in a reply; or the port
vanished and came back) are recovered from with the resync idiom `%sync-NONCE%`, a fresh
`name` / `profile`, and a check that the board still runs the same solution (its hash).
`infer_sample` wraps load → CRC check → infer → result checks in that recovery, so a run loop
only sees a result or one clear error.

`--port` values (`open_port`): a device path (`/dev/ttyACM0`, `COM5`), any pyserial URL
(`socket://127.0.0.1:PORT`, `rfc2217://…`), or `virtual` / `virtual:PROJECT_DIR`: a
`VirtualBoard` started in this process on the generated project and served on a pty.
"""
from __future__ import annotations

import itertools
import logging
import os
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import serial

from eenn.errors import BoardError, EennError

log = logging.getLogger("eenn.hil")

READY = "m-ready"
BOOT_DONE = "m-init-done"
TIMING_HARDWARE = "hardware"
PROTOCOL_VERSION = 2  # 2: eenn-input, db load discards the input when refused (docs/protocol.md)
POLL_S = 0.1  # the serial read timeout: deadlines are kept by the client, in steps of this
DEFAULT_CHUNK = 126  # bytes per `db` command: the 256-byte line limit (docs/protocol.md §6)


class ProtocolError(BoardError):
    """The board answered something the protocol does not allow here (a board error: CLI exit 3)."""


class BoardErrorReply(ProtocolError):
    """The board answered `e-[TEXT]`."""

    def __init__(self, command: str, text: str):
        super().__init__(f"board refused '{command}': {text}")
        self.command = command
        self.text = text


class ProtocolTimeout(ProtocolError):
    """No `m-ready` within the deadline."""


class ConnectionLost(ProtocolError):
    """The serial port / socket went away (board unplugged, reset, virtual board restarted)."""


class BoardReset(ProtocolError):
    """The board printed its boot banner in the middle of a conversation."""


class WrongBoard(EennError):
    """The board identifies as something else (not eenn, another solution hash, another protocol)."""


@dataclass(frozen=True)
class BoardInfo:
    """What `name` and `profile` report."""

    name: str
    firmware: str
    model: str
    protocol: int
    hash: str
    stages: int
    confidence: str
    input_bytes: int
    classes: list[int]
    threshold_q: list[int]
    tick_hz: list[int]
    timing: str
    line_max: int
    mode: str
    input_type: str = "int8"  # `eenn-input` in force (docs/protocol.md §2.6); this client loads int8
    # placement (firmware with stages on any core); older firmware: one core per stage
    cores: int | None = None
    stage_cores: list[int] | None = None
    core_tick_hz: list[int] | None = None

    @property
    def measured(self) -> bool:
        """True only on real hardware: any other timing text means the times are not measurements."""
        return self.timing == TIMING_HARDWARE

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class InferResult:
    """The results block of one `infer` (docs/protocol.md §2.5)."""

    cls: int
    exit: int
    confidence_q: int
    scores_q: list[int]
    scores: list[float]
    ticks: list[int]
    elapsed_us: int
    crc32: str
    hash: str
    lap_us: int | None  # T1 − T0 of the timed inferences (performance mode), else None
    handoffs: int | None = None  # IPC requests on the path taken (m-eenn-handoffs); None from older firmware
    stage_ticks: list[int] | None = None  # ticks of each stage (m-eenn-stage-ticks); None from older firmware
    ops: list[OpTicks] | None = None  # per-operator records while `eenn-profile on` (m-eenn-op), else None


@dataclass(frozen=True)
class OpTicks:
    """One `m-eenn-op-[STAGE,INDEX,NAME,TICKS]` line (docs/protocol.md §2.6)."""

    stage: int
    index: int
    name: str
    ticks: int


def parse_ops(lines: list[str]) -> list[OpTicks] | None:
    """The operator lines of a results block; None when it has no `m-eenn-ops` line (profiling off)."""
    total = field(lines, "eenn-ops", required=False)
    if total is None:
        return None
    ops = []
    for line in lines:
        if line.startswith("m-eenn-op-[") and line.endswith("]"):
            parts = line[len("m-eenn-op-["):-1].split(",")
            if len(parts) != 4:
                raise ProtocolError(f"malformed operator line {line!r}: expected m-eenn-op-[STAGE,INDEX,NAME,TICKS]")
            ops.append(OpTicks(_parse_int(parts[0], line), _parse_int(parts[1], line), parts[2],
                               _parse_int(parts[3], line)))
    n, dropped = (_ints(total) + [0, 0])[:2]
    if n != len(ops):
        raise ProtocolError(f"m-eenn-ops-[{total}] announces {n} operator lines, the reply has {len(ops)}")
    if dropped:
        raise ProtocolError(f"the board dropped {dropped} operator records (its table is full): the profile of "
                            "an inference would be incomplete")
    return ops


def field(lines: list[str], key: str, *, required: bool = True) -> str | None:
    """The bracketed value of the one line `m-KEY-[VALUE]` (exact key, not a prefix of another)."""
    prefix = f"m-{key}-["
    found = [line[len(prefix):-1] for line in lines if line.startswith(prefix) and line.endswith("]")]
    if len(found) > 1:
        raise ProtocolError(f"the board sent m-{key} {len(found)} times in one reply: {lines}")
    if not found:
        if required:
            raise ProtocolError(f"the board's reply lacks m-{key}-[...]: {lines}")
        return None
    return found[0]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")] if text else []


def _optional_int(text: str | None) -> int | None:
    return None if text is None else int(text)


def _optional_ints(text: str | None) -> list[int] | None:
    return None if text is None else _ints(text)


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ProtocolError(f"{what}: '{text}' is not an integer") from None


def parse_results(lines: list[str]) -> InferResult:
    """The results block (from `infer` or `results`)."""
    try:
        laps = [int(line[len("m-lap-us-"):]) for line in lines if line.startswith("m-lap-us-")]
        scores_line = field(lines, "results")
        return InferResult(
            cls=int(field(lines, "eenn-class")),
            exit=int(field(lines, "eenn-exit")),
            confidence_q=int(field(lines, "eenn-confidence-q")),
            scores_q=_ints(field(lines, "eenn-scores-q")),
            scores=[float(v) for v in scores_line.split(",")] if scores_line else [],
            ticks=_ints(field(lines, "eenn-ticks")),
            elapsed_us=int(field(lines, "eenn-elapsed-us")),
            crc32=field(lines, "eenn-crc32").lower(),
            hash=field(lines, "eenn-hash"),
            lap_us=laps[-1] - laps[-2] if len(laps) >= 2 else None,
            handoffs=_optional_int(field(lines, "eenn-handoffs", required=False)),
            stage_ticks=_optional_ints(field(lines, "eenn-stage-ticks", required=False)),
            ops=parse_ops(lines),
        )
    except ValueError as exc:
        raise ProtocolError(f"malformed results block ({exc}): {lines}") from None


def parse_profile(name_lines: list[str], lines: list[str]) -> BoardInfo:
    name = field(name_lines, "name-dut")
    mode = next((line.removeprefix("m-timestamp-mode-") for line in lines
                 if line.startswith("m-timestamp-mode-")), "performance")
    try:
        return BoardInfo(
            name=name,
            firmware=field(lines, "profile"),
            model=field(lines, "model"),
            protocol=_parse_int(field(lines, "eenn-protocol"), "m-eenn-protocol"),
            hash=field(lines, "eenn-hash").lower(),
            stages=_parse_int(field(lines, "eenn-stages"), "m-eenn-stages"),
            confidence=field(lines, "eenn-confidence"),
            input_bytes=_parse_int(field(lines, "eenn-input-bytes"), "m-eenn-input-bytes"),
            classes=_ints(field(lines, "eenn-classes")),
            threshold_q=_ints(field(lines, "eenn-threshold-q")),
            tick_hz=_ints(field(lines, "eenn-tick-hz")),
            timing=field(lines, "eenn-timing"),
            line_max=_parse_int(field(lines, "eenn-line-max", required=False) or "256", "m-eenn-line-max"),
            mode=mode,
            input_type=(field(lines, "eenn-input", required=False) or "int8").split(" ")[0],
            cores=_optional_int(field(lines, "eenn-cores", required=False)),
            stage_cores=_optional_ints(field(lines, "eenn-stage-cores", required=False)),
            core_tick_hz=_optional_ints(field(lines, "eenn-core-tick-hz", required=False)),
        )
    except ValueError as exc:
        raise ProtocolError(f"malformed profile ({exc}): {lines}") from None


class VirtualPort:
    """`--port virtual[:PROJECT]`: a VirtualBoard in this process, served on a pty."""

    def __init__(self, project_dir: str | Path, **board_kwargs):
        from eenn.hil.virtual_board import VirtualBoard

        self.board = VirtualBoard(project_dir, **board_kwargs)
        self.path = self.board.open_pty()
        self.board.serve_in_thread()

    def close(self) -> None:
        self.board.close()


def resolve_port(port: str, project_dir: str | Path | None = None,
                 **board_kwargs) -> tuple[str, VirtualPort | None]:
    """(what pyserial opens, the in-process virtual board if one was started; `board_kwargs` go to
    its VirtualBoard, e.g. timing=FILE)."""
    if port == "virtual" or port.startswith("virtual:"):
        target = port.partition(":")[2] or project_dir
        if not target:
            raise EennError("--port virtual needs the generated project: --project DIR or --port virtual:DIR")
        vp = VirtualPort(target, **board_kwargs)
        log.info("virtual board on %s for %s (timing from the cost model, not measured)", vp.path, target)
        return vp.path, vp
    return port, None


Opener = Callable[[str, float], "serial.SerialBase"]


class SocketPort:
    """`socket://HOST:PORT` with whole-chunk reads (pyserial's socket URL handler reads byte by
    byte once data is waiting, which costs milliseconds per reply) and no Nagle delay."""

    def __init__(self, url: str, timeout: float):
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme != "socket" or not parts.hostname or parts.port is None:
            raise ValueError(f"{url}: expected socket://HOST:PORT")
        try:
            self._sock = socket.create_connection((parts.hostname, parts.port), timeout=max(timeout, 1.0))
        except OSError as exc:
            raise serial.SerialException(f"could not open port {url}: {exc}") from exc
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.settimeout(timeout)
        self._pending = b""

    @property
    def in_waiting(self) -> int:
        return len(self._pending)

    def read(self, size: int = 1) -> bytes:
        if not self._pending:
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                return b""
            except OSError as exc:
                raise serial.SerialException(f"socket read failed: {exc}") from exc
            if not data:
                raise serial.SerialException("socket disconnected")
            self._pending = data
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def write(self, data: bytes) -> int:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise serial.SerialException(f"socket write failed: {exc}") from exc
        return len(data)

    def close(self) -> None:
        self._sock.close()


def _default_opener(url: str, timeout: float):
    if url.startswith("socket://"):
        return SocketPort(url, timeout)
    return serial.serial_for_url(url, baudrate=115200, timeout=timeout, write_timeout=10.0)


class BoardClient:
    """The HIL protocol over one serial port, with recovery.

    expected_hash: the solution hash the board must report (checked at every identification).
    timeout: seconds for a command's reply (an `infer` of N inferences gets `infer_timeout`
    on top). reconnect_s: how long to keep reopening a port that went away.
    """

    def __init__(self, port: str, *, expected_hash: str | None = None, timeout: float = 5.0,
                 infer_timeout: float = 30.0, reconnect_s: float = 30.0, retries: int = 3,
                 chunk: int = DEFAULT_CHUNK, mode: str | None = None, opener: Opener | None = None):
        if not 1 <= chunk <= DEFAULT_CHUNK:
            raise EennError(f"chunk size {chunk}: must be 1..{DEFAULT_CHUNK} bytes (the 256-byte line limit)")
        self.port = port
        self.expected_hash = expected_hash.lower() if expected_hash else None
        self.timeout = timeout
        self.infer_timeout = infer_timeout
        self.reconnect_s = reconnect_s
        self.retries = retries
        self.chunk = chunk
        self.mode = mode  # 'energy' / 'performance' to enforce after every (re)connection
        self._opener = opener or _default_opener
        self._ser = None
        self._buf = bytearray()
        self._nonce = itertools.count(int.from_bytes(os.urandom(2), "big"))
        self.info: BoardInfo | None = None
        self.recoveries = 0  # times the conversation had to be re-established
        self.resets_seen = 0  # boot banners seen mid-run
        self.handshake_failures: list[str] = []  # why earlier start-up handshakes failed (open())

    # ---------------------------------------------------------------- connection
    def open(self) -> BoardInfo:
        """Open the port and hold the start-up handshake (resync, `name`, `profile`).

        A reply lost or garbled during the handshake is answered like one lost mid-run: a fresh
        resync and the whole handshake again, `retries` times (a port that went away is reopened
        within `reconnect_s`). A board that identifies as something else is not retried."""
        self._open_port(deadline=time.monotonic() + self.reconnect_s)
        last: ProtocolError | None = None
        for attempt in range(1, self.retries + 2):
            try:
                if self._ser is None:
                    self._open_port(deadline=time.monotonic() + self.reconnect_s)
                self.sync()
                return self.identify()
            except ConnectionLost as exc:
                last = exc
                self._close_port()
            except ProtocolError as exc:  # a timeout, garbage or a reset: resync and start again
                last = exc
            self.handshake_failures.append(str(last))
            if attempt <= self.retries:
                log.warning("%s: start-up handshake attempt %d failed (%s); resyncing", self.port, attempt, last)
        kind = type(last) if type(last) in (ProtocolTimeout, ConnectionLost) else ProtocolError
        raise kind(f"{self.port}: the board did not complete the start-up handshake (resync, name, profile) in "
                   f"{self.retries + 1} attempt(s): {last}")

    def _open_port(self, deadline: float) -> None:
        self._close_port()
        last: Exception | None = None
        while True:
            try:
                self._ser = self._opener(self.port, POLL_S)
                self._buf.clear()
                return
            except (serial.SerialException, OSError, ValueError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise ConnectionLost(f"cannot open {self.port}: {last}. Is the board connected and the port "
                                     "free? (`eenn hil ports` lists serial ports)")
            time.sleep(0.2)

    def _close_port(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            except (serial.SerialException, OSError):
                pass
            self._ser = None

    def close(self) -> None:
        self._close_port()

    def __enter__(self) -> BoardClient:
        if self._ser is None:
            self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- bytes
    def _write(self, data: bytes) -> None:
        if self._ser is None:
            raise ConnectionLost(f"{self.port} is not open")
        try:
            self._ser.write(data)
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.port}: write failed ({exc})") from exc

    def _read_some(self, deadline: float) -> bool:
        """Read what is there (at least one byte, waiting up to the deadline); False on timeout."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ser = self._ser
        try:
            chunk = ser.read(max(1, ser.in_waiting))  # the port's own timeout is short (POLL_S)
        except (serial.SerialException, OSError, TypeError) as exc:
            raise ConnectionLost(f"{self.port}: read failed ({exc})") from exc
        self._buf += chunk
        return True

    def _read_until(self, marker: bytes, deadline: float) -> bytes:
        while True:
            i = self._buf.find(marker)
            if i >= 0:
                out = bytes(self._buf[: i + len(marker)])
                del self._buf[: i + len(marker)]
                return out
            if not self._read_some(deadline):
                raise ProtocolTimeout(f"{self.port}: no answer within the timeout (waiting for {marker!r}); "
                                      f"got {bytes(self._buf[-200:])!r}")

    def _read_reply(self, deadline: float) -> list[str]:
        """Lines up to and including the next m-ready; returns them without it."""
        lines: list[str] = []
        while True:
            raw = self._read_until(b"\r\n", deadline)
            line = raw[:-2].decode("ascii", errors="replace")
            if line == READY:
                return lines
            lines.append(line)

    # ---------------------------------------------------------------- protocol
    def sync(self, timeout: float | None = None) -> None:
        """The resync idiom: `%sync-NONCE%`, discard everything up to its answer."""
        token = f"sync-{next(self._nonce):x}"
        marker = f"e-[Unknown command: {token}]\r\n{READY}\r\n".encode()
        self._write(f"%{token}%".encode())
        seen = self._read_until(marker, time.monotonic() + (timeout or self.timeout))
        if BOOT_DONE.encode() in seen:
            if self.info is None:  # the first contact: a board just started or flashed prints its banner
                log.info("%s: the board booted just before the first resync", self.port)
                return
            self.resets_seen += 1
            log.warning("%s: the board's boot banner came before the resync: it had reset", self.port)

    def command(self, text: str, *, timeout: float | None = None, check: bool = True) -> list[str]:
        """Send one command; its reply lines without m-ready. `check`: an e-[...] line raises."""
        if "%" in text:
            raise ValueError("a command cannot contain '%'")
        self._write(text.encode("ascii") + b"%")
        lines = self._read_reply(time.monotonic() + (timeout or self.timeout))
        if BOOT_DONE in lines:
            self.resets_seen += 1
            raise BoardReset(f"{self.port}: the board reset while answering '{text[:40]}' (boot banner in the reply)")
        errors = [line for line in lines if line.startswith("e-[")]
        if check and errors:
            raise BoardErrorReply(text if len(text) < 40 else text[:37] + "...", errors[-1][3:-1])
        return lines

    def identify(self) -> BoardInfo:
        """`name` + `profile`, checked: an eenn board, our protocol, the expected solution."""
        name_lines = self.command("name")
        name = field(name_lines, "name-dut")
        if name != "eenn":
            raise WrongBoard(f"{self.port}: the board calls itself '{name}', not 'eenn'; is the eenn firmware flashed?")
        info = parse_profile(name_lines, self.command("profile"))
        if info.protocol != PROTOCOL_VERSION:
            raise WrongBoard(f"{self.port}: firmware speaks HIL protocol {info.protocol}, this eenn speaks "
                             f"{PROTOCOL_VERSION}; regenerate and reflash the project")
        if self.expected_hash and info.hash != self.expected_hash:
            raise WrongBoard(f"{self.port}: the board runs solution {info.hash[:12]}, expected "
                             f"{self.expected_hash[:12]}: flash the project generated from this bundle "
                             "(`eenn flash PROJECT`)")
        if self.mode and info.mode != self.mode:
            out = self.command(f"eenn-mode {self.mode}")
            info = BoardInfo(**{**info.to_dict(), "mode": out[0].removeprefix("m-timestamp-mode-")})
        if info.input_type != "int8":  # left in uint8/float32 (an MLPerf run): our loads are int8
            out = self.command("eenn-input int8")
            info = BoardInfo(**{**info.to_dict(), "input_type": "int8",
                                "input_bytes": _parse_int(field(out, "eenn-input-bytes"), "m-eenn-input-bytes")})
        self.info = info
        return info

    def recover(self) -> BoardInfo:
        """Re-establish the conversation after a timeout, garbage, a reset or a lost port."""
        self.recoveries += 1
        deadline = time.monotonic() + self.reconnect_s
        last: Exception | None = None
        while True:
            try:
                if self._ser is None:
                    self._open_port(deadline)
                self.sync()
                return self.identify()
            except WrongBoard:
                raise
            except ConnectionLost as exc:
                last = exc
                self._close_port()
            except ProtocolError as exc:  # timeout or garbage: try the idiom again
                last = exc
            if time.monotonic() >= deadline:
                raise ConnectionLost(f"{self.port}: the board did not come back within {self.reconnect_s:g} s "
                                     f"({last})")
            time.sleep(0.1)

    def load(self, data: bytes, *, verify: bool = True) -> str:
        """`db load` + `db` chunks (+ `db crc`); returns the CRC-32 (8 hex digits)."""
        crc = f"{zlib.crc32(data):08x}"
        out = self.command(f"db load {len(data)}")
        if out != [f"m-[Expecting {len(data)} bytes]"]:
            raise ProtocolError(f"unexpected answer to 'db load {len(data)}': {out}")
        for i in range(0, len(data), self.chunk):
            out = self.command("db " + data[i : i + self.chunk].hex())
        board_crc = field(out, "eenn-crc32")
        if "m-load-done" not in out or board_crc.lower() != crc:
            raise ProtocolError(f"load: the board computed CRC-32 {board_crc}, the host {crc}")
        if verify:
            out = self.command(f"db crc {crc}")
            if out != [f"m-eenn-crc32-ok-[{crc}]"]:
                raise ProtocolError(f"unexpected answer to 'db crc {crc}': {out}")
        return crc

    def infer(self, n: int = 1, warmup: int = 0) -> InferResult:
        lines = self.command(f"infer {n} {warmup}", timeout=self.timeout + self.infer_timeout)
        if "m-infer-done" not in lines:
            raise ProtocolError(f"infer: no m-infer-done in {lines}")
        return parse_results(lines)

    def infer_sample(self, data: bytes, *, n: int = 1, warmup: int = 0,
                     before_infer: Callable[[], None] | None = None) -> tuple[InferResult, int]:
        """Load one input and infer, recovering as needed; (result, attempts used).

        The result is checked against what was sent: its CRC-32 must be the input's and its
        hash the board's. Any protocol trouble (an error reply: a lost input after a silent
        reset, bytes left on the line; a timeout; a lost port) is answered by `recover()` and
        a fresh attempt, `retries` times.
        """
        if self.info is not None and len(data) != self.info.input_bytes:
            raise EennError(f"input of {len(data)} bytes; the board expects {self.info.input_bytes}")
        last: Exception | None = None
        for attempt in range(1, self.retries + 2):
            try:
                if self._ser is None or self.info is None:
                    self.recover()
                crc = self.load(data)
                if before_infer is not None:
                    before_infer()
                res = self.infer(n, warmup)
                if res.crc32 != crc:
                    raise ProtocolError(f"result computed on input {res.crc32}, sent {crc}")
                if res.hash != self.info.hash:
                    raise ProtocolError(f"result names solution {res.hash[:12]}, the board reported {self.info.hash[:12]}")
                return res, attempt
            except WrongBoard:
                raise
            except ProtocolError as exc:
                last = exc
            log.warning("%s: attempt %d failed (%s); recovering", self.port, attempt, last)
            if attempt <= self.retries:
                if isinstance(last, ConnectionLost):
                    self._close_port()
                self.recover()
        raise ProtocolError(f"{self.port}: gave up after {self.retries + 1} attempts: {last}")
