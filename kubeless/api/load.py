"""A node's load report (``agents/<node>/load``), in one place: its shape and freshness.

The node's agent writes one per ``--load-period`` (``kubeless_agent.load``); the
autoscaler and ``kubeless top`` read them. docs/MODEL.md gives the format:

    {"node": "<id>", "timestamp": 1764690000.0, "period": 10.0,
     "host": {"cpu": 0.8, "memory": 123456789, "cpus": 2, "memoryTotal": 2.4e10},
     "tasks": {"<task id>": {"namespace": "default", "service": "web",
                             "cpu": 0.53, "memory": 12345678}},
     "connections": {"<task id>": 3.2}}

- ``report_value`` builds it (the agent's side);
- ``parse_report`` reads one into a ``LoadReport``, or None when it is not one
  (a reader skips it: bad data never stops a controller or the CLI);
- ``is_fresh``: a reader counts a report only while its timestamp is within
  ``FRESH_PERIODS`` periods of now (an agent that stopped publishing, or whose
  clock is far off, is not counted); ``fresh_reports`` keeps those;
- ``reserved_cpus`` is what a task's CPU is a percentage of (its template's
  ``resources.reservations.cpus``, else one CPU): the autoscaler's ``targetCPU`` and
  ``kubeless top``'s CPU% are both of it;
- ``connections_per_task`` sums every fresh report's connections per endpoint task
  (each node's mesh counts what *it* sent, wherever the task runs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubeless.api.units import parse_cpus

FRESH_PERIODS = 3  # a report counts while its timestamp is within 3 periods of now


@dataclass(frozen=True)
class TaskLoad:
    namespace: str
    service: str
    cpu: float  # cores busy, averaged over the period (1.0: one CPU)
    memory: int  # bytes


@dataclass(frozen=True)
class HostLoad:
    cpu: float  # cores busy
    memory: int  # bytes used
    cpus: float
    memory_total: int


@dataclass(frozen=True)
class LoadReport:
    node: str
    timestamp: float  # unix seconds
    period: float  # seconds
    host: HostLoad
    tasks: Mapping[str, TaskLoad]
    connections: Mapping[str, float]  # task id -> new connections per second


def report_value(node: str, timestamp: float, period: float, host: HostLoad,
                 tasks: Mapping[str, TaskLoad], connections: Mapping[str, float]
                 ) -> dict[str, Any]:
    """The stored form (JSON) of a report."""
    return {"node": node, "timestamp": round(timestamp, 3), "period": period,
            "host": {"cpu": round(host.cpu, 4), "memory": host.memory, "cpus": host.cpus,
                     "memoryTotal": host.memory_total},
            "tasks": {tid: {"namespace": t.namespace, "service": t.service,
                            "cpu": round(t.cpu, 4), "memory": t.memory}
                      for tid, t in sorted(tasks.items())},
            "connections": {tid: round(rate, 4) for tid, rate in sorted(connections.items())}}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _task(value: Any) -> TaskLoad | None:
    if not isinstance(value, dict):
        return None
    cpu, memory = _number(value.get("cpu")), _number(value.get("memory"))
    if cpu is None or memory is None:
        return None
    return TaskLoad(str(value.get("namespace") or ""), str(value.get("service") or ""),
                    cpu, int(memory))


def _host(value: Any) -> HostLoad:
    fields = value if isinstance(value, dict) else {}
    cpu, memory, cpus, total = (_number(fields.get(k)) or 0.0
                                for k in ("cpu", "memory", "cpus", "memoryTotal"))
    return HostLoad(cpu, int(memory), cpus, int(total))


def _mapping(value: dict[str, Any], name: str) -> list[tuple[Any, Any]]:
    found = value.get(name)
    return list(found.items()) if isinstance(found, dict) else []


def parse_report(value: Any) -> LoadReport | None:
    """A stored report, or None when it is not one (its unreadable tasks are left out)."""
    if not isinstance(value, dict):
        return None
    timestamp, period = _number(value.get("timestamp")), _number(value.get("period"))
    if not value.get("node") or timestamp is None or not period:
        return None
    tasks = {str(tid): t for tid, t in ((tid, _task(v)) for tid, v in _mapping(value, "tasks"))
             if t is not None}
    connections = {str(tid): rate for tid, rate in
                   ((tid, _number(v)) for tid, v in _mapping(value, "connections"))
                   if rate is not None}
    return LoadReport(str(value["node"]), timestamp, period, _host(value.get("host")),
                      tasks, connections)


def is_fresh(report: LoadReport, now: float) -> bool:
    """Its timestamp is within ``FRESH_PERIODS`` periods of ``now`` (unix s), either side."""
    return abs(now - report.timestamp) <= FRESH_PERIODS * report.period


def fresh_reports(values: Mapping[str, Any], now: float) -> dict[str, LoadReport]:
    """node -> its report, for the stored values (by node) that are reports and fresh."""
    found = {}
    for node, value in values.items():
        report = parse_report(value)
        if report is not None and is_fresh(report, now):
            found[node] = report
    return found


def connections_per_task(reports: Iterable[LoadReport]) -> dict[str, float]:
    """New connections per second to each endpoint task, summed over the nodes' meshes."""
    total: dict[str, float] = {}
    for report in reports:
        for tid, rate in report.connections.items():
            total[tid] = total.get(tid, 0.0) + rate
    return total


def reserved_cpus(task: Mapping[str, Any]) -> float:
    """The CPUs a task (or service) resource's template reserves; 1.0 when none (or an
    unreadable figure), so a percentage of it is of one CPU."""
    found: Any = task
    for name in ("spec", "template", "resources", "reservations"):
        found = found.get(name) if isinstance(found, Mapping) else None
    cpus_given = found.get("cpus") if isinstance(found, Mapping) else None
    try:
        cpus = parse_cpus(cpus_given or 0)
    except ValueError:
        return 1.0
    return cpus if cpus > 0 else 1.0
