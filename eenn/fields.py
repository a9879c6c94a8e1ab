"""Reading dataclasses from the JSON files that pass between stages.

docs/interfaces.md: a reader ignores keys it does not know (a newer eenn may add some) and names
a missing required one: which file, which field. One helper, so every loader says it alike.
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from eenn.errors import EennError


def known_fields(cls: type, d: Any, where: str) -> dict[str, Any]:
    """The entries of `d` that are fields of the dataclass `cls`, after checking that every
    required one is there: `where` lacks 'threshold', not a TypeError from the constructor."""
    known = [f.name for f in fields(cls)]
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    if not isinstance(d, dict):
        raise EennError(f"{where}: expected an object with the fields {', '.join(required)}, got {type(d).__name__}")
    missing = [name for name in required if name not in d]
    if missing:
        raise EennError(f"{where} lacks the field{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(repr(m) for m in missing)} (required: {', '.join(required)})")
    return {k: v for k, v in d.items() if k in known}


def reject_unknown(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """User-written input (a hardware profile's table, a measurement file) is checked the other
    way round: a field this eenn does not know is most likely a typo, so it is named, with the
    fields that are expected there."""
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise EennError(f"{where}: unknown field(s) {', '.join(unknown)}; expected fields: {', '.join(allowed)}")
