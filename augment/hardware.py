"""Hardware descriptions: processors in the order they are used and the links between them.

A profile is TOML, validated field by field so that a typo in a user's file fails with the
file, the field and what was expected. Built-in profiles live in `augment/profiles/`.
"""
from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from eenn.errors import EennError

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
        return d

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
    unknown = sorted(set(table) - set(spec))
    if unknown:
        raise EennError(f"{source}: {where}: unknown field(s) {', '.join(unknown)}; "
                        f"expected fields: {', '.join(spec)}")
    out = {}
    for key, (kind, expected) in spec.items():
        if key not in table:
            if key in optional:
                continue
            raise EennError(f"{source}: {where}: missing field '{key}': expected {expected}")
        out[key] = _check_value(source, where, key, table[key], kind, expected)
    return out


def _validate(d: dict[str, Any], source: str) -> HardwareProfile:
    allowed = {"name", "description", "processor", "processors", "link", "links", "shared_memory", "exclusive"}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise EennError(f"{source}: unknown top-level field(s) {', '.join(unknown)}; "
                        "expected name, description, shared_memory, exclusive, [[processor]], [[link]]")
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
    return HardwareProfile(name=name, description=description, processors=procs, links=links,
                           shared_memory=bool(d.get("shared_memory", False)),
                           exclusive=bool(d.get("exclusive", False)), source=source)


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """A built-in profile by name (`psoc6`, `rk3588-cloud`) or a user's TOML file."""
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


def profile_fields_doc() -> str:
    """The processor and link fields, for help texts."""
    return ", ".join(f.name for f in fields(Processor))
