"""What a task asks of a node, and what it takes from one, read once from the Task dict.

``Usage`` is what an active task holds on its node (reservations, host-mode
ports, one count for its service); ``TaskRequest`` adds what placing it
requires (constraints, preferences, max replicas per node). Both are frozen
and hashable, so tasks of one service with identical requests share one
filtering pass; both read the task's stored spec. Whether a task holds its
node's resources is the Task model's (``Task.occupies``). CPUs are kept as
integer nano-CPUs (as Swarm does) so sums are exact.

Leaves to others: keeping per-node sums (``nodeinfo``), judging nodes
(``filters``), choosing among them (``plan``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kubeless.api import parse_cpus, parse_size
from kubeless.api.constraints import Constraint, InvalidConstraint, normalise_key, parse_constraint

Resource = dict[str, Any]
ServiceKey = tuple[str, str]      # (namespace, serviceName)
TaskKey = tuple[str, str]         # (namespace, task id)
HostPort = tuple[str, int]        # (protocol, published port)
NANO = 1_000_000_000


def task_key(task: Resource) -> TaskKey:
    meta = task.get("metadata") or {}
    return (meta.get("namespace") or "default", meta.get("name") or "")


def service_key(task: Resource) -> ServiceKey:
    meta = task.get("metadata") or {}
    return (meta.get("namespace") or "default", (task.get("spec") or {}).get("serviceName", ""))


@lru_cache(maxsize=4096)
def memory_bytes(value: str | int) -> int:
    return parse_size(value)


@lru_cache(maxsize=4096)
def nano_cpus_of(value: float | int | str) -> int:
    return round(parse_cpus(value) * NANO)


@dataclass(frozen=True, slots=True)
class Usage:
    service: ServiceKey
    nano_cpus: int = 0
    memory: int = 0
    host_ports: frozenset[HostPort] = frozenset()

    @classmethod
    def of(cls, task: Resource) -> Usage:
        """What the task takes; ValueError for unparseable reservations."""
        spec = task.get("spec") or {}
        reservations = ((spec.get("template") or {}).get("resources") or {}).get(
            "reservations") or {}
        cpus, memory = reservations.get("cpus"), reservations.get("memory")
        ports = frozenset(
            (str(p.get("protocol") or "tcp"), int(p["published"]))
            for p in spec.get("ports") or ()
            if p.get("mode") == "host" and p.get("published"))
        return cls(service_key(task),
                   nano_cpus_of(cpus) if cpus is not None else 0,
                   memory_bytes(memory) if memory is not None else 0,
                   ports)

    @classmethod
    def lenient(cls, task: Resource) -> Usage:
        """``of``, counting a task with unreadable reservations as a bare service count."""
        try:
            return cls.of(task)
        except (ValueError, TypeError, KeyError):
            return cls(service_key(task))


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """Everything the filters and the spread need to know about one task."""

    usage: Usage
    constraints: tuple[Constraint, ...] = ()
    preferences: tuple[str, ...] = ()   # normalised attribute keys, outermost first
    max_replicas: int = 0               # per node; 0: no limit

    @property
    def service(self) -> ServiceKey:
        return self.usage.service

    @classmethod
    def of(cls, task: Resource) -> TaskRequest:
        """ValueError (one sentence) when the task's placement cannot be read."""
        placement = (task.get("spec") or {}).get("placement") or {}
        try:
            usage = Usage.of(task)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"invalid resources or ports: {exc}") from None
        preferences = tuple(normalise_key(str(p.get("spread", "")))
                            for p in placement.get("preferences") or ())
        max_replicas = placement.get("maxReplicasPerNode") or 0
        if not isinstance(max_replicas, int) or max_replicas < 0:
            raise ValueError(f"invalid maxReplicasPerNode {max_replicas!r}")
        return cls(usage, _constraints(placement.get("constraints") or ()), preferences,
                   max_replicas)


def _constraints(texts: Any) -> tuple[Constraint, ...]:
    """The task's parsed constraints; ValueError naming the first that does not parse."""
    out = []
    for text in texts:
        try:
            out.append(parse_constraint(text))
        except (InvalidConstraint, TypeError) as exc:
            raise ValueError(f"constraint {text!r}: {exc}") from None
    return tuple(out)
