"""The metrics' handler of agents' reports (creation to running, observed once per task),
and the per-service figures counted at scrape time."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from controllers.metrics import observe_report, service_figures
from tests.support.builders import service, task

TASK = {"metadata": {"name": "t1", "creationTimestamp": "2026-01-01T00:00:00+00:00"}}
RUNNING = {"state": "running"}

CASES: dict[str, tuple[Any, Any, Any, int]] = {
    # name: (task as stored, old report, new report, observations)
    "first report of running": (TASK, {"state": "starting"}, RUNNING, 1),
    "running from no report": (TASK, None, RUNNING, 1),
    "still running": (TASK, RUNNING, {**RUNNING, "health": "healthy"}, 0),
    "not running yet": (TASK, None, {"state": "starting"}, 0),
    "a report deleted": (TASK, RUNNING, None, 0),
    "an unknown task": (None, None, RUNNING, 0),
    "no creation time": ({"metadata": {"name": "t1"}}, None, RUNNING, 0),
}


def _count() -> float:
    return REGISTRY.get_sample_value("kubeless_task_creation_to_running_seconds_count") or 0.0


@pytest.mark.parametrize("case", list(CASES))
def test_observe_report(case: str) -> None:
    task, old, new, observed = CASES[case]
    before = _count()
    observe_report(task, old, new)
    assert _count() - before == observed


# -- per-service figures ----------------------------------------------------------------

PAUSED = {"status": {"updateStatus": {"state": "paused"}}}
FIGURES: dict[str, tuple[Any, list[Any], tuple[int, int, int] | None]] = {
    # name: (service, tasks, (desired, running, paused) or None)
    "all running": (service(3), [task(f"t{i}", slot=i) for i in (1, 2, 3)], (3, 3, 0)),
    "one starting, one stopping": (service(3), [
        task("t1", slot=1), task("t2", slot=2, state="starting"),
        task("t3", slot=3, desired="shutdown")], (3, 1, 0)),
    "scaled to zero": (service(0), [], (0, 0, 0)),
    "global: one per wanted task": (service(mode="global"), [
        task("a", node="n1"), task("b", node="n2", state="pending")], (2, 1, 0)),
    "rollout paused": ({**service(2), **PAUSED}, [task("t1", slot=1)], (2, 1, 1)),
    "rollback paused": ({**service(1), "status": {"updateStatus": {"state": "rollback_paused"}}},
                        [], (1, 0, 1)),
    "a job: not counted": (service(2, mode="replicated-job"), [task("t1", slot=1)], None),
}


@pytest.mark.parametrize("case", list(FIGURES))
def test_service_figures(case: str) -> None:
    svc, tasks, want = FIGURES[case]
    assert service_figures(svc, tasks) == want
