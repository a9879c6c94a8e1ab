"""The virtual board over a real pseudo-terminal, driven with pyserial and the raw protocol.

Every sample of the fixture's test set goes through `db load` / `db` / `db crc` / `infer`; the
class, the exit, the int8 scores and the input's CRC-32 must equal the Python int8 chain
(codegen/reference.py `Int8Chain`), and the ticks must be the cost model's.
"""
from __future__ import annotations

import re
import zlib

import numpy as np
import pytest
import serial

from eenn.codegen.manifest import load_manifest
from eenn.codegen.reference import Int8Chain
from eenn.hil.client import BoardClient
from eenn.hil.input_types import encode, parse_input_line, to_int8
from eenn.hil.virtual_board import TIMING_NOTE, VirtualBoard
from tests.int8_project import HANDOFF, PREDICTED_S, TICK_HZ, int8_project

READY = b"m-ready\r\n"
NO_RESULT = "results: no result for the loaded input (no successful 'infer' since it was loaded)"
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")


class Client:
    """The smallest possible protocol client: one command, lines up to m-ready."""

    def __init__(self, url_or_path: str, timeout: float = 10.0):
        self.ser = serial.serial_for_url(url_or_path, baudrate=115200, timeout=timeout)
        self.sync("start")

    def sync(self, nonce: str) -> None:
        # the resync idiom of docs/protocol.md: a lone '%' ends any partial line, and an unknown
        # command with a nonce gives a reply that cannot be mistaken for an older one
        token = f"sync-{nonce}"
        self.ser.write(f"%{token}%".encode())
        marker = f"e-[Unknown command: {token}]\r\n".encode() + READY
        got = self.ser.read_until(marker)
        assert got.endswith(marker), got

    def raw(self, data: bytes) -> list[str]:
        self.ser.write(data)
        got = self.ser.read_until(READY)
        assert got.endswith(READY), f"no m-ready after {data[:80]!r}: {got!r}"
        return got.decode("ascii").split("\r\n")[:-1]

    def cmd(self, text: str) -> list[str]:
        return self.raw(text.encode() + b"%")

    def close(self) -> None:
        self.ser.close()


def kv(lines: list[str], key: str) -> str:
    pat = re.compile(rf"^m-{re.escape(key)}-\[(.*)\]$")
    found = [m.group(1) for line in lines if (m := pat.match(line))]
    assert len(found) == 1, (key, lines)
    return found[0]


def load(client: Client, q: np.ndarray | bytes, chunk: int = 100) -> list[str]:
    data = q if isinstance(q, bytes) else q.astype(np.int8).tobytes()
    assert client.cmd(f"db load {len(data)}") == [f"m-[Expecting {len(data)} bytes]", "m-ready"]
    out: list[str] = []
    for i in range(0, len(data), chunk):
        out = client.cmd("db " + data[i : i + chunk].hex())
    return out


