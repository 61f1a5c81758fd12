"""The ``--secret`` and ``--config`` flags of ``service create|update``, as docker's.

A SPEC is ``NAME`` or ``source=NAME[,target=T][,uid=U][,gid=G][,mode=0400]``
(``src=`` for source and ``dst=`` for target, as docker's mounts spell them);
the mode is octal with its leading 0, as docker reads ``mode=0400``. Only
what the flag says is stored: the defaults (target, uid, gid, mode) are
filled where every reader finds them, ``kubeless.api.file_refs``, whose
rules judge names, targets, ids and modes here too.

In an update, removals (``--secret-rm NAME``: every reference to that
Secret) come first, then additions, each replacing a reference that lands
on the same path: ``--secret-rm dbpass --secret-add
source=dbpass.v2,target=dbpass`` rotates a secret as Swarm does. Errors
are ``SpecError`` (the reason); service_flags names the flag.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kubeless.api.file_refs import (id_error, mode_error, source_error, target_error,
                                    target_path)

_KEYS = {"source": "source", "src": "source", "target": "target", "dst": "target",
         "destination": "target", "uid": "uid", "gid": "gid", "mode": "mode"}
_OCTAL = re.compile(r"^0(o?)([0-7]*)$", re.I)


class SpecError(ValueError):
    """Why a SPEC cannot become a reference (service_flags adds the flag and value)."""


def parse_spec(kind: str, text: str) -> dict[str, Any]:
    """A template entry from ``NAME`` or ``source=NAME,...`` (``kind``: Secret, Config)."""
    options = _options(text.strip())
    if "source" not in options:
        raise SpecError("missing source=NAME")
    entry: dict[str, Any] = dict(options)
    checks = {"source": source_error, "target": lambda v: target_error(kind, v),
              "uid": id_error, "gid": id_error}
    for key, check in checks.items():
        if key in entry and (error := check(entry[key])) is not None:
            raise SpecError(f"{key}: {error}")
    if "mode" in entry:
        entry["mode"] = _mode(entry["mode"])
    return entry


def _options(text: str) -> dict[str, str]:
    if "=" not in text:
        return {"source": text} if text else {}
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or not key or not value.strip():
            raise SpecError(f"expected key=value, got {part!r}")
        if key not in _KEYS:
            raise SpecError(f"unknown option {key!r}: use source, target, uid, gid or mode")
        if _KEYS[key] in out:
            raise SpecError(f"{_KEYS[key]} is given twice")
        out[_KEYS[key]] = value.strip()
    return out


def _mode(text: str) -> int:
    octal = _OCTAL.match(text)
    if not octal or (octal.group(1) and not octal.group(2)):
        raise SpecError(f"mode {text!r} must be octal with its leading 0, such as mode=0400")
    mode = int(octal.group(2) or "0", 8)
    if (error := mode_error(mode)) is not None:
        raise SpecError(f"mode: {error}")
    return mode


def merged(kind: str, current: Sequence[dict[str, Any]], adds: Sequence[dict[str, Any]],
           removes: Sequence[str]) -> list[dict[str, Any]]:
    """``current`` without the references to ``removes`` (names), then with ``adds``,
    each replacing what lands on its path; SpecError when two adds land on one path."""
    paths = [_path(kind, entry) for entry in adds]
    for i, path in enumerate(paths):
        if path in paths[:i]:
            raise SpecError(f"two references land on {path}")
    kept = [entry for entry in current
            if entry.get("source") not in removes and _path(kind, entry) not in paths]
    return kept + list(adds)


def _path(kind: str, entry: dict[str, Any]) -> str:
    return target_path(kind, str(entry.get("source", "")), entry.get("target"))
