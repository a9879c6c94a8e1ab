"""External energy meters: one interface, a pure integrator, backends for PPK2 and Joulescope.

The board, put in energy mode (`eenn-mode energy`), marks the timed inference with two falling
edges on its open-drain timestamp pin (docs/protocol.md §2.3–2.4). The meter samples the
board's supply current (and voltage) together with that pin on a digital input; the energy of
the inference is the integral of current × voltage between the two edges.

- `SampleBlock`: a run of evenly spaced samples (start time, rate, current A, voltage V,
  pin level).
- `EdgeWindows`: the pure part. Fed blocks in order (any split), it finds falling edges and
  integrates between successive pairs; tested on synthetic streams.
- `EnergyMeter`: `start()`, `read()` (the samples since the last read), `stop()`.
  `Ppk2Meter` (Nordic PPK2, package `ppk2-api`) and `JoulescopeMeter` (package `joulescope`)
  import their driver only when opened, and say what to install when it is missing.
"""
from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass

import numpy as np

from eenn.errors import EennError


@dataclass(frozen=True)
class SampleBlock:
    t0_s: float  # time of the first sample (meter clock)
    rate_hz: float
    current_a: np.ndarray
    voltage_v: np.ndarray | float  # per sample, or one supply voltage for the whole block
    pin: np.ndarray  # timestamp pin level per sample (True = high / released)

    def __post_init__(self):
        if self.rate_hz <= 0:
            raise ValueError("rate_hz must be positive")
        n = len(self.current_a)
        if len(self.pin) != n or (np.ndim(self.voltage_v) and len(self.voltage_v) != n):
            raise ValueError("current, voltage and pin must have one value per sample")

    def __len__(self) -> int:
        return len(self.current_a)

    @classmethod
    def empty(cls, rate_hz: float = 1.0) -> SampleBlock:
        return cls(0.0, rate_hz, np.zeros(0), 0.0, np.zeros(0, dtype=bool))


@dataclass(frozen=True)
class Window:
    start_s: float  # time of the opening falling edge (first low sample)
    end_s: float  # time of the closing falling edge
    energy_j: float
    charge_c: float
    samples: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class EdgeWindows:
    """Integrates power between pairs of falling edges of the timestamp pin, across blocks.

    Each sample stands for the interval [t, t + 1/rate): a window opened by the falling edge at
    sample a and closed by the one at sample b holds samples a .. b−1. The pin is idle high
    (open drain); a falling edge is a high sample followed by a low one (the very first sample
    of a stream has no predecessor and cannot be an edge).
    """

    def __init__(self):
        self._last_level: bool | None = None
        self._open: tuple[float, float, float, int] | None = None  # start_s, energy, charge, samples

    def reset_pairing(self) -> None:
        """Forget an open window (an edge whose partner will not come); the pin level is kept."""
        self._open = None

    def feed(self, block: SampleBlock) -> list[Window]:
        n = len(block)
        if n == 0:
            return []
        dt = 1.0 / block.rate_hz
        pin = np.asarray(block.pin, dtype=bool)
        cur = np.asarray(block.current_a, dtype=np.float64)
        volt = np.broadcast_to(np.asarray(block.voltage_v, dtype=np.float64), cur.shape)
        power = cur * volt
        prev = np.concatenate([[self._last_level if self._last_level is not None else pin[0]], pin[:-1]])
        edges = np.flatnonzero(prev & ~pin)
        self._last_level = bool(pin[-1])
        out: list[Window] = []
        pos = 0
        # cumulative sums give each window's energy in O(1) per window
        ce = np.concatenate([[0.0], np.cumsum(power) * dt])
        cq = np.concatenate([[0.0], np.cumsum(cur) * dt])
        for e in edges:
            if self._open is not None:
                start, energy, charge, count = self._open
                energy += ce[e] - ce[pos]
                charge += cq[e] - cq[pos]
                out.append(Window(start, block.t0_s + e * dt, float(energy), float(charge), count + int(e - pos)))
                self._open = None
            else:
                self._open = (block.t0_s + e * dt, 0.0, 0.0, 0)
            pos = e
        if self._open is not None:
            start, energy, charge, count = self._open
            self._open = (start, energy + ce[n] - ce[pos], charge + cq[n] - cq[pos], count + int(n - pos))
        return out


class EnergyMeter(abc.ABC):
    """A sampling energy meter with a digital input wired to the board's timestamp pin."""

    name = "meter"

    @abc.abstractmethod
    def start(self) -> None:
        """Open the device and start streaming."""

    @abc.abstractmethod
    def read(self) -> SampleBlock:
        """Every sample since the previous read (possibly none), in order."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop streaming and release the device."""


