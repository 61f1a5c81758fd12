"""The metrics' handler of agents' reports: creation to running, observed once per task."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from controllers.metrics import observe_report

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
