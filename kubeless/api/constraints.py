"""Placement constraints, as Docker Swarm writes them: the one grammar.

A constraint is ``ATTRIBUTE==VALUE`` or ``ATTRIBUTE!=VALUE`` (spaces around
the operator allowed; only these two operators). The attributes are the
ones Swarm knows and a kubeless node carries:

    node.id              the node's name (its id in kubeless)
    node.hostname        the agent's host name (heartbeat)
    node.role            manager or worker (other values are refused)
    node.platform.os     e.g. linux (heartbeat)
    node.platform.arch   e.g. x86_64 (heartbeat)
    node.labels.<key>    a node label (``kubeless node update --label-add``)

Swarm's ``engine.labels.<key>`` (the Docker daemon's labels) is refused:
a kubeless agent does not report its engine's labels, so such a constraint
could never hold (``==``) or never matter (``!=``). Values are Swarm's: letters,
digits, spaces and ``: - _ . * ( ) ? + [ ] \\ ^ $ | /`` (no operators).

``parse_constraint`` turns text into a frozen ``Constraint`` or raises
``InvalidConstraint`` (one sentence, no field path: validation and the CLI
add theirs). ``matches`` follows SwarmKit: attribute names are
case-insensitive (a label key keeps its case), values are compared
case-insensitively, and a missing attribute reads as "" so it never equals
a value and always differs from one. ``node_attribute`` also names what
placement preferences spread over.

Used by resource validation, the CLI's --constraint flags, global-service
eligibility and the scheduler's filters; nothing else parses constraints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from kubeless.api.names import label_key_error

Resource = dict[str, Any]
Operator = Literal["==", "!="]

LABEL_PREFIX = "node.labels."
ENGINE_LABEL_PREFIX = "engine.labels."
ATTRIBUTES = ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")
ROLES = ("manager", "worker")
KNOWN = ", ".join((*ATTRIBUTES, LABEL_PREFIX + "<key>"))
FORM = "expected ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE, e.g. node.labels.zone==eu"
_VALUE = re.compile(r"^[a-z0-9:\-_\s.*()?+\[\]\\^$|/]+$", re.IGNORECASE | re.ASCII)


class InvalidConstraint(ValueError):
    """Text that is not a constraint kubeless can evaluate; the message says why."""


@dataclass(frozen=True)
class Constraint:
    """One ``key op value``; ``key`` is canonical (lowercase but a label's key), ``value``
    as written (trimmed)."""

    key: str
    op: Operator
    value: str

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


def normalise_key(key: str) -> str:
    """The canonical form of an attribute; InvalidConstraint for one kubeless does not know."""
    stripped = key.strip()
    lowered = stripped.lower()
    if lowered in ATTRIBUTES:
        return lowered
    if lowered.startswith(LABEL_PREFIX):
        label = stripped[len(LABEL_PREFIX):]
        if (error := label_key_error(label)) is not None:
            raise InvalidConstraint(f"{LABEL_PREFIX}<key>: {error}" if label
                                    else f'"{stripped}" names no label: use {LABEL_PREFIX}<key>')
        return LABEL_PREFIX + label
    if lowered.startswith(ENGINE_LABEL_PREFIX):
        raise InvalidConstraint(f'"{stripped}": kubeless nodes do not report engine labels; '
                                f"use {LABEL_PREFIX}<key> (kubeless node update --label-add)")
    raise InvalidConstraint(f'unknown attribute "{stripped}" (known: {KNOWN})')


def _split(text: str) -> tuple[str, Operator, str]:
    """Key, operator, value at the first operator; InvalidConstraint when there is none."""
    found = [(text.find(op), op) for op in ("==", "!=") if op in text]
    if not found:
        raise InvalidConstraint(FORM)
    at, op = min(found)
    key, value = text[:at].strip(), text[at + 2:].strip()
    if not key:
        raise InvalidConstraint(f"no attribute before {op}: {FORM}")
    return key, ("==" if op == "==" else "!="), value


@lru_cache(maxsize=4096)
def parse_constraint(text: str) -> Constraint:
    """``"node.labels.zone == eu"`` -> Constraint("node.labels.zone", "==", "eu")."""
    if not isinstance(text, str):
        raise InvalidConstraint(f"a constraint must be a string, not {type(text).__name__}")
    key, op, value = _split(text)
    canonical = normalise_key(key)
    if not value:
        raise InvalidConstraint(f"no value after {op}: {FORM}")
    if not _VALUE.match(value):
        raise InvalidConstraint(f'value "{value}" may only hold letters, digits, spaces and '
                                r": - _ . * ( ) ? + [ ] \ ^ $ | /")
    if canonical == "node.role" and value.lower() not in ROLES:
        raise InvalidConstraint(f'node.role is manager or worker, not "{value}"')
    return Constraint(canonical, op, value)


def parse_constraints(texts: Iterable[str]) -> tuple[Constraint, ...]:
    return tuple(parse_constraint(t) for t in texts)


def constraint_error(text: object) -> str | None:
    """Why ``text`` is not a valid constraint (one sentence), or None."""
    try:
        parse_constraint(text)
    except InvalidConstraint as exc:
        return str(exc)
    except TypeError:  # unhashable: the cache refuses it before the function runs
        return f"a constraint must be a string, not {type(text).__name__}"
    return None


def node_attribute(key: str, node: Resource) -> str | None:
    """The value of a canonical attribute on a Node (heartbeat merged as ``status``), or None."""
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


def matches_all(constraints: Iterable[Constraint], node: Resource) -> bool:
    return all(matches(c, node) for c in constraints)
