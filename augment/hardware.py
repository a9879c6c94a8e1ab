"""Hardware descriptions: processors in the order they are used and the links between them.

A profile is TOML, validated field by field so that a typo in a user's file fails with the
file, the field and what was expected. Built-in profiles live in `augment/profiles/`.

Clock plans: a profile may list `[[clock_plan]]` tables, the clock settings a project for that
hardware can really run (`psoc6`: the BSP default and a faster CM4). Its `[[processor]]` figures
are then given at each processor's `clock_hz` (the reference), and the profile the search runs on
is the plan's (`with_clock_plan`): clock_hz set to the plan's, MAC rate and active power scaled by
plan clock / reference clock (fixed voltage: energy per cycle constant), the per-layer overhead
by the inverse (a fixed number of cycles), a link's bytes/s by its source processor's ratio (a
copy by that core). Sleep power and wake-up latency stay. A profile without plans is used as
written, as before.
"""
from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from eenn.errors import EennError
from eenn.fields import reject_unknown

BUILTIN_PROFILES = ("psoc6", "rk3588-cloud")


@dataclass(frozen=True)
class Processor:
    name: str
    core: str
    clock_hz: float
    macs_per_s: float
    sram_bytes: int
    flash_bytes: int
    active_w: float
    sleep_w: float
    wakeup_s: float
    layer_overhead_s: float = 0.0  # fixed cost per layer (kernel dispatch), added to MACs / rate


@dataclass(frozen=True)
class Link:
    source: str
    target: str
    bytes_per_s: float
    latency_s: float
    j_per_byte: float


@dataclass(frozen=True)
class ClockPlan:
    """Clock settings a project can run: each processor's core clock (Hz)."""
    name: str
    description: str
    clock_hz: dict[str, float]


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    description: str
    processors: list[Processor]
    links: list[Link]
    # Processors that share one SRAM and one flash (PSoC 6): their memory use adds up against
    # the first processor's sizes instead of each having its own.
    shared_memory: bool = False
    # Cores that are never active together (single-ported SRAM): the idle ones sleep.
    exclusive: bool = False
    # The clock plan these figures are for ("" when the profile declares none); `clock_plans` is
    # the table a profile file declares (reference figures), empty once a plan is applied.
    clock_plan: str = ""
    clock_plans: tuple[ClockPlan, ...] = ()
    source: str = field(default="", compare=False)

    def processor(self, name: str) -> Processor:
        for p in self.processors:
            if p.name == name:
                return p
        raise KeyError(name)

    def link_after(self, index: int) -> Link:
        """The link from processor `index` to processor `index + 1`."""
        return self.links[index]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        d.pop("clock_plans")
        if not self.clock_plan:
            d.pop("clock_plan")  # profiles without plans: the dict as before plans existed
        return d

    def plan_names(self) -> list[str]:
        return [c.name for c in self.clock_plans]

    def with_clock_plan(self, name: str | None = None) -> HardwareProfile:
        """This profile's figures under clock plan `name` (None: the first declared plan).

        A profile without plans is returned unchanged when `name` is None."""
        if not self.clock_plans:
            if name is None:
                return self
            what = f"is for clock plan '{self.clock_plan}' already" if self.clock_plan else "declares no [[clock_plan]]"
            raise EennError(f"{self.source or self.name}: --clock-plan {name}: the profile {what}")
        plan = self.clock_plans[0] if name is None else next((c for c in self.clock_plans if c.name == name), None)
        if plan is None:
            raise EennError(f"{self.source or self.name}: unknown clock plan '{name}': expected one of "
                            f"{', '.join(self.plan_names())}")
        ratio = {p.name: plan.clock_hz[p.name] / p.clock_hz for p in self.processors}
        procs = [replace(p, clock_hz=plan.clock_hz[p.name], macs_per_s=p.macs_per_s * ratio[p.name],
                         active_w=p.active_w * ratio[p.name], layer_overhead_s=p.layer_overhead_s / ratio[p.name])
                 for p in self.processors]
        links = [replace(l, bytes_per_s=l.bytes_per_s * ratio[l.source]) for l in self.links]
        return replace(self, processors=procs, links=links, clock_plan=plan.name, clock_plans=())

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> HardwareProfile:
        """A profile from TOML-shaped data or from `to_dict()` (whose links say source/target)."""
        links = d.get("links")
        if isinstance(links, list):
            renamed = [{("from" if k == "source" else "to" if k == "target" else k): v for k, v in link.items()}
                       if isinstance(link, dict) else link for link in links]
            d = {**d, "links": renamed}
        return _validate(d, source)


