"""What a node's agent tells the cluster's history when one of its tasks changes state.

Pure: ``task_event(task, previous state, report)`` is the Event to record (type,
reason, message), or None for a change nobody needs to read about. As kubelet's:
Started, Completed, Failed (with the exit code or the runtime's error), Unhealthy
(the healthcheck failed: the container was stopped), Rejected (could not start),
Stopped (told to stop). The worker records them under the node's own prefix
(``kubeless.store.events``), so a node writes nothing outside its etcd role.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeless.api.tasks import task_display_name

UNHEALTHY = "container unhealthy"  # the docker runtime's error for a failed healthcheck


@dataclass(frozen=True)
class TaskEvent:
    type: str
    reason: str
    message: str


def task_event(task: dict[str, Any] | None, previous: str | None,
               report: dict[str, Any]) -> TaskEvent | None:
    """The Event for a task whose state moved from ``previous`` to ``report["state"]``."""
    state = report.get("state")
    if task is None or state == previous:
        return None
    name = task_display_name(task)
    error = str(report.get("error") or "").strip()
    code = report.get("exitCode")
    match state:
        case "running":
            container = str(report.get("containerId") or "")[:12]
            where = f" (container {container})" if container else ""
            return TaskEvent("Normal", "Started", f"{name} started{where}")
        case "complete":
            return TaskEvent("Normal", "Completed", f"{name} exited 0")
        case "failed" if error == UNHEALTHY:
            return TaskEvent("Warning", "Unhealthy",
                             f"{name} failed its healthcheck: the container was stopped")
        case "failed":
            why = f"exit code {code}" if code not in (None, "") else ""
            if error and error not in why:
                why = f"{why}: {error}" if why else error
            return TaskEvent("Warning", "Failed", f"{name} failed ({why or 'no reason given'})")
        case "rejected":
            return TaskEvent("Warning", "Rejected",
                             f"{name} could not start: {error or 'no reason given'}")
        case "shutdown":
            return TaskEvent("Normal", "Stopped", f"{name} stopped")
    return None
