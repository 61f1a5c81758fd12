"""Placement constraints and node attributes, as Swarm writes them.

Parses ``node.labels.zone==eu``, ``node.role!=manager``, ``node.id==x``,
``node.hostname==h``, ``node.platform.os==linux`` and
``node.platform.arch==x86_64`` (spaces around the operator allowed), and
matches them against a Node resource (its heartbeat merged as ``status``).
The same attribute keys name the labels that placement preferences spread
over (``node_attribute``). Matching follows SwarmKit: keys and values are
compared case-insensitively (label names are case-sensitive), and a missing
attribute reads as "" so it never equals a value and always differs from one.

Leaves to others: which constraints a task carries (``request``) and running
them over nodes (``filters``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

Resource = dict[str, Any]
Operator = Literal["==", "!="]

LABEL_PREFIX = "node.labels."
# Attribute keys (lowercase) besides node.labels.<name>.
ATTRIBUTE_KEYS = ("node.id", "node.hostname", "node.role", "node.platform.os",
                  "node.platform.arch")
_KEYS_HINT = ("node.id, node.hostname, node.role, node.platform.os, node.platform.arch "
              "or node.labels.<name>")


@dataclass(frozen=True)
class Constraint:
    """One ``key op value`` constraint; ``key`` is normalised, ``value`` kept as written."""

    key: str          # "node.role", "node.labels.zone" (label name keeps its case)
    op: Operator
    value: str

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


def normalise_key(key: str) -> str:
    """The canonical form of an attribute key; ValueError for keys kubeless does not know."""
    stripped = key.strip()
    lowered = stripped.lower()
    if lowered.startswith(LABEL_PREFIX) and len(stripped) > len(LABEL_PREFIX):
        return LABEL_PREFIX + stripped[len(LABEL_PREFIX):]
    if lowered in ATTRIBUTE_KEYS:
        return lowered
    raise ValueError(f"unknown node attribute {stripped!r}: expected {_KEYS_HINT}")


@lru_cache(maxsize=4096)
def parse_constraint(text: str) -> Constraint:
    """``"node.labels.zone == eu"`` -> Constraint("node.labels.zone", "==", "eu")."""
    positions = [(text.find(op), op) for op in ("==", "!=") if op in text]
    if not positions:
        raise ValueError(f"invalid constraint {text!r}: expected key==value or key!=value")
    at, op = min(positions)
    key, value = text[:at].strip(), text[at + 2:].strip()
    if not key or not value:
        raise ValueError(f"invalid constraint {text!r}: expected key==value or key!=value")
    try:
        canonical = normalise_key(key)
    except ValueError as exc:
        raise ValueError(f"invalid constraint {text!r}: {exc}") from None
    return Constraint(canonical, "==" if op == "==" else "!=", value)


def parse_constraints(texts: list[str] | tuple[str, ...]) -> tuple[Constraint, ...]:
    return tuple(parse_constraint(t) for t in texts)


def node_attribute(key: str, node: Resource) -> str | None:
    """The value of a normalised attribute key on a node, or None when it has none."""
    if key.startswith(LABEL_PREFIX):
        labels = (node.get("metadata") or {}).get("labels") or {}
        value = labels.get(key[len(LABEL_PREFIX):])
    elif key == "node.id":
        value = (node.get("metadata") or {}).get("name")
    elif key == "node.role":
        value = (node.get("spec") or {}).get("role", "worker")
    elif key == "node.hostname":
        value = (node.get("status") or {}).get("hostname")
    else:  # node.platform.os / node.platform.arch
        platform = (node.get("status") or {}).get("platform") or {}
        value = platform.get(key[len("node.platform."):])
    return None if value is None else str(value)


def matches(constraint: Constraint, node: Resource) -> bool:
    """Whether the node satisfies the constraint (a missing attribute reads as "")."""
    actual = node_attribute(constraint.key, node) or ""
    equal = actual.casefold() == constraint.value.casefold()
    return equal if constraint.op == "==" else not equal


def matches_all(constraints: tuple[Constraint, ...], node: Resource) -> bool:
    return all(matches(c, node) for c in constraints)
