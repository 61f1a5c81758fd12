"""The autoscaler's decision: Kubernetes' HPA rule over one service's tasks and load (pure).

``task_usage`` reads the tasks wanted running and the nodes' load reports
(``agents/<node>/load``, read by ``kubeless.api.load``) into one ``Usage``
each: a task is *counted* when it runs and a fresh report names it; its
connections are summed over every fresh report (each node's mesh says what it
sent to the task, wherever the task runs).

``decide`` is the rule (Kubernetes' replica calculator and its scale-down
stabilization, with the tolerance, bounds and delay of ``spec.autoscale``):

- replicas outside min..max are brought inside at once, whatever the load;
- no counted task: no change ("waiting for load reports");
- per metric, ratio = usage / target over the counted tasks (cpu: percent of
  the CPU the tasks reserve, one CPU each when none; connections: per second
  per task); within ``TOLERANCE`` of 1 the metric recommends no change;
- tasks wanted running but not counted count as 0 usage when the counted
  ones ask for more and as the target when they ask for less (the
  conservative way both times); if that brings the ratio back within the
  tolerance, or turns it round, no change;
- a metric recommends ceil(ratio x tasks); the highest recommendation wins,
  clamped to min..max;
- up: at once; down: only to the highest recommendation of the last
  ``scaleDownDelay`` (``history``). A leader that has just started has no
  history: its first evaluation counts as a recommendation of the current
  replicas, so it waits the delay before any scale-down.

Keeping the history (per service, in the leader's memory) and writing the
replicas and ``status.autoscale`` is the controller's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kubeless.api.load import LoadReport, is_fresh, reserved_cpus
from kubeless.api.tasks import Task
from kubeless.api.units import format_duration, parse_duration
from kubeless.api.workload import autoscale_of

Resource = dict[str, Any]
History = tuple[tuple[float, int], ...]  # (time, recommended replicas), oldest first

TOLERANCE = 0.1  # Kubernetes' --horizontal-pod-autoscaler-tolerance
DEFAULT_DELAY = 300.0  # scaleDownDelay absent (the schema's default, 5m)


@dataclass(frozen=True)
class Policy:
    """``spec.autoscale`` read once: bounds, targets (None: not scaled on) and delay."""

    min: int
    max: int
    target_cpu: float | None  # percent of the reservation
    target_connections: float | None  # per second per task
    delay: float
    delay_text: str  # as the user wrote it, for reasons ("5m")

    @classmethod
    def of(cls, service: Resource) -> Policy | None:
        scale = autoscale_of(service)
        if scale is None:
            return None
        low = max(int(scale.get("min", 1) or 1), 1)
        text = str(scale.get("scaleDownDelay") or "5m")
        try:
            delay = parse_duration(text)
        except ValueError:
            delay, text = DEFAULT_DELAY, "5m"
        return cls(low, max(int(scale.get("max") or low), low),
                   float(scale["targetCPU"]) if scale.get("targetCPU") else None,
                   float(scale["targetConnections"]) if scale.get("targetConnections") else None,
                   delay, text)


@dataclass(frozen=True)
class Usage:
    """One task wanted running: its figures when counted (None: not counted)."""

    cpu: float | None  # cores busy over the report's period
    connections: float | None  # new connections per second, summed over the fresh reports
    reserved: float  # cores its template reserves (1.0 when none)


@dataclass(frozen=True)
class Decision:
    current: int
    desired: int
    recommendation: int | None  # what this evaluation adds to the history (None: nothing)
    reason: str
    counted: int
    observed: dict[str, float | None]  # {cpu: percent, connections: per task}, rounded
    kind: str  # bounds, waiting, steady (within tolerance), holding, scale: what it did

    @property
    def direction(self) -> str | None:
        if self.desired == self.current:
            return None
        return "up" if self.desired > self.current else "down"


# -- reading the reports ---------------------------------------------------------------

class LoadIndex:
    """Every report's figures by task id, made once per set of reports (not per service):
    a task's cpu from the report naming it, its connections from every report (the
    sum over the fresh ones, ``connections_per_task``'s rule, is taken at ``now``)."""

    def __init__(self, reports: Iterable[LoadReport]) -> None:
        self.cpu: dict[str, tuple[float, LoadReport]] = {}
        self.connections: dict[str, list[tuple[float, LoadReport]]] = {}
        for report in reports:
            for task_id, load in report.tasks.items():
                self.cpu[task_id] = (load.cpu, report)
            for task_id, rate in report.connections.items():
                self.connections.setdefault(task_id, []).append((rate, report))

    def usage(self, task: Task, now: float) -> Usage:
        found = self.cpu.get(task.id) if task.state == "running" else None
        if found is None or not is_fresh(found[1], now):
            return Usage(None, None, reserved_cpus(task.stored))
        rates = self.connections.get(task.id, ())
        return Usage(found[0], sum(rate for rate, r in rates if is_fresh(r, now)),
                     reserved_cpus(task.stored))


def task_usage(tasks: Iterable[Task], reports: LoadIndex | Iterable[LoadReport],
               now: float) -> list[Usage]:
    """A ``Usage`` for each task wanted running (module docstring)."""
    index = reports if isinstance(reports, LoadIndex) else LoadIndex(reports)
    return [index.usage(task, now) for task in tasks if task.wants_running]


