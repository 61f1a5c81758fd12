"""Rates from two samples of cumulative counters (pure).

A ``Sample`` is what was read at one moment (monotonic seconds) of counters that only
go up while what they count lives: a task's CPU seconds, the connections a mesh sent to
an endpoint task. ``rates(before, after)`` gives each counter's increase per second
between the two, for the counters present in both. A counter that went down started
over (a process runtime task's dead child not reaped inside the task, an endpoint that
left the mesh's table and came back): its increase over the period is unknown, so it
has no rate that period and the new value is the next period's base. (Prometheus takes
the new value as the increase; here that would turn a lost child's CPU time into a
spike, and an autoscaler acting on a spike scales up for nothing.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds
    counters: Mapping[str, float]


def rate(before: float, after: float, seconds: float) -> float | None:
    """Per second from ``before`` to ``after`` over ``seconds``; None when it went down or no
    time passed."""
    if seconds <= 0 or after < before:
        return None
    return (after - before) / seconds


def rates(before: Sample | None, after: Sample) -> dict[str, float]:
    """Each counter's rate between two samples (those in both; none from a first sample)."""
    if before is None:
        return {}
    seconds = after.at - before.at
    found = {}
    for key, value in after.counters.items():
        if key in before.counters:
            r = rate(before.counters[key], value, seconds)
            if r is not None:
                found[key] = r
    return found
