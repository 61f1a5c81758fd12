"""The restart policy: whether, and when, a slot (or a global node) whose task ended gets a new one.

Given the slot's current task (desired running, now terminal) and the slot's
other tasks, ``judge`` answers: replace now, replace after N seconds, or
never (condition none, on-failure after a clean exit, maxAttempts reached in
the window). Restarts are counted without keeping old tasks around: every
replacement carries, in the ``kubeless.io/restarts`` annotation, the times of
the slot's restarts still inside the window (at most maxAttempts of them), so
trimming task history never resets the count.

Orphaned tasks (their node died, health marked them) follow the condition
(none never replaces them) but are replaced at once, past the delay and past
maxAttempts; they use up an attempt only under condition ``any``.

Creating the replacement and stopping the old task is left to the callers
(``slots``, ``global_mode``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from controllers.ops import Resource
from kubeless.api.tasks import Task
from kubeless.api.units import parse_duration

HISTORY_ANNOTATION = "kubeless.io/restarts"
FAILURES = frozenset({"failed", "rejected"})


@dataclass(frozen=True)
class RestartPolicy:
    condition: str = "any"
    delay: float = 5.0
    max_attempts: int = 0
    window: float = 0.0

    @classmethod
    def of(cls, service: Resource) -> RestartPolicy:
        raw: dict[str, Any] = ((service.get("spec") or {}).get("template") or {}) \
            .get("restartPolicy") or {}
        return cls(condition=str(raw.get("condition", "any")),
                   delay=_seconds(raw.get("delay", "5s")),
                   max_attempts=int(raw.get("maxAttempts") or 0),
                   window=_seconds(raw.get("window", "0s")))


@dataclass(frozen=True)
class Verdict:
    replace: bool
    annotations: dict[str, str] = field(default_factory=dict)
    requeue_after: float | None = None


NEVER = Verdict(replace=False)


def _seconds(text: Any) -> float:
    try:
        return parse_duration(str(text))
    except ValueError:
        return 0.0


def restart_times(tasks: Iterable[Task], policy: RestartPolicy, now: float) -> list[float]:
    """The slot's restarts inside the window, oldest first, from every task's annotation."""
    times: set[float] = set()
    for task in tasks:
        raw = task.annotations.get(HISTORY_ANNOTATION)
        for part in str(raw or "").split(","):
            try:
                times.add(float(part))
            except ValueError:
                continue
    return sorted(t for t in times if policy.window <= 0 or t > now - policy.window)


def history_annotation(times: list[float]) -> dict[str, str]:
    return {HISTORY_ANNOTATION: ",".join(f"{t:.3f}" for t in times)} if times else {}


def carried(times: list[float], policy: RestartPolicy) -> list[float]:
    """The restart times worth keeping on a new task: the last maxAttempts (none when unlimited)."""
    return times[-policy.max_attempts:] if policy.max_attempts > 0 else []


def judge(current: Task, slot_tasks: list[Task], policy: RestartPolicy,
          now: float) -> Verdict:
    """Whether the slot whose current task ``current`` ended gets a new task now."""
    state = current.state
    orphaned = state == "orphaned"
    if policy.condition == "none":
        return NEVER
    if policy.condition == "on-failure" and not (orphaned or state in FAILURES):
        return NEVER
    times = restart_times(slot_tasks, policy, now)
    if not orphaned:
        if policy.max_attempts > 0 and len(times) >= policy.max_attempts:
            if policy.window <= 0:
                return NEVER
            # The oldest restart that must leave the window before one more is allowed.
            expires = times[len(times) - policy.max_attempts] + policy.window
            return Verdict(replace=False, requeue_after=max(expires - now, 0.0))
        ready_at = (current.status_time or 0.0) + policy.delay
        if now < ready_at:
            return Verdict(replace=False, requeue_after=ready_at - now)
    if not orphaned or policy.condition == "any":
        times = times + [now]
    return Verdict(replace=True, annotations=history_annotation(carried(times, policy)))