_PROCESSOR_FIELDS: dict[str, tuple[type, str]] = {
    "name": (str, "a non-empty string"),
    "core": (str, "a non-empty string such as 'cortex-m0plus'"),
    "clock_hz": (float, "a positive number (Hz)"),
    "macs_per_s": (float, "a positive number (multiply-accumulates per second)"),
    "sram_bytes": (int, "a positive integer (bytes)"),
    "flash_bytes": (int, "a positive integer (bytes)"),
    "active_w": (float, "a non-negative number (W)"),
    "sleep_w": (float, "a non-negative number (W)"),
    "wakeup_s": (float, "a non-negative number (s)"),
    "layer_overhead_s": (float, "a non-negative number (s)"),
}
_POSITIVE = {"clock_hz", "macs_per_s", "sram_bytes", "flash_bytes"}
_LINK_FIELDS: dict[str, tuple[type, str]] = {
    "from": (str, "the name of a processor"),
    "to": (str, "the name of the next processor"),
    "bytes_per_s": (float, "a positive number (bytes/s)"),
    "latency_s": (float, "a non-negative number (s)"),
    "j_per_byte": (float, "a non-negative number (J/byte)"),
}


def _check_value(source: str, where: str, key: str, value: Any, kind: type, expected: str) -> Any:
    def fail() -> EennError:
        return EennError(f"{source}: {where}.{key} = {value!r}: expected {expected}")

    if kind is str:
        if not isinstance(value, str) or not value.strip():
            raise fail()
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail()
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise fail()
        value = int(value)
    else:
        value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise fail()
    if key in _POSITIVE or key == "bytes_per_s":
        if value <= 0:
            raise fail()
    elif value < 0:
        raise fail()
    return value


