"""Energy meters: the edge-window integrator on synthetic streams, the PPK2 / Joulescope backends
on stand-in drivers (the integration code is real, the device is not), and a run in energy mode."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eenn.errors import EennError
from eenn.hil.meters import EdgeWindows, JoulescopeMeter, Ppk2Meter, SampleBlock, make_meter

RATE = 100_000.0


def _stream(n, edges, pulse, seed):
    rng = np.random.default_rng(seed)
    current = rng.uniform(0.001, 0.05, n)
    voltage = rng.uniform(3.2, 3.4, n)
    pin = np.ones(n, dtype=bool)
    for e in edges:
        pin[e : e + pulse] = False
    return current, voltage, pin


def _split(n, cuts):
    bounds = sorted({0, n, *[c % (n + 1) for c in cuts]})
    return list(zip(bounds[:-1], bounds[1:]))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(0, 10**6), max_size=12),
       pulse=st.integers(1, 8))
def test_energy_between_edge_pairs_is_exact_for_any_block_split(data, seed, cuts, pulse):
    # 2 or 4 falling edges, each pulse released before the next edge
    k = data.draw(st.sampled_from([2, 4]))
    gaps = data.draw(st.lists(st.integers(pulse + 1, 700), min_size=k, max_size=k))
    edges = list(np.cumsum(gaps))
    n = int(edges[-1]) + pulse + data.draw(st.integers(0, 300))
    current, voltage, pin = _stream(n, edges, pulse, seed)
    t0 = data.draw(st.floats(0, 100))
    win = EdgeWindows()
    got = []
    for a, b in _split(n, cuts):
        got += win.feed(SampleBlock(t0 + a / RATE, RATE, current[a:b], voltage[a:b], pin[a:b]))
    assert len(got) == k // 2
    for w, (a, b) in zip(got, zip(edges[::2], edges[1::2])):
        assert w.samples == b - a
        assert w.start_s == pytest.approx(t0 + a / RATE, abs=1e-9)
        assert w.duration_s == pytest.approx((b - a) / RATE, rel=1e-6)
        assert w.energy_j == pytest.approx(float(np.sum(current[a:b] * voltage[a:b]) / RATE), rel=1e-9)
        assert w.charge_c == pytest.approx(float(np.sum(current[a:b]) / RATE), rel=1e-9)


def test_stream_starting_low_has_no_edge_and_reset_drops_an_open_window():
    win = EdgeWindows()
    low = np.zeros(10, dtype=bool)
    assert win.feed(SampleBlock(0, RATE, np.ones(10), 3.3, low)) == []  # starts low: no predecessor
    pin = np.array([1, 1, 0, 1, 1, 1, 1, 1], dtype=bool)
    assert win.feed(SampleBlock(0, RATE, np.ones(8), 3.3, pin)) == []  # low→high→low: one edge (at 2)
    win.reset_pairing()
    pin2 = np.array([1, 0, 1, 1, 0, 1], dtype=bool)
    (w,) = win.feed(SampleBlock(0, RATE, np.full(6, 2.0), 1.0, pin2))
    assert w.samples == 3 and w.energy_j == pytest.approx(6.0 / RATE)


class _FakePpk2Api:
    """Stands in for ppk2_api.ppk2_api.PPK2_API: a recorded stream of (µA, digital bits) chunks."""

    chunks: list = []
    log: list = []

    def __init__(self, port, **kw):
        self.log.append(("open", port, kw.get("exclusive")))

    @staticmethod
    def list_devices():
        return [("/dev/ttyACM9", "C0FFEE")]

    def get_modifiers(self):
        self.log.append("get_modifiers")

    def use_source_meter(self):
        self.log.append("source")

    def use_ampere_meter(self):
        self.log.append("ampere")

    def set_source_voltage(self, mv):
        self.log.append(("voltage_mv", mv))

    def toggle_DUT_power(self, state):
        self.log.append(("power", state))

    def start_measuring(self):
        self.log.append("start")

    def stop_measuring(self):
        self.log.append("stop")

    def get_data(self):
        return self.chunks.pop(0) if self.chunks else b""

    def get_samples(self, buf):
        return list(buf["ua"]), list(buf["bits"])

    def digital_channels(self, bits):
        return [[(b >> ch) & 1 for b in bits] for ch in range(8)]


def _install(monkeypatch, name, module):
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        mod = types.ModuleType(".".join(parts[:i]))
        if i == len(parts):
            mod.__dict__.update(module)
        monkeypatch.setitem(sys.modules, ".".join(parts[:i]), mod)


def test_ppk2_backend_integrates_between_pin_edges_on_d3(monkeypatch):
    n = 2000
    ua = np.full(n, 1000.0)
    ua[500:1500] = 12_000.0  # 12 mA while the inference runs
    bits = np.full(n, 0b00001000)  # D3 high (released), other channels low
    bits[500:510] = 0
    bits[1500:1510] = 0
    _FakePpk2Api.chunks = [{"ua": ua[a:b], "bits": bits[a:b]} for a, b in ((0, 700), (700, 1234), (1234, n))]
    _FakePpk2Api.log = []
    _install(monkeypatch, "ppk2_api.ppk2_api", {"PPK2_API": _FakePpk2Api})
    meter = Ppk2Meter(voltage_v=3.0, channel=3)
    meter.start()
    win = EdgeWindows()
    got = []
    for _ in range(5):
        got += win.feed(meter.read())
    meter.stop()
    assert len(got) == 1
    assert got[0].energy_j == pytest.approx(0.012 * 3.0 * 1000 / 100_000)
    assert got[0].start_s == pytest.approx(0.005)
    assert ("open", "/dev/ttyACM9", True) in _FakePpk2Api.log and ("voltage_mv", 3000) in _FakePpk2Api.log
    assert _FakePpk2Api.log[-1] == "stop"


def test_joulescope_backend_reads_gpi0_from_the_current_lsb(monkeypatch):
    n = 1000
    cur = np.full(n, 0.002)
    volt = np.full(n, 3.3)
    lsb = np.ones(n)
    lsb[100:105] = 0
    lsb[600:605] = 0

    class Buffer:
        def __init__(self):
            self.end = 0

        @property
        def sample_id_range(self):
            self.end = min(n, self.end + 400)
            return 0, self.end

        def samples_get(self, a, b, fields):
            return {"current": cur, "voltage": volt, "current_lsb": lsb}[fields][a:b]

    class Device:
        params = {}
        stream_buffer = Buffer()

        def open(self):
            pass

        def parameter_set(self, k, v):
            self.params[k] = v

        def start(self, stop_fn=None):
            pass

        def stop(self):
            pass

        def close(self):
            pass

    _install(monkeypatch, "joulescope", {"scan_require_one": lambda config: Device()})
    meter = JoulescopeMeter(rate_hz=1000)
    meter.start()
    assert Device.params["current_lsb"] == "gpi0"
    win = EdgeWindows()
    got = []
    for _ in range(4):
        got += win.feed(meter.read())
    meter.stop()
    assert len(got) == 1 and got[0].samples == 500
    assert got[0].energy_j == pytest.approx(0.002 * 3.3 * 0.5)


def test_missing_driver_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "ppk2_api", None)
    with pytest.raises(EennError, match="pip install ppk2-api"):
        Ppk2Meter().start()
    monkeypatch.setitem(sys.modules, "joulescope", None)
    with pytest.raises(EennError, match="pip install joulescope"):
        make_meter("joulescope").start()
    with pytest.raises(EennError, match="ppk2"):
        make_meter("fluke")


class VirtualBoardMeter:
    """A meter on the virtual board: its timestamp pulses (virtual ns) become falling edges in a
    1 MHz stream at a constant 10 mA × 3.3 V; real time passes between reads (1 ms idle)."""

    name = "virtual-meter"
    RATE = 1_000_000

    def __init__(self, board):
        self.board = board
        self.seen = 0
        self.t = 0.0

    def start(self):
        self.seen = len(self.board.fw.pulses)

    def stop(self):
        pass

    def read(self):
        pulses = self.board.fw.pulses[self.seen :]
        self.seen += len(pulses)
        idle = 1000  # samples of idle time before what happened since the last read
        span = 0 if not pulses else int(round((pulses[-1] - pulses[0]) / 1000)) + 200
        pin = np.ones(idle + span, dtype=bool)
        for p in pulses:
            at = idle + int(round((p - pulses[0]) / 1000))
            pin[at : at + 100] = False  # held low ~100 us, as the firmware does
        block = SampleBlock(self.t, self.RATE, np.full(len(pin), 0.010), 3.3, pin)
        self.t += len(pin) / self.RATE
        return block


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
def test_run_in_energy_mode_takes_the_meter_energy(tmp_path_factory, tmp_path):
    from eenn.hil.run import RunOptions, run
    from eenn.hil.virtual_board import VirtualBoard
    from tests.hil_fixture import hil_pair

    pair = hil_pair(tmp_path_factory)
    board = VirtualBoard(pair.project)
    url = board.open_socket(0)
    board.serve_in_thread()
    try:
        res = run(RunOptions(port=url, out=tmp_path / "s", bundle=pair.bundle, project=pair.project, limit=20,
                             meter=VirtualBoardMeter(board), progress=False, plots=False))
    finally:
        board.close()
    s = res.summary.document
    assert s["energy_source"] == "meter: virtual-meter" and not s["complete"] and s["n"] == 20
    import json

    recs = [json.loads(line) for line in (tmp_path / "s" / "results.jsonl").read_text().splitlines()]
    for r in recs:
        assert r["lap_us"] is None  # energy mode: pulses, not m-lap-us lines
        assert r["meter_window_s"] == pytest.approx(r["elapsed_us"] * 1e-6, abs=2e-6)
        assert r["meter_j"] == pytest.approx(0.033 * r["elapsed_us"] * 1e-6, abs=0.033 * 2e-6)
    assert s["metrics"]["mean_energy_j"]["measured"] == pytest.approx(np.mean([r["meter_j"] for r in recs]))
    assert s["metrics"]["mean_energy_j"]["datasheet"] != s["metrics"]["mean_energy_j"]["measured"]
