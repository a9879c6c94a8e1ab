"""The protocol client against the virtual board: identification, loads, results, recovery."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from eenn.codegen.reference import Int8Chain
from eenn.hil.client import (BoardClient, BoardErrorReply, ConnectionLost, ProtocolError, ProtocolTimeout,
                             WrongBoard, parse_results, resolve_port)
from eenn.hil.virtual_board import TIMING_NOTE, VirtualBoard
from tests.hil_fixture import hil_pair

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return hil_pair(tmp_path_factory)


@pytest.fixture(scope="module")
def board(pair):
    b = VirtualBoard(pair.project)
    b.open_pty()
    b.serve_in_thread()
    yield b
    b.close()


@pytest.fixture
def client(board, pair):
    c = BoardClient(board.pty_path, expected_hash=pair.bundle_hash, timeout=5)
    c.open()
    yield c
    c.close()


def _q(pair, i):
    chain = Int8Chain(pair.project)
    x = np.load(pair.data)["x"][i]
    return chain.quantize_input(x).astype(np.int8).tobytes()


def test_identify_reports_the_profile(client, pair):
    info = client.info
    assert info.name == "eenn" and info.hash == pair.bundle_hash
    assert info.stages == 2 and info.input_bytes == 64 and info.classes == [3, 3]
    assert info.tick_hz == [100_000_000, 150_000_000]
    assert info.timing == TIMING_NOTE and not info.measured
    assert info.mode == "performance"


def test_samples_match_the_int8_chain(client, pair):
    for i in range(12):
        res, attempts = client.infer_sample(_q(pair, i))
        assert attempts == 1
        assert (res.cls, res.exit) == (pair.ref_class[i], pair.ref_exit[i])
        assert len(res.ticks) == 2 and res.lap_us == res.elapsed_us


def test_wrong_hash_is_refused_with_the_fix(board):
    c = BoardClient(board.pty_path, expected_hash="ab" * 32, timeout=5)
    with pytest.raises(WrongBoard, match="eenn flash"):
        c.open()
    c.close()


def test_garbage_in_the_stream_is_resynced(client, pair, board):
    # a half-sent command and binary junk left on the line: the next sample still works
    client._write(b"db load 64\xff\x00garbage")
    res, attempts = client.infer_sample(_q(pair, 3))
    assert (res.cls, res.exit) == (pair.ref_class[3], pair.ref_exit[3])
    # junk already in the receive buffer is skipped by the resync idiom
    client._buf += b"m-ready\r\ne-[noise]\r\n"
    client.sync()
    assert client.command("name") == ["m-name-dut-[eenn]"]


def test_board_error_is_reported_not_retried(client):
    with pytest.raises(BoardErrorReply, match="is not an iteration count"):
        client.command("infer 0")
    assert client.command("name") == ["m-name-dut-[eenn]"]


def test_silent_state_loss_is_retried(client, pair, board):
    """A board that forgot its input between load and infer (a reset without a banner) is
    answered with a reload: the hook discards the input just before `infer` once."""
    calls = []

    def discard_once():
        if not calls:
            calls.append(1)
            client.command("db load 64")  # starts a new load: the old input is gone
    res, attempts = client.infer_sample(_q(pair, 5), before_infer=discard_once)
    assert attempts == 2 and client.recoveries >= 1
    assert (res.cls, res.exit) == (pair.ref_class[5], pair.ref_exit[5])


def test_timeout_on_a_silent_port(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    url = f"socket://127.0.0.1:{srv.getsockname()[1]}"
    c = BoardClient(url, timeout=0.3, reconnect_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(ProtocolTimeout):
        c.open()
    assert time.monotonic() - t0 < 3
    c.close()
    srv.close()


def test_unopenable_port_is_one_clear_error():
    c = BoardClient("/dev/does-not-exist-eenn", reconnect_s=0.2)
    with pytest.raises(ConnectionLost, match="eenn hil ports"):
        c.open()


def test_board_restarted_on_the_same_socket_is_reconnected(pair):
    """The port goes away and comes back (a reset that re-enumerates USB): the client reopens,
    re-identifies and finishes the sample."""
    b1 = VirtualBoard(pair.project)
    url = b1.open_socket(0)
    port = int(url.rsplit(":", 1)[1])
    b1.serve_in_thread()
    c = BoardClient(url, expected_hash=pair.bundle_hash, timeout=2, reconnect_s=20)
    c.open()
    res, _ = c.infer_sample(_q(pair, 0))
    b1.close()
    holder = {}

    def restart():
        time.sleep(0.5)
        b2 = VirtualBoard(pair.project)
        b2.open_socket(port)
        b2.serve_in_thread()
        holder["b"] = b2

    t = threading.Thread(target=restart)
    t.start()
    try:
        res, attempts = c.infer_sample(_q(pair, 7))
        assert attempts >= 2
        assert (res.cls, res.exit) == (pair.ref_class[7], pair.ref_exit[7])
    finally:
        t.join()
        c.close()
        holder["b"].close()


def test_parse_results_rejects_a_truncated_block():
    with pytest.raises(ProtocolError, match="m-eenn-exit"):
        parse_results(["m-results-[0.1]", "m-eenn-class-[1]"])


def test_virtual_port_needs_a_project():
    with pytest.raises(Exception, match="--project"):
        resolve_port("virtual")


class _Loopback:
    """A serial port wired straight into a VirtualBoard's firmware (no transport), like a
    KitProg3 USB-UART bridge: the port stays open when the board behind it resets."""

    def __init__(self, board):
        self.board = board
        self.out = bytearray()
        self.timeout = 0.1

    @property
    def in_waiting(self):
        return len(self.out)

    def read(self, n):
        if not self.out:
            time.sleep(0.005)
            return b""
        data = bytes(self.out[:n])
        del self.out[:n]
        return data

    def write(self, data):
        self.out += self.board.handle(bytes(data))
        return len(data)

    def close(self):
        pass


def test_reset_behind_an_open_port_is_detected_by_its_banner(pair):
    port = _Loopback(VirtualBoard(pair.project))
    c = BoardClient("loopback", expected_hash=pair.bundle_hash, timeout=2, opener=lambda url, t: port)
    c.open()
    for i in range(3):
        c.infer_sample(_q(pair, i))
    old = port.board
    port.board = VirtualBoard(pair.project)  # the board resets: fresh firmware, its boot banner on the line
    port.out += port.board._banner
    old.close()
    try:
        assert b"m-init-done" in port.out
        res, attempts = c.infer_sample(_q(pair, 9))
        assert attempts == 2 and c.resets_seen == 1 and c.recoveries == 1
        assert (res.cls, res.exit) == (pair.ref_class[9], pair.ref_exit[9])
    finally:
        port.board.close()


class _LosesOneReply(_Loopback):
    """A link that loses the whole answer to the `lose`-th command sent (1: the first resync,
    2: `name`, 3: `profile`), as a USB-UART bridge dropping a burst would."""

    def __init__(self, board, lose: int):
        super().__init__(board)
        self.lose, self.sent = lose, 0

    def write(self, data):
        self.sent += 1
        reply = self.board.handle(bytes(data))
        if self.sent != self.lose:
            self.out += reply
        return len(data)


@pytest.mark.parametrize("lose", [1, 2, 3], ids=["sync", "name", "profile"])
def test_a_reply_lost_during_the_handshake_is_retried(pair, lose):
    port = _LosesOneReply(VirtualBoard(pair.project), lose)
    try:
        c = BoardClient("lossy", expected_hash=pair.bundle_hash, timeout=0.3, retries=10,
                        opener=lambda url, t: port)
        info = c.open()
        assert info.hash == pair.bundle_hash and port.sent > 3  # the handshake was held again
        res, attempts = c.infer_sample(_q(pair, 2))
        assert attempts == 1 and (res.cls, res.exit) == (pair.ref_class[2], pair.ref_exit[2])
    finally:
        port.board.close()


def test_a_handshake_without_retries_left_names_what_failed(pair):
    port = _LosesOneReply(VirtualBoard(pair.project), 2)
    try:
        c = BoardClient("lossy", expected_hash=pair.bundle_hash, timeout=0.3, retries=0, opener=lambda url, t: port)
        with pytest.raises(ProtocolTimeout, match=r"lossy: the board did not complete the start-up handshake "
                                                  r"\(resync, name, profile\) in 1 attempt"):
            c.open()
    finally:
        port.board.close()