def _check_table(source: str, where: str, table: Any, spec: dict[str, tuple[type, str]],
                 optional: set[str]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise EennError(f"{source}: {where}: expected a table, got {type(table).__name__}")
    reject_unknown(table, tuple(spec), f"{source}: {where}")
    out = {}
    for key, (kind, expected) in spec.items():
        if key not in table:
            if key in optional:
                continue
            raise EennError(f"{source}: {where}: missing field '{key}': expected {expected}")
        out[key] = _check_value(source, where, key, table[key], kind, expected)
    return out


def _validate(d: dict[str, Any], source: str) -> HardwareProfile:
    allowed = {"name", "description", "processor", "processors", "link", "links", "shared_memory", "exclusive",
               "clock_plan"}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise EennError(f"{source}: unknown top-level field(s) {', '.join(unknown)}; "
                        "expected name, description, shared_memory, exclusive, [[processor]], [[link]], "
                        "[[clock_plan]]")
    name = d.get("name")
    if not isinstance(name, str) or not name.strip():
        raise EennError(f"{source}: missing field 'name': expected a non-empty string")
    raw_procs = d.get("processor", d.get("processors"))
    if not isinstance(raw_procs, list) or not raw_procs:
        raise EennError(f"{source}: missing [[processor]] tables: expected at least one processor, in order of use")
    procs = []
    for i, table in enumerate(raw_procs):
        values = _check_table(source, f"processor[{i}]", table, _PROCESSOR_FIELDS, {"layer_overhead_s"})
        procs.append(Processor(**values))
    names = [p.name for p in procs]
    if len(set(names)) != len(names):
        raise EennError(f"{source}: processor names must be unique, got {names}")
    raw_links = d.get("link", d.get("links", []))
    if not isinstance(raw_links, list):
        raise EennError(f"{source}: [[link]]: expected an array of tables")
    if len(raw_links) != len(procs) - 1:
        raise EennError(f"{source}: expected {len(procs) - 1} [[link]] table(s), one between each pair of "
                        f"consecutive processors, got {len(raw_links)}")
    links = []
    for i, table in enumerate(raw_links):
        values = _check_table(source, f"link[{i}]", table, _LINK_FIELDS, set())
        if (values["from"], values["to"]) != (names[i], names[i + 1]):
            raise EennError(f"{source}: link[{i}]: from/to = {values['from']!r} → {values['to']!r}: expected "
                            f"{names[i]!r} → {names[i + 1]!r} (links join consecutive processors in order of use)")
        links.append(Link(source=values["from"], target=values["to"], bytes_per_s=values["bytes_per_s"],
                          latency_s=values["latency_s"], j_per_byte=values["j_per_byte"]))
    for flag in ("shared_memory", "exclusive"):
        if flag in d and not isinstance(d[flag], bool):
            raise EennError(f"{source}: {flag} = {d[flag]!r}: expected true or false")
    description = d.get("description", "")
    if not isinstance(description, str):
        raise EennError(f"{source}: description: expected a string")
    plan_name, plans = _clock_plans(source, d.get("clock_plan"), procs)
    return HardwareProfile(name=name, description=description, processors=procs, links=links,
                           shared_memory=bool(d.get("shared_memory", False)),
                           exclusive=bool(d.get("exclusive", False)), clock_plan=plan_name, clock_plans=plans,
                           source=source)


def _clock_plans(source: str, raw: Any, procs: list[Processor]) -> tuple[str, tuple[ClockPlan, ...]]:
    """`[[clock_plan]]` tables (a profile file), or the name of the applied plan (a solution's profile)."""
    if raw is None:
        return "", ()
    if isinstance(raw, str):
        if not raw.strip():
            raise EennError(f"{source}: clock_plan = {raw!r}: expected the name of a clock plan")
        return raw, ()
    if not isinstance(raw, list) or not raw:
        raise EennError(f"{source}: [[clock_plan]]: expected an array of tables (name, description, clock_hz)")
    names = [p.name for p in procs]
    plans = []
    for i, table in enumerate(raw):
        where = f"clock_plan[{i}]"
        if not isinstance(table, dict):
            raise EennError(f"{source}: {where}: expected a table, got {type(table).__name__}")
        reject_unknown(table, ("name", "description", "clock_hz"), f"{source}: {where}")
        plan_name = _check_value(source, where, "name", table.get("name"), str, "a non-empty string")
        description = table.get("description", "")
        if not isinstance(description, str):
            raise EennError(f"{source}: {where}.description: expected a string")
        clocks = table.get("clock_hz")
        if not isinstance(clocks, dict) or sorted(clocks) != sorted(names):
            got = sorted(clocks) if isinstance(clocks, dict) else clocks
            raise EennError(f"{source}: {where}.clock_hz = {got!r}: expected a table with one clock (Hz) per "
                            f"processor: {', '.join(names)}")
        hz = {}
        for n in names:
            value = clocks[n]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise EennError(f"{source}: {where}.clock_hz.{n} = {value!r}: expected a positive number (Hz)")
            hz[n] = float(value)
        plans.append(ClockPlan(name=plan_name, description=description, clock_hz=hz))
    plan_names = [c.name for c in plans]
    if len(set(plan_names)) != len(plan_names):
        raise EennError(f"{source}: clock plan names must be unique, got {plan_names}")
    return "", tuple(plans)


def load_profile(name_or_path: str | Path, clock_plan: str | None = None) -> HardwareProfile:
    """A built-in profile by name (`psoc6`, `rk3588-cloud`) or a user's TOML file, under clock plan
    `clock_plan` (None: the profile's first plan; profiles without plans: as written)."""
    return read_profile(name_or_path).with_clock_plan(clock_plan)


def read_profile(name_or_path: str | Path) -> HardwareProfile:
    """The profile as its file says: reference figures and the `[[clock_plan]]` table."""
    text: str
    key = str(name_or_path)
    if key in BUILTIN_PROFILES:
        source = f"built-in profile '{key}'"
        text = resources.files("eenn.augment").joinpath("profiles", f"{key}.toml").read_text()
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise EennError(f"hardware profile '{key}' not found: expected one of "
                            f"{', '.join(BUILTIN_PROFILES)} or a path to a TOML file")
        source = str(path)
        text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EennError(f"{source}: not valid TOML ({exc})") from exc
    return _validate(data, source)