# -- the rule ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Metric:
    name: str
    usage: float  # per counted task, in the target's unit
    target: float
    recommends: int

    def text(self) -> str:
        if self.name == "cpu":
            return f"cpu {self.usage:.0f}% of {self.target:g}%"
        return f"connections {self.usage:.3g}/s of {self.target:g}/s"


def _recommend(name: str, usage: list[float], target: float, missing: int,
               current: int) -> _Metric:
    """One metric's recommendation (``usage`` per counted task, in the target's unit)."""
    mean = sum(usage) / len(usage)
    ratio = mean / target
    if abs(ratio - 1) <= TOLERANCE:
        return _Metric(name, mean, target, current)
    if missing:
        # Kubernetes' conservative fill: not counted = idle on the way up, at target on
        # the way down; the rule then holds when the filled ratio turns back or settles.
        filled = (sum(usage) + (0.0 if ratio > 1 else target * missing)) / \
            (len(usage) + missing) / target
        if abs(filled - 1) <= TOLERANCE or (filled > 1) != (ratio > 1):
            return _Metric(name, mean, target, current)
        ratio = filled
    return _Metric(name, mean, target, math.ceil(ratio * (len(usage) + missing) - 1e-9))


def _metrics(policy: Policy, loads: Sequence[Usage], current: int) -> list[_Metric]:
    counted = [t for t in loads if t.cpu is not None]
    missing = len(loads) - len(counted)
    found = []
    if policy.target_cpu:
        cpu_total = sum(t.cpu or 0.0 for t in counted)
        reserved = sum(t.reserved for t in counted)
        # utilization of what the counted tasks reserve, as Kubernetes sums requests
        percent = 100 * cpu_total / reserved
        found.append(_recommend("cpu", [percent] * len(counted), policy.target_cpu,
                                missing, current))
    if policy.target_connections:
        found.append(_recommend("connections", [t.connections or 0.0 for t in counted],
                                policy.target_connections, missing, current))
    return found


def short_duration(seconds: float) -> str:
    """Whole seconds, Go's spelling without a trailing zero unit ("5m", "1m10s")."""
    text = format_duration(max(round(seconds), 0))
    for zero in ("0s", "0m"):
        if text.endswith(zero) and len(text) > len(zero) and not text[-len(zero) - 1].isdigit():
            text = text[:-len(zero)]
    return text


def decide(policy: Policy, current: int, loads: Sequence[Usage], history: History,
           now: float) -> Decision:
    """The replicas the service should have now, and why (module docstring)."""
    counted = sum(1 for t in loads if t.cpu is not None)
    metrics = _metrics(policy, loads, current) if counted else []
    observed = _observed(metrics)
    if current < policy.min or current > policy.max:
        bound = max(min(current, policy.max), policy.min)
        why = f"below min {policy.min}" if current < policy.min else f"above max {policy.max}"
        return Decision(current, bound, bound, f"{why}: {current} -> {bound}", counted, observed,
                        "bounds")
    if not counted:
        return Decision(current, current, None, "waiting for load reports", 0, observed,
                        "waiting")
    wanted = max(m.recommends for m in metrics)
    recommendation = max(min(wanted, policy.max), policy.min)
    load = ", ".join(m.text() for m in metrics)
    tasks = f" over {counted} task{'s' if counted != 1 else ''}"
    capped = f" (max {policy.max})" if wanted > policy.max else \
        f" (min {policy.min})" if wanted < policy.min else ""
    if recommendation == current:
        steady = wanted == current
        why = "within tolerance" if steady else f"holding {current}{capped}"
        return Decision(current, current, current, f"{load}{tasks}: {why}", counted, observed,
                        "steady" if steady else "holding")
    if recommendation > current:
        return Decision(current, recommendation, recommendation,
                        f"{load}{tasks}: {current} -> {recommendation}{capped}", counted, observed,
                        "scale")
    seen = history or ((now, current),)  # a new leader: as if it had held current so far
    window = [(t, r) for t, r in seen if t >= now - policy.delay] + [(now, recommendation)]
    stable = max(r for _, r in window)
    if stable >= current:
        above = max((t for t, r in window if r >= current), default=now)
        why = (f"{load}: holding {current} (low for {short_duration(now - above)} of "
               f"{policy.delay_text})")
        return Decision(current, current, recommendation, why, counted, observed, "holding")
    capped = capped if stable == recommendation else ""
    return Decision(current, stable, recommendation, f"{load}{tasks}: {current} -> {stable}{capped}",
                    counted, observed, "scale")


CPU_STEP = 5  # percent: the status's cpu figure moves in steps of 5


def _observed(metrics: Sequence[_Metric]) -> dict[str, float | None]:
    """The figures for the status, coarse enough that noise does not rewrite it every
    period: cpu to ``CPU_STEP`` percent, connections to two significant figures."""
    out: dict[str, float | None] = {}
    for m in metrics:
        if m.name == "cpu":
            out[m.name] = CPU_STEP * round(m.usage / CPU_STEP)
        else:
            out[m.name] = float(f"{m.usage:.2g}")
    return out


def remember(history: History, decision: Decision, policy: Policy, now: float) -> History:
    """The history after ``decision``: its recommendation added, what the delay no longer
    covers dropped. A first evaluation (empty history) also records the current replicas
    at ``now``: a new leader waits the delay before scaling down."""
    kept = [(t, r) for t, r in history if t >= now - policy.delay]
    if not history:
        kept.append((now, decision.current))
    if decision.recommendation is not None:
        kept.append((now, decision.recommendation))
    return tuple(kept)