def _require(module: str, package: str, meter: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EennError(f"the {meter} meter needs the Python package '{package}': pip install {package} "
                        f"(or pip install 'eenn[meters]'); import of {module} failed: {exc}") from None


class Ppk2Meter(EnergyMeter):
    """Nordic Power Profiler Kit II through `ppk2-api`: 100 kS/s current, 8 digital inputs.

    Source-meter mode (the PPK2 powers the board at `voltage_v`) or ampere-meter mode (the
    board has its own supply, `voltage_v` is that supply's voltage). The timestamp pin goes to
    digital input `channel` (D0..D7).
    """

    name = "ppk2"
    RATE_HZ = 100_000

    def __init__(self, port: str | None = None, *, voltage_v: float = 3.3, channel: int = 0, source: bool = True):
        if not 0 <= channel <= 7:
            raise EennError(f"PPK2 digital channel {channel}: must be 0..7")
        self.port, self.voltage_v, self.channel, self.source = port, voltage_v, channel, source
        self._dev = None
        self._t = 0.0

    def start(self) -> None:
        mod = _require("ppk2_api.ppk2_api", "ppk2-api", "PPK2")
        api = mod.PPK2_API
        port = self.port
        if port is None:
            found = api.list_devices()
            if len(found) != 1:
                raise EennError(f"{len(found)} PPK2s found; pass the one to use with --meter ppk2:PORT")
            port = found[0][0] if isinstance(found[0], (tuple, list)) else found[0]
        dev = api(port, timeout=1, write_timeout=1, exclusive=True)
        dev.get_modifiers()
        if self.source:
            dev.use_source_meter()
            dev.set_source_voltage(int(round(self.voltage_v * 1000)))
            dev.toggle_DUT_power("ON")
        else:
            dev.use_ampere_meter()
        dev.start_measuring()
        self._dev = dev
        self._t = 0.0

    def read(self) -> SampleBlock:
        raw = self._dev.get_data()
        if not raw:
            return SampleBlock.empty(self.RATE_HZ)
        got = self._dev.get_samples(raw)
        if not isinstance(got, tuple):
            raise EennError("this ppk2-api version returns no digital channels; upgrade it: pip install -U ppk2-api")
        samples_ua, bits = got
        pin = np.asarray(self._dev.digital_channels(bits)[self.channel], dtype=bool)
        return self._block(np.asarray(samples_ua, dtype=np.float64), pin)

    def _block(self, samples_ua: np.ndarray, pin: np.ndarray) -> SampleBlock:
        n = min(len(samples_ua), len(pin))
        block = SampleBlock(self._t, self.RATE_HZ, samples_ua[:n] * 1e-6, self.voltage_v, pin[:n])
        self._t += n / self.RATE_HZ
        return block

    def stop(self) -> None:
        if self._dev is not None:
            try:
                self._dev.stop_measuring()
            finally:
                self._dev = None


class JoulescopeMeter(EnergyMeter):
    """Joulescope (JS110/JS220, package `joulescope`): current and voltage, GPI0 as the pin.

    GPI0 is routed into the current's least significant bit (`current_lsb = gpi0`), as the
    Joulescope tools do for triggers.
    """

    name = "joulescope"

    def __init__(self, *, rate_hz: int = 1_000_000, io_voltage: str = "3.3V"):
        self.rate_hz, self.io_voltage = rate_hz, io_voltage
        self._dev = None
        self._next_id: int | None = None

    def start(self) -> None:
        js = _require("joulescope", "joulescope", "Joulescope")
        try:
            dev = js.scan_require_one(config="auto")
        except Exception as exc:  # noqa: BLE001 - the driver raises its own types
            raise EennError(f"no Joulescope found ({exc}); is it connected?") from None
        dev.open()
        dev.parameter_set("sampling_frequency", self.rate_hz)
        dev.parameter_set("io_voltage", self.io_voltage)
        dev.parameter_set("current_lsb", "gpi0")
        dev.parameter_set("i_range", "auto")
        dev.start(stop_fn=None)
        self._dev = dev
        self._next_id = None

    def read(self) -> SampleBlock:
        sb = self._dev.stream_buffer
        first, end = sb.sample_id_range
        if self._next_id is None or self._next_id < first:
            self._next_id = first
        if end <= self._next_id:
            return SampleBlock.empty(self.rate_hz)
        start = self._next_id
        current = np.asarray(sb.samples_get(start, end, fields="current"), dtype=np.float64).reshape(-1)
        voltage = np.asarray(sb.samples_get(start, end, fields="voltage"), dtype=np.float64).reshape(-1)
        pin = np.asarray(sb.samples_get(start, end, fields="current_lsb")).reshape(-1) > 0
        self._next_id = end
        return SampleBlock(start / self.rate_hz, self.rate_hz, current, voltage, pin)

    def stop(self) -> None:
        if self._dev is not None:
            try:
                self._dev.stop()
                self._dev.close()
            finally:
                self._dev = None


def make_meter(spec: str | None) -> EnergyMeter | None:
    """`--meter` values: none | ppk2[:PORT] | joulescope."""
    if spec in (None, "", "none"):
        return None
    kind, _, arg = spec.partition(":")
    if kind == "ppk2":
        return Ppk2Meter(arg or None)
    if kind == "joulescope":
        return JoulescopeMeter()
    raise EennError(f"--meter {spec}: expected none, ppk2[:PORT] or joulescope")
