"""Facts replication reads off plain Task and Node dicts, and the ops it builds from them.

Reading: a task's effective state (the ``effectiveState`` key the caller
computed with ``kubeless.api.tasks.effective_state``, or the task's own
status), its desired state, slot, node and end time. Building: a fresh Task
for a slot or node, and "stop this task" (desired shutdown or remove, or a
plain delete when no agent will ever see the task). Choosing which tasks to
build or stop is left to ``slots``, ``global_mode``, ``restart`` and
``history``; writing them is the applier's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from controllers.ops import CreateTask, DeleteTask, Op, Resource, UpdateTask
from kubeless.api.tasks import TERMINAL_STATES, later_state, state_index
from kubeless.store.resources import copy_data

API_VERSION = "kubeless.io/v1"
SERVICE_LABEL = "kubeless.io/service"
DERIVED_KEYS = ("effectiveState", "effectiveStatus")
# States before the scheduler binds a task: no assignment key, no container, no agent knows it.
UNBOUND_STATES = frozenset({"new", "pending"})

NewId = Callable[[], str]
Eligible = Callable[[Resource], bool]


@dataclass(frozen=True)
class Decision:
    """What one reconcile of one service decided: store operations, and when to look again."""

    ops: list[Op] = field(default_factory=list)
    requeue_after: float | None = None


def earliest(a: float | None, b: float | None) -> float | None:
    """The sooner of two optional requeue delays."""
    if a is None:
        return b
    return a if b is None else min(a, b)


# ---- reading tasks -------------------------------------------------------

def state_of(task: Resource) -> str:
    state = task.get("effectiveState")
    if isinstance(state, str):
        return state
    return later_state((task.get("status") or {}).get("state"), None)


def is_done(task: Resource) -> bool:
    return state_of(task) in TERMINAL_STATES


def desired_of(task: Resource) -> str:
    return str((task.get("spec") or {}).get("desiredState") or "running")


def wants_running(task: Resource) -> bool:
    return desired_of(task) == "running"


def slot_of(task: Resource) -> int | None:
    slot = (task.get("spec") or {}).get("slot")
    return slot if isinstance(slot, int) and not isinstance(slot, bool) else None


def node_of(task: Resource) -> str | None:
    node = (task.get("spec") or {}).get("nodeName")
    return node if isinstance(node, str) and node else None


def task_id(task: Resource) -> str:
    return str((task.get("metadata") or {}).get("name", ""))


def parse_time(value: Any) -> float | None:
    """Unix seconds from a number or a string (a number, or RFC 3339); None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str) or not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def status_time(task: Resource) -> float | None:
    """When the task last changed state (its end time, once terminal)."""
    merged = task.get("effectiveStatus") or {}
    own = task.get("status") or {}
    return parse_time(merged.get("timestamp")) or parse_time(own.get("timestamp"))


def created_time(task: Resource) -> float | None:
    return parse_time((task.get("metadata") or {}).get("creationTimestamp"))


def recency(task: Resource) -> tuple[float, float, str]:
    """Sort key: newer tasks sort later (missing times count as oldest; the id breaks ties)."""
    return (status_time(task) or -math.inf, created_time(task) or -math.inf, task_id(task))


def preference(task: Resource) -> tuple[int, int, int, tuple[float, float, str]]:
    """Sort key for "which of several tasks claiming one slot to keep": greater is better.

    Alive beats ended, further along beats behind, newer spec beats older, newer beats older.
    """
    spec_version = (task.get("spec") or {}).get("specVersion")
    return (0 if is_done(task) else 1, state_index(state_of(task)),
            spec_version if isinstance(spec_version, int) else -1, recency(task))


# ---- building ops ----------------------------------------------------------

def plain(task: Resource) -> Resource:
    """A deep copy of the task as stored: without the keys the caller derived for us."""
    return {k: copy_data(v) for k, v in task.items() if k not in DERIVED_KEYS}


def with_desired(task: Resource, desired: str) -> Resource:
    out = plain(task)
    out["spec"] = {**(out.get("spec") or {}), "desiredState": desired}
    return out


def is_stranded(task: Resource, node_ids: frozenset[str] | None) -> bool:
    """True when no agent will ever act on the task: never bound, or bound to a node that is gone."""
    if state_of(task) in UNBOUND_STATES:
        return True
    node = node_of(task)
    return node_ids is not None and (node is None or node not in node_ids)


def stop(task: Resource, desired: str, reason: str,
         node_ids: frozenset[str] | None) -> Op | None:
    """Stop one task: delete it when no agent holds it, else set its desired state (once)."""
    if is_stranded(task, node_ids):
        return DeleteTask(plain(task))
    if desired_of(task) == desired:
        return None
    return UpdateTask(with_desired(task, desired), reason)


def new_task(service: Resource, task_name: str, now: float, *, slot: int | None = None,
             node: str | None = None, annotations: dict[str, str] | None = None) -> CreateTask:
    """A pending Task frozen from the service's current template, for a slot or a node."""
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    task_spec: dict[str, Any] = {
        "serviceName": meta["name"],
        "serviceUid": meta.get("uid", ""),
        "specVersion": int(meta.get("generation") or 0),
        "template": copy_data(spec.get("template") or {}),
        "placement": copy_data(spec.get("placement") or {}),
        "ports": copy_data(spec.get("ports") or []),
        "desiredState": "running",
    }
    if slot is not None:
        task_spec["slot"] = slot
    if node is not None:
        task_spec["nodeName"] = node
    task_meta: dict[str, Any] = {
        "name": task_name,
        "namespace": meta.get("namespace", "default"),
        "labels": {**(meta.get("labels") or {}), SERVICE_LABEL: meta["name"]},
    }
    if annotations:
        task_meta["annotations"] = dict(annotations)
    return CreateTask({"apiVersion": API_VERSION, "kind": "Task", "metadata": task_meta,
                       "spec": task_spec, "status": {"state": "pending", "timestamp": now}})


def delete(task: Resource) -> DeleteTask:
    return DeleteTask(plain(task))
