"""What ``kubeless get`` prints in a cell: a value at a CRD column's
jsonPath, and ages written the way kubectl writes them (45s, 5m, 3h, 2d).

Only simple paths are supported (``.spec.template.image``,
``.spec.ports[0].target``); that is all the CRDs use.

States read the way docker writes them in its tables (``Ready``, ``Running``,
``Shutdown``, ``Drain``): ``state_text`` is the one place a stored lowercase
state becomes a person's word; ``-o yaml|json`` keep the stored value.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from kubeless.api.kinds import PrinterColumn

# Columns whose value is a state (node status and availability, a task's desired
# and observed state): shown capitalised, as docker node ls and service ps show them.
STATE_PATHS = frozenset({".status.state", ".spec.desiredState", ".spec.availability"})

_STEP = re.compile(r"\.([^.\[\]]+)|\[([0-9]+)\]")
NONE = "<none>"


def parse_json_path(path: str) -> list[str | int]:
    """``.spec.ports[0].target`` -> ["spec", "ports", 0, "target"]."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    text = text.removeprefix("$")
    steps: list[str | int] = []
    pos = 0
    for match in _STEP.finditer(text):
        if match.start() != pos:
            break
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    if pos != len(text) or not steps:
        raise ValueError(f'unsupported jsonPath "{path}": use a dotted path like .spec.ports[0].target')
    return steps


def json_path_get(doc: Any, path: str) -> Any:
    """The value at ``path`` in ``doc``, or None when anything on the way is missing."""
    value = doc
    for step in parse_json_path(path):
        if isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return None
    return value


def age(timestamp: str | None, now: datetime) -> str:
    """How long ago an RFC 3339 timestamp was, as kubectl writes it."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return "<invalid>"
    seconds = int((_aware(now) - _aware(then)).total_seconds())
    return human_duration(seconds)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def human_duration(seconds: int) -> str:
    """kubectl's HumanDuration: 45s, 5m30s, 42m, 3h10m, 20h, 2d3h, 30d, 2y10d."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    minutes, hours = seconds // 60, seconds // 3600
    if minutes < 10:
        return _pair(minutes, "m", seconds % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return _pair(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _pair(hours // 24, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        return _pair(hours // 24 // 365, "y", hours // 24 % 365, "d")
    return f"{hours // 24 // 365}y"


def _pair(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"


def cell(doc: Any, column: PrinterColumn, now: datetime) -> str:
    """The text of one column for one resource ("<none>" when missing)."""
    value = json_path_get(doc, column.json_path)
    if column.type == "date":
        return age(value if isinstance(value, str) else None, now) if value else NONE
    if value is None or value == "" or value == []:
        return NONE
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):  # labels, as kubectl's --show-labels writes them
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or NONE
    if column.json_path in STATE_PATHS:
        return state_text(value)
    return str(value)


def state_text(state: Any) -> str:
    """A stored state as tables show it: ``ready`` -> ``Ready``, ``running`` -> ``Running``."""
    return str(state or "").capitalize()