@pytest.fixture(scope="module", params=["plain", "requant", "margin"])
def project(request, tmp_path_factory):
    return int8_project(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def served(project):
    board = VirtualBoard(project)
    path = board.open_pty()
    board.serve_in_thread()
    client = Client(path)
    yield board, client
    client.close()
    board.close()


def test_every_test_sample_matches_the_int8_chain(project, served):
    board, client = served
    chain = Int8Chain(project)
    m = load_manifest(project)
    xs = np.load(project / "fixture_test.npz")["x"]
    exits = []
    hz0, hz1 = TICK_HZ
    for x in xs:
        q = chain.quantize_input(x).reshape(-1)
        ref = chain.run_quantized(q)
        crc = f"{zlib.crc32(q.tobytes()):08x}"
        done = load(client, q)
        assert done[:2] == ["m-load-done", f"m-eenn-crc32-[{crc}]"]
        assert client.cmd(f"db crc {crc}") == [f"m-eenn-crc32-ok-[{crc}]", "m-ready"]
        out = client.cmd("infer 1 0")
        assert out[:4] == ["m-warmup-start-0", "m-warmup-done", "m-infer-start-1", out[3]]
        assert int(kv(out, "eenn-class")) == ref.cls
        assert int(kv(out, "eenn-exit")) == ref.exit
        assert [int(v) for v in kv(out, "eenn-scores-q").split(",")] == ref.scores.astype(int).tolist()
        assert kv(out, "eenn-crc32") == crc
        assert kv(out, "eenn-hash") == m.bundle_hash
        # dequantized scores as the MLPerf runner reads them, rounded to 3 decimals
        st = m.stages[ref.exit]
        want = (ref.scores.astype(np.float32) - np.float32(st.scores.zero_point)) * np.float32(st.scores.scale)
        got = [float(v) for v in re.match(r"^m-results-\[(.*)\]$", out[out.index("m-infer-done") + 1]).group(1).split(",")]
        assert np.allclose(got, want, atol=0.0005 + 1e-6)
        # ticks per core from the cost model: predicted_s x tick_hz (virtual time floors at 1 tick)
        ticks = [int(t) for t in kv(out, "eenn-ticks").split(",")]
        assert abs(ticks[0] - PREDICTED_S[0] * hz0) <= 1
        if ref.exit == 0:
            assert ticks[1] == 0
            want_us = PREDICTED_S[0] * 1e6
        else:
            assert abs(ticks[1] - PREDICTED_S[1] * hz1) <= 1
            want_us = (PREDICTED_S[0] + HANDOFF["link_s"] + HANDOFF["wakeup_s"] + PREDICTED_S[1]) * 1e6
        assert abs(int(kv(out, "eenn-elapsed-us")) - want_us) <= 1
        laps = [int(line.removeprefix("m-lap-us-")) for line in out if line.startswith("m-lap-us-")]
        assert len(laps) == 2 and abs((laps[1] - laps[0]) - want_us) <= 1
        assert client.cmd("results")[:-1] == out[out.index("m-infer-done") + 1 : -1]
        exits.append(ref.exit)
    assert 0 < sum(e == 0 for e in exits) < len(exits), "the fixture should exercise both exits"


def test_profile_says_the_timing_is_virtual(served, project):
    board, client = served
    m = load_manifest(project)
    out = client.cmd("profile")
    assert out[0] == "m-profile-[eenn-fw-0.1.0]"
    assert kv(out, "model") == "eenn"
    assert kv(out, "eenn-hash") == m.bundle_hash
    assert kv(out, "eenn-stages") == "2"
    assert kv(out, "eenn-confidence") == m.confidence
    assert kv(out, "eenn-input-bytes") == str(m.input.size)
    assert kv(out, "eenn-threshold-q") == str(m.stages[0].threshold_q)
    assert kv(out, "eenn-tick-hz") == f"{TICK_HZ[0]},{TICK_HZ[1]}"
    assert kv(out, "eenn-timing") == TIMING_NOTE
    assert client.cmd("name") == ["m-name-dut-[eenn]", "m-ready"]


@pytest.fixture(scope="module")
def plain_board(tmp_path_factory):
    board = VirtualBoard(int8_project(tmp_path_factory, "plain"))
    path = board.open_pty()
    board.serve_in_thread()
    client = Client(path)
    yield board, client
    client.close()
    board.close()


def _sample(board: VirtualBoard, i: int = 0) -> np.ndarray:
    chain = Int8Chain(board.project_dir)
    x = np.load(board.project_dir / "fixture_test.npz")["x"][i]
    return chain.quantize_input(x).reshape(-1)


def _assert_recovers(client: Client, q: np.ndarray) -> None:
    """The next valid commands after an error work: a full load and inference."""
    assert client.cmd("name") == ["m-name-dut-[eenn]", "m-ready"]
    assert load(client, q)[0] == "m-load-done"
    out = client.cmd("infer 1 0")
    assert "m-infer-done" in out and out[-1] == "m-ready"


def test_garbage_bytes_answer_an_error_and_resync(plain_board):
    board, client = plain_board
    q = _sample(board)
    out = client.raw(bytes(range(0, 256)).replace(b"%", b"") + b"%")
    assert len(out) == 2 and out[0].startswith("e-[Unknown command: ") and out[0].endswith("]")
    assert all(0x20 <= ord(ch) <= 0x7E for ch in out[0])
    out = client.raw(b"\xff\xfe\x00zz[]%")
    assert out == ["e-[Unknown command: ???zz??]", "m-ready"]
    _assert_recovers(client, q)


def test_truncated_db_load_is_refused_by_infer_and_crc(plain_board):
    board, client = plain_board
    q = _sample(board, 1)
    n = q.size
    client.cmd(f"db load {n}")
    client.cmd("db " + q[:10].astype(np.int8).tobytes().hex())
    assert client.cmd("infer 1 0") == [f"e-[infer: input incomplete (10 of {n} bytes loaded)]", "m-ready"]
    assert client.cmd("db crc 00000000") == [f"e-[db crc: input incomplete (10 of {n} bytes loaded)]", "m-ready"]
    # too many bytes for what is left, odd digits, bad hex: the chunk is refused whole
    assert client.cmd("db " + "00" * (n - 9)) == [f"e-[db: {n - 9} bytes exceed the {n - 10} bytes still expected]",
                                                 "m-ready"]
    assert client.cmd("db 123") == ["e-[db: odd number of hex digits (3)]", "m-ready"]
    assert client.cmd("db 00zz") == ["e-[db: invalid hex digit 'zz' at offset 2]", "m-ready"]
    # the load goes on where it was: the rest completes it
    done = client.cmd("db " + q[10:].astype(np.int8).tobytes().hex())
    assert done[0] == "m-load-done"
    assert kv(done, "eenn-crc32") == f"{zlib.crc32(q.astype(np.int8).tobytes()):08x}"
    # a length mismatch at `db load`
    assert client.cmd(f"db load {n + 1}") == [
        f"e-[db load: {n + 1} bytes, the model input is {n} bytes ({n} int8 values); input discarded]", "m-ready"]
    assert client.cmd("db load x7") == ["e-[db load: 'x7' is not a byte count]", "m-ready"]
    assert client.cmd("db 00") == ["e-[db: no load in progress; send 'db load N' first]", "m-ready"]
    _assert_recovers(client, q)


def test_over_long_line_is_refused_and_the_parser_resyncs(plain_board):
    board, client = plain_board
    q = _sample(board, 2)
    out = client.raw(b"db " + b"00" * 2000 + b"%")
    assert out == ["e-[Line too long: more than 256 characters]", "m-ready"]
    out = client.raw(b"x" * 100_000 + b"%")
    assert out == ["e-[Line too long: more than 256 characters]", "m-ready"]
    _assert_recovers(client, q)


def test_wrong_checksum_discards_the_input(plain_board):
    board, client = plain_board
    q = _sample(board, 3)
    crc = zlib.crc32(q.astype(np.int8).tobytes())
    load(client, q)
    wrong = crc ^ 0x00010000
    assert client.cmd(f"db crc {wrong:08x}") == [
        f"e-[db crc: mismatch, loaded input has {crc:08x}, expected {wrong:08x}; input discarded]", "m-ready"]
    assert client.cmd("infer 1 0") == ["e-[infer: no input loaded]", "m-ready"]
    assert client.cmd("db crc nothex!!") == ["e-[db crc: 'nothex!!' is not 8 hex digits]", "m-ready"]
    _assert_recovers(client, q)


def test_argument_errors(plain_board):
    board, client = plain_board
    assert client.cmd("infer 0") == ["e-[infer: '0' is not an iteration count (1..1000000)]", "m-ready"]
    assert client.cmd("infer 1 -1") == ["e-[infer: '-1' is not a warmup count (0..1000000)]", "m-ready"]
    assert client.cmd("infer 1 2 3") == ["e-[Too many arguments for 'infer']", "m-ready"]
    assert client.cmd("name now") == ["e-[Too many arguments for 'name']", "m-ready"]
    assert client.cmd("db") == ["e-[Command 'db' requires a subcommand]", "m-ready"]
    assert client.cmd("db load") == ["e-[Command 'db load' requires the # of bytes]", "m-ready"]
    assert client.cmd("eenn-mode loud") == ["e-[eenn-mode: expected 'energy' or 'performance']", "m-ready"]
    assert client.cmd("") == ["m-ready"]
    assert client.raw(b"\r\n  name \t%") == ["m-name-dut-[eenn]", "m-ready"]


def test_energy_mode_pulses_the_timestamp_pin_instead_of_printing(plain_board):
    board, client = plain_board
    q = _sample(board, 4)
    assert client.cmd("eenn-mode energy") == ["m-timestamp-mode-energy", "m-ready"]
    before = len(board.fw.pulses)
    assert client.cmd("timestamp") == ["m-ready"]
    load(client, q)
    out = client.cmd("infer 3 1")
    assert not any(line.startswith("m-lap-us-") for line in out)
    assert len(board.fw.pulses) == before + 3
    assert board.fw.pulses[-1] > board.fw.pulses[-2]  # the inferences took virtual time
    assert client.cmd("eenn-mode performance") == ["m-timestamp-mode-performance", "m-ready"]
    assert client.cmd("timestamp")[0].startswith("m-lap-us-")


def test_core1_timeout_answers_an_error_and_the_board_recovers(plain_board):
    board, client = plain_board
    chain = Int8Chain(board.project_dir)
    xs = np.load(board.project_dir / "fixture_test.npz")["x"]
    passing = next(chain.quantize_input(x).reshape(-1) for x in xs if chain.run(x).exit == 1)
    load(client, passing)
    t_start = board.fw.time_ns()
    board.fw.set_core_alive(1, False)
    try:
        out = client.cmd("infer 1 0")
        assert out[:3] == ["m-warmup-start-0", "m-warmup-done", "m-infer-start-1"]
        assert re.fullmatch(r"m-lap-us-\d+", out[3])
        assert out[4:] == ["e-[infer failed: handoff timeout]", "m-ready"]
        t_fail = board.fw.time_ns()
        assert client.cmd("results") == [f"e-[{NO_RESULT}]", "m-ready"]
    finally:
        board.fw.set_core_alive(1, True)
    out = client.cmd("infer 1 0")
    assert kv(out, "eenn-exit") == "1"
    # the runtime waited out the handoff timeout (1 s of virtual time) before giving up
    assert 1_000_000_000 <= t_fail - t_start <= 1_010_000_000


def test_socket_transport(tmp_path_factory):
    with VirtualBoard(int8_project(tmp_path_factory, "plain")) as board:
        url = board.open_socket(0)
        board.serve_in_thread()
        client = Client(url)
        try:
            assert client.cmd("name") == ["m-name-dut-[eenn]", "m-ready"]
        finally:
            client.close()


def _results_block(out: list[str]) -> list[str]:
    """The results block of an `infer` reply, without the line that names the input's CRC."""
    block = out[out.index("m-infer-done") + 1 : -1]
    return [line for line in block if not line.startswith("m-eenn-crc32-")]


def test_refused_load_leaves_no_stale_input_and_no_stale_result(plain_board):
    """A refused `db load` after a complete one: `infer` is an error, not the old sample's answer."""
    board, client = plain_board
    a, b = _sample(board, 5), _sample(board, 6)
    n = a.size
    load(client, a)
    assert "m-infer-done" in client.cmd("infer 1 0")
    out = client.cmd(f"db load {n * 4}")  # e.g. a runner sending float32 bytes to an int8 board
    assert out == [f"e-[db load: {n * 4} bytes, the model input is {n} bytes ({n} int8 values); input discarded]",
                   "m-ready"]
    assert client.cmd("infer 1 0") == ["e-[infer: no input loaded]", "m-ready"]
    assert client.cmd("results") == [f"e-[{NO_RESULT}]", "m-ready"]
    assert client.cmd("db print") == ["m-ready"]
    # fewer bytes than announced
    client.cmd(f"db load {n}")
    client.cmd("db " + b[:31].astype(np.int8).tobytes().hex())
    assert client.cmd("infer 1 0") == [f"e-[infer: input incomplete (31 of {n} bytes loaded)]", "m-ready"]
    # infer 0 0 is refused and clears the result: `results` cannot hand out the previous one
    load(client, b)
    assert "m-infer-done" in client.cmd("infer 1 0")
    assert client.cmd("infer 0 0") == ["e-[infer: '0' is not an iteration count (1..1000000)]", "m-ready"]
    assert client.cmd("results") == [f"e-[{NO_RESULT}]", "m-ready"]
    # the next complete load answers for itself
    out = client.cmd("infer 1 0")
    assert kv(out, "eenn-crc32") == f"{zlib.crc32(b.astype(np.int8).tobytes()):08x}"


def _converted_vs_int8(client: Client, data: bytes, input_type: str, chain: Int8Chain, want_q: np.ndarray) -> None:
    """Load `data` as input_type (31-byte chunks, as the MLPerf runner), then the converted int8."""
    assert client.cmd(f"eenn-input {input_type}")[0].startswith(f"m-eenn-input-[{input_type}")
    done = load(client, data, chunk=31)
    assert done[0] == "m-load-done" and kv(done, "eenn-crc32") == f"{zlib.crc32(data):08x}"
    shown = [b for line in client.cmd("db print")[:-1] for b in line.removeprefix("m-buffer-").split("-")]
    assert bytes.fromhex("".join(shown)) == want_q.astype(np.int8).tobytes()
    typed = client.cmd("infer 1 0")
    assert client.cmd("eenn-input int8")[0] == "m-eenn-input-[int8]"
    load(client, want_q)
    plain = client.cmd("infer 1 0")
    assert _results_block(typed) == _results_block(plain)
    ref = chain.run_quantized(want_q)
    assert int(kv(typed, "eenn-class")) == ref.cls and int(kv(typed, "eenn-exit")) == ref.exit


def test_uint8_and_float32_loads_answer_as_the_int8_load_of_the_converted_input(plain_board):
    """ic01/vww01 send uint8 (the board subtracts 128), ad01 float32 (the board quantizes):
    sample by sample the answer equals the int8 load of the converted input."""
    board, client = plain_board
    chain = Int8Chain(board.project_dir)
    m = load_manifest(board.project_dir)
    xs = np.load(board.project_dir / "fixture_test.npz")["x"][:40]
    try:
        for x in xs:
            q = chain.quantize_input(x).reshape(-1)
            u = encode((q.astype(np.int16) + 128).astype(np.uint8), "uint8")
            assert np.array_equal(to_int8(u, "uint8"), q)
            _converted_vs_int8(client, u, "uint8", chain, q)
            f = encode(np.asarray(x, np.float32).reshape(-1), "float32")
            fq = to_int8(f, "float32", m.input.scale, m.input.zero_point)
            # the float64 host quantizer of the test set agrees but for float32 rounding ties
            assert np.count_nonzero(fq != q) <= 1
            _converted_vs_int8(client, f, "float32", chain, fq)
    finally:
        client.cmd("eenn-input int8")


def test_float32_conversion_at_rounding_ties_and_saturation(plain_board):
    """Values on and next to the rounding halfway points and far outside int8, through the board."""
    board, client = plain_board
    m = load_manifest(board.project_dir)
    n = m.input.size
    s, z = np.float32(m.input.scale), m.input.zero_point
    k = np.arange(n, dtype=np.float32) - n // 2
    halves = (k + np.float32(0.5)) * s
    vals = np.concatenate([halves, np.nextafter(halves, np.float32(np.inf)), np.nextafter(halves, -np.inf),
                           np.array([np.inf, -np.inf, np.nan, 3e38, -3e38, 0.0, -0.0], np.float32)])
    try:
        for i in range(0, vals.size, n):
            chunk = vals[i : i + n]
            chunk = np.concatenate([chunk, np.zeros(n - chunk.size, np.float32)])
            data = encode(chunk, "float32")
            client.cmd("eenn-input float32")
            assert load(client, data, chunk=31)[0] == "m-load-done"
            shown = [b for line in client.cmd("db print")[:-1] for b in line.removeprefix("m-buffer-").split("-")]
            assert bytes.fromhex("".join(shown)) == to_int8(data, "float32", s, z).tobytes()
    finally:
        client.cmd("eenn-input int8")


def test_profile_states_the_input_conversion(plain_board):
    board, client = plain_board
    m = load_manifest(board.project_dir)
    try:
        assert kv(client.cmd("profile"), "eenn-input") == "int8"
        out = client.cmd("eenn-input float32")
        kind, scale, zp = parse_input_line(kv(out, "eenn-input"))
        assert kind == "float32" and scale == float(np.float32(m.input.scale)) and zp == m.input.zero_point
        assert kv(out, "eenn-input-bytes") == str(4 * m.input.size)
        prof = client.cmd("profile")
        assert kv(prof, "eenn-input") == kv(out, "eenn-input") and kv(prof, "eenn-input-bytes") == str(4 * m.input.size)
        assert client.cmd("eenn-input uint8")[:2] == ["m-eenn-input-[uint8 -128]",
                                                      f"m-eenn-input-bytes-[{m.input.size}]"]
    finally:
        client.cmd("eenn-input int8")


def test_client_puts_a_board_left_in_uint8_back_to_int8(tmp_path_factory):
    """After an MLPerf run left the board in uint8, the eenn client's int8 loads still mean int8."""
    with VirtualBoard(int8_project(tmp_path_factory, "plain")) as board:
        url = board.open_socket(0)
        board.serve_in_thread()
        raw = Client(url)
        try:
            assert raw.cmd("eenn-input uint8")[0] == "m-eenn-input-[uint8 -128]"
        finally:
            raw.close()
        q = _sample(board, 7)
        with BoardClient(url, timeout=5) as bc:
            assert bc.info.input_type == "int8" and bc.info.input_bytes == q.size
            res, _ = bc.infer_sample(q.astype(np.int8).tobytes())
            assert res.cls == Int8Chain(board.project_dir).run_quantized(q).cls


@pytest.mark.parametrize("model_id, kind", [("ic01", "uint8"), ("ad01", "float32"), ("kws01", "int8")])
def test_board_starts_in_the_benchmarks_input_type(tmp_path_factory, model_id, kind):
    """A board with an EEMBC model id takes that benchmark's inputs from power-up (the runner
    never sends `eenn-input`): ic01 uint8 images, ad01 float32 features."""
    project = int8_project(tmp_path_factory, "plain")
    m = load_manifest(project)
    with VirtualBoard(project, model_id=model_id) as board:
        prof = board.handle(b"profile%").decode().split("\r\n")
        assert kv(prof, "model") == model_id
        assert parse_input_line(kv(prof, "eenn-input"))[0] == kind
        per = {"float32": 4}.get(kind, 1)
        assert kv(prof, "eenn-input-bytes") == str(per * m.input.size)
