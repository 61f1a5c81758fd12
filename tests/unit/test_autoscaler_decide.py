"""The autoscaler's HPA rule as a pure function: tolerance, bounds, delay, missing reports."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from controllers.autoscaler.decide import (Policy, Usage, decide, remember,
                                           short_duration, task_usage)
from kubeless.api.load import parse_report
from tests.support.builders import NOW, task

Resource = dict[str, Any]


def policy(**scale: Any) -> Policy:
    block = {"min": 1, "max": 10, "targetCPU": 70, "scaleDownDelay": "5m", **scale}
    found = Policy.of({"spec": {"mode": "replicated", "replicas": 1, "autoscale": block}})
    assert found is not None
    return found


def cpu(*busy: float, reserved: float = 1.0) -> list[Usage]:
    """Counted tasks busy that many cores each (None: wanted running, not counted)."""
    return [Usage(b, 0.0 if b is not None else None, reserved) for b in busy]


LONG_AGO = ((NOW - 3600, 1),)  # a history whose only entry the delay no longer covers


@pytest.mark.parametrize("case, busy, current, desired, reason", [
    ("up at once", (1.0, 1.0), 2, 3, "cpu 100% of 70% over 2 tasks: 2 -> 3"),
    ("within tolerance above", (0.76, 0.76), 2, 2, "within tolerance"),
    ("within tolerance below", (0.63, 0.63), 2, 2, "within tolerance"),
    ("just past tolerance", (0.78, 0.78), 2, 3, "2 -> 3"),
    ("capped at max", (7.0, 7.0), 2, 10, "2 -> 10 (max 10)"),
    ("the spec's example", (1.0, 1.0), 2, 3, "cpu 100% of 70% over 2 tasks"),
])
def test_scale_up_and_tolerance(case: str, busy: tuple[float, ...], current: int, desired: int,
                                reason: str) -> None:
    d = decide(policy(), current, cpu(*busy), LONG_AGO, NOW)
    assert d.desired == desired, case
    assert reason in d.reason, case


def test_the_brief_example_143_percent() -> None:
    d = decide(policy(), 2, cpu(1.0, 1.0, reserved=0.7), LONG_AGO, NOW)
    assert d.reason == "cpu 143% of 70% over 2 tasks: 2 -> 5"  # ceil(2.04 x 2)
    assert (d.desired, d.direction) == (5, "up")


@pytest.mark.parametrize("current, desired, reason", [
    (0, 1, "below min 1: 0 -> 1"),
    (12, 10, "above max 10: 12 -> 10"),
])
def test_bounds_are_clamped_at_once_even_without_reports(current: int, desired: int,
                                                          reason: str) -> None:
    d = decide(policy(), current, [], (), NOW)
    assert (d.desired, d.reason) == (desired, reason)


def test_no_counted_task_no_change() -> None:
    d = decide(policy(), 3, cpu(None, None, None), LONG_AGO, NOW)
    assert (d.desired, d.reason, d.recommendation) == (3, "waiting for load reports", None)


def test_scale_down_waits_for_the_delay_with_history() -> None:
    p = policy()
    history = ((NOW - 70, 5),)  # it recommended 5 seventy seconds ago
    d = decide(p, 5, cpu(0.2, 0.2, 0.2, 0.2, 0.2), history, NOW)
    assert d.desired == 5
    assert d.reason == "cpu 20% of 70%: holding 5 (low for 1m10s of 5m)"
    later = remember(history, d, p, NOW)
    d = decide(p, 5, cpu(0.2, 0.2, 0.2, 0.2, 0.2), later, NOW + 300)
    assert (d.desired, d.direction) == (2, "down")
    assert d.reason == "cpu 20% of 70% over 5 tasks: 5 -> 2"


def test_scale_down_goes_to_the_highest_recommendation_in_the_window() -> None:
    history = ((NOW - 400, 5), (NOW - 200, 4), (NOW - 100, 3))
    d = decide(policy(), 5, cpu(0.1, 0.1, 0.1, 0.1, 0.1), history, NOW)
    assert d.desired == 4


def test_a_new_leader_waits_the_delay_before_scaling_down() -> None:
    p = policy(scaleDownDelay="2s")
    d = decide(p, 3, cpu(0.0, 0.0, 0.0), (), NOW)
    assert d.desired == 3 and "holding 3 (low for 0s of 2s)" in d.reason
    history = remember((), d, p, NOW)
    assert decide(p, 3, cpu(0.0, 0.0, 0.0), history, NOW + 1).desired == 3
    assert decide(p, 3, cpu(0.0, 0.0, 0.0), history, NOW + 2.5).desired == 1


def test_a_new_leader_scales_up_at_once() -> None:
    assert decide(policy(), 1, cpu(2.0), (), NOW).desired == 3


def test_zero_delay_scales_down_at_once() -> None:
    d = decide(policy(scaleDownDelay="0s"), 4, cpu(0.1, 0.1, 0.1, 0.1), LONG_AGO, NOW)
    assert d.desired == 1


def test_missing_reports_count_as_idle_on_the_way_up() -> None:
    # two counted at 280% of a CPU, two not counted (idle): (280 + 280) / 4 = 140% = 2x
    d = decide(policy(), 4, cpu(2.8, 2.8, None, None), LONG_AGO, NOW)
    assert d.desired == 8
    # two counted at 140%: idle fill brings it to 70%, the target: no change
    d = decide(policy(), 4, cpu(1.4, 1.4, None, None), LONG_AGO, NOW)
    assert d.desired == 4 and d.reason.endswith("within tolerance")


def test_missing_reports_count_as_the_target_on_the_way_down() -> None:
    # one counted idle task, three not counted (at the target): (0 + 3*70) / 4 = 52.5%
    d = decide(policy(scaleDownDelay="0s"), 4, cpu(0.0, None, None, None), LONG_AGO, NOW)
    assert d.desired == 3
    # without them it would go to 1
    assert decide(policy(scaleDownDelay="0s"), 4, cpu(0.0, 0.0, 0.0, 0.0),
                  LONG_AGO, NOW).desired == 1


def test_the_highest_of_two_metrics_wins() -> None:
    p = policy(targetConnections=10)
    loads = [Usage(0.1, 30.0, 1.0), Usage(0.1, 30.0, 1.0)]
    d = decide(p, 2, loads, LONG_AGO, NOW)
    assert d.desired == 6  # connections: 30/s of 10/s; cpu alone says 1
    assert "cpu 10% of 70%, connections 30/s of 10/s over 2 tasks: 2 -> 6" == d.reason
    assert d.observed == {"cpu": 10, "connections": 30.0}
    assert decide(p, 2, [Usage(0.123, 3.14159, 1.0)], LONG_AGO, NOW).observed == \
        {"cpu": 10, "connections": 3.1}


def test_connections_only() -> None:
    p = policy(targetCPU=None, targetConnections=5)
    d = decide(p, 1, [Usage(3.0, 12.0, 1.0)], LONG_AGO, NOW)
    assert d.desired == 3 and list(d.observed) == ["connections"]


def test_task_usage_counts_running_tasks_with_a_fresh_report() -> None:
    tasks = [task("a", node="n1"), task("b", node="n1", state="starting"),
             task("c", node="n2"), task("d", node="n1", desired="shutdown")]
    values = [{"node": "n1", "timestamp": NOW - 1, "period": 10.0,
               "tasks": {"a": {"cpu": 0.5, "memory": 1}, "b": {"cpu": 0.1, "memory": 1},
                         "d": {"cpu": 1.0, "memory": 1}},
               "connections": {"a": 2.0, "c": 1.0}},
              {"node": "n2", "timestamp": NOW - 31, "period": 10.0,  # stale
               "tasks": {"c": {"cpu": 0.9, "memory": 1}}, "connections": {"a": 1.5}}]
    reports = [r for r in map(parse_report, values) if r is not None]
    assert task_usage(tasks, reports, NOW) == [Usage(0.5, 2.0, 1.0), Usage(None, None, 1.0),
                                               Usage(None, None, 1.0)]


def test_short_durations() -> None:
    assert [short_duration(s) for s in (0, 10, 70, 300, 3600, 3610)] == \
        ["0s", "10s", "1m10s", "5m", "1h", "1h0m10s"]


@given(current=st.integers(0, 20), low=st.integers(1, 5), span=st.integers(0, 10),
       busy=st.lists(st.one_of(st.none(), st.floats(0, 8)), max_size=12))
def test_the_decision_is_always_within_bounds_when_it_changes_anything(
        current: int, low: int, span: int, busy: list[float | None]) -> None:
    p = policy(min=low, max=low + span)
    d = decide(p, current, cpu(*busy), LONG_AGO, NOW)
    if d.desired != current:
        assert p.min <= d.desired <= p.max
    assert d.desired == current or d.reason.endswith(tuple("0123456789)"))
