"""Durations, sizes and CPU counts as users write them, and back.

Durations use Go's syntax (``1m30s``, ``500ms``, ``0``), sizes Kubernetes'
(``64Mi`` binary, ``512M`` decimal, or a number of bytes), CPUs a number or
millicores (``0.25``, ``"250m"``). Every parser raises ValueError with a
message naming the bad input and showing the expected form.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation

_NS_PER = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
_SIZE_UNITS = {
    "": 1, "b": 1, "B": 1,
    "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}
_FORMAT_UNITS = (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10),
                 ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))
_DURATION_HINT = "a duration like 10s, 1m30s, 500ms or 0"
_SIZE_HINT = "a size like 64Mi, 1Gi, 512M, 100k or a number of bytes"


def parse_duration_ns(text: str) -> int:
    """Nanoseconds in a Go duration string ("1m30s" -> 90_000_000_000)."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not {_DURATION_HINT}")
    if text.strip() == "0":
        return 0
    pos, total = 0, Decimal(0)
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += Decimal(match.group(1)) * _NS_PER[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f'"{text}" is not {_DURATION_HINT}')
    return int(total.to_integral_value(ROUND_HALF_EVEN))


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string ("1m30s" -> 90.0)."""
    return parse_duration_ns(text) / 1e9


def parse_seconds(text: str, option: str) -> float:
    """A flag's duration: ``2s``, ``500ms`` or a plain number of seconds, finite and not
    negative; ValueError with one line naming ``option`` otherwise."""
    try:
        value = float(text)
    except ValueError:
        try:
            value = parse_duration(text)
        except ValueError:
            raise ValueError(f"{option} {text!r}: expected a duration like 2s") from None
    if not math.isfinite(value):
        raise ValueError(f"{option} {text!r}: expected a duration like 2s")
    if value < 0:
        raise ValueError(f"{option} must not be negative")
    return value


def format_duration(seconds: float) -> str:
    """Go's form of a duration: 90.0 -> "1m30s", 0.5 -> "500ms", 0 -> "0s"."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration: it must be finite and >= 0")
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    if ns < 10**9:
        unit, size = next((u, n) for u, n in (("ms", 10**6), ("us", 10**3), ("ns", 1)) if ns >= n)
        return _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = _decimal(rest, 10**9) + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    return f"{minutes}m{secs}" if minutes else secs


def _decimal(value: int, unit: int) -> str:
    """``value / unit`` written exactly, without trailing zeros."""
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def parse_size(value: str | int) -> int:
    """Bytes in a size: "64Mi" -> 67108864, "1k" -> 1000, 1024 -> 1024."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not {_SIZE_HINT}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is not {_SIZE_HINT}: it is negative")
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match or match.group(2) not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not {_SIZE_HINT} (units: Ki Mi Gi Ti, k M G T, b)")
    amount = Decimal(match.group(1)) * _SIZE_UNITS[match.group(2)]
    return int(amount.to_integral_value(ROUND_CEILING))


def format_size(size: int) -> str:
    """The shortest exact form of a byte count: 67108864 -> "64Mi", 1500 -> "1500"."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"cannot format {size!r} as a size: it must be an int >= 0")
    forms = [f"{size // factor}{unit}" for unit, factor in _FORMAT_UNITS if size and size % factor == 0]
    return min([*forms, str(size)], key=len)


def parse_cpus(value: float | int | str) -> float:
    """CPUs as a number: 0.25 -> 0.25, "0.5" -> 0.5, "250m" -> 0.25."""
    hint = 'a number of CPUs like 0.25, 2 or "250m"'
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not {hint}")
    try:
        if isinstance(value, str) and value.strip().endswith("m"):
            cpus = float(Decimal(value.strip()[:-1]) / 1000)
        else:
            cpus = float(value)
    except (ValueError, InvalidOperation):
        raise ValueError(f"{value!r} is not {hint}") from None
    if not math.isfinite(cpus) or cpus < 0:
        raise ValueError(f"{value!r} is not {hint}: it must be finite and >= 0")
    return cpus
