"""Task states and the facts every role agrees on about them.

States follow Swarm's order; a task's state only moves forward. The
controllers write a task's own status (pending, assigned, orphaned...),
the agent of its node reports what the runtime observed (accepted ...
running, complete, failed, rejected, shutdown) under its own prefix; the
state a user sees and controllers decide on is the later of the two
(``effective_state``), so a stale report can never undo "orphaned".
"""

from __future__ import annotations

import secrets
import string
from datetime import datetime
from typing import Any

TASK_STATES = ("new", "pending", "assigned", "accepted", "preparing", "starting", "running",
               "complete", "shutdown", "failed", "rejected", "remove", "orphaned")
_ORDER = {s: i for i, s in enumerate(TASK_STATES)}

# Past "running": the task's container is gone or will never start.
TERMINAL_STATES = frozenset({"complete", "shutdown", "failed", "rejected", "remove", "orphaned"})
# States that count against a slot: the task runs or is on its way to running.
ACTIVE_STATES = frozenset({"new", "pending", "assigned", "accepted", "preparing", "starting",
                           "running"})
DESIRED_STATES = ("running", "shutdown", "remove")

_ID_ALPHABET = string.ascii_lowercase + string.digits
TASK_ID_LENGTH = 25


def state_index(state: str | None) -> int:
    return _ORDER.get(state or "new", 0)


def later_state(a: str | None, b: str | None) -> str:
    """The further along of two states (unknown states count as new)."""
    return (a or "new") if state_index(a) >= state_index(b) else (b or "new")


def effective_state(task: dict[str, Any], report: dict[str, Any] | None) -> str:
    """The state of a task given its own status and its agent's report (if any)."""
    own = (task.get("status") or {}).get("state")
    if report is None or report.get("nodeName", task["spec"].get("nodeName")) != \
            task["spec"].get("nodeName"):
        return own or "new"
    return later_state(own, report.get("state"))


def effective_status(task: dict[str, Any], report: dict[str, Any] | None) -> dict[str, Any]:
    """The task's status merged with its agent's report, whichever is further along."""
    own = dict(task.get("status") or {})
    state = effective_state(task, report)
    if report is not None and state == report.get("state") and state != own.get("state"):
        merged = {**own, **report}
        merged["state"] = state
        return merged
    own["state"] = state
    return own


def is_terminal(state: str | None) -> bool:
    return state in TERMINAL_STATES


def new_task_id() -> str:
    """25 lowercase alphanumerics, like Swarm's task ids."""
    number = secrets.randbits(130)  # 36**25 < 2**130: one draw from the OS, not 25
    chars = []
    for _ in range(TASK_ID_LENGTH):
        number, digit = divmod(number, 36)
        chars.append(_ID_ALPHABET[digit])
    return "".join(chars)


def task_display_name(task: dict[str, Any]) -> str:
    """``web.2`` for a replicated task, ``web.<node>`` for a global one (as docker service ps)."""
    spec = task.get("spec") or {}
    slot = spec.get("slot")
    suffix = slot if slot is not None else spec.get("nodeName", "?")
    return f"{spec.get('serviceName', '?')}.{suffix}"


def container_name(task: dict[str, Any]) -> str:
    """``<service>.<slot>.<task-id>`` (or ``<service>.<node-id>.<task-id>``), as Swarm names them."""
    return f"{task_display_name(task)}.{task['metadata']['name']}"


def created_at(resource: dict[str, Any]) -> float | None:
    """metadata.creationTimestamp as unix seconds, or None when absent or unreadable."""
    stamp = (resource.get("metadata") or {}).get("creationTimestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None
