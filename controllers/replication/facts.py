"""What replication builds from Task models: the ops on tasks, and its sort keys.

Reading a task (effective state, desired state, slot, node, times) is the
Task model's (``kubeless.api.tasks.Task``). Here: replication's sort keys
over tasks (``recency``, ``preference``), and building ops: a fresh Task
for a slot or node, and "stop this task" (desired shutdown or remove, or a
plain delete when no agent will ever see the task). Choosing which tasks to
build or stop is left to ``slots``, ``global_mode``, ``restart`` and
``history``; writing them is the applier's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from controllers.ops import CreateTask, DeleteTask, Op, Resource, UpdateTask
from kubeless.api.tasks import Task, state_index
from kubeless.store.resources import copy_data

API_VERSION = "kubeless.io/v1"
SERVICE_LABEL = "kubeless.io/service"
# States before the scheduler binds a task: no assignment key, no container, no agent knows it.
UNBOUND_STATES = frozenset({"new", "pending"})

NewId = Callable[[], str]
Eligible = Callable[[Resource], bool]  # of a node


@dataclass(frozen=True)
class Decision:
    """What one reconcile of one service decided: store operations, and when to look again."""

    ops: list[Op] = field(default_factory=list)
    requeue_after: float | None = None
    job: Resource | None = None  # a job's run bookkeeping (job_runs), for its status


def earliest(a: float | None, b: float | None) -> float | None:
    """The sooner of two optional requeue delays."""
    if a is None:
        return b
    return a if b is None else min(a, b)


# ---- ordering tasks -------------------------------------------------------

def recency(task: Task) -> tuple[float, float, str]:
    """Sort key: newer tasks sort later (missing times count as oldest; the id breaks ties)."""
    return (task.status_time or -math.inf, task.created_time or -math.inf, task.id)


def preference(task: Task) -> tuple[int, int, int, tuple[float, float, str]]:
    """Sort key for "which of several tasks claiming one slot to keep": greater is better.

    Alive beats ended, further along beats behind, newer spec beats older, newer beats older.
    """
    return (0 if task.is_done else 1, state_index(task.state), task.spec_version,
            recency(task))


# ---- building ops ----------------------------------------------------------

def plain(task: Task) -> Resource:
    """A deep copy of the task as stored, to write."""
    out: Resource = copy_data(task.stored)
    return out


def with_desired(task: Task, desired: str) -> Resource:
    out = plain(task)
    out["spec"] = {**(out.get("spec") or {}), "desiredState": desired}
    return out


def is_stranded(task: Task, node_ids: frozenset[str] | None) -> bool:
    """True when no agent will ever act on the task: never bound, or bound to a node that is gone."""
    if task.state in UNBOUND_STATES:
        return True
    node = task.node
    return node_ids is not None and (node is None or node not in node_ids)


def stop(task: Task, desired: str, reason: str,
         node_ids: frozenset[str] | None) -> Op | None:
    """Stop one task: delete it when no agent holds it, else set its desired state (once)."""
    if is_stranded(task, node_ids):
        return DeleteTask(plain(task))
    if task.desired == desired:
        return None
    return UpdateTask(with_desired(task, desired), reason)


def new_task(service: Resource, task_name: str, now: float, *, slot: int | None = None,
             node: str | None = None, annotations: dict[str, str] | None = None,
             job_run: int | None = None) -> CreateTask:
    """A pending Task frozen from the service's current template, for a slot or a node
    (and, for a job, its run)."""
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
    if job_run is not None:
        task_spec["jobRun"] = job_run
    task_meta: dict[str, Any] = {
        "name": task_name,
        "namespace": meta.get("namespace", "default"),
        "labels": {**(meta.get("labels") or {}), SERVICE_LABEL: meta["name"]},
    }
    if annotations:
        task_meta["annotations"] = dict(annotations)
    return CreateTask({"apiVersion": API_VERSION, "kind": "Task", "metadata": task_meta,
                       "spec": task_spec, "status": {"state": "pending", "timestamp": now}})


def delete(task: Task) -> DeleteTask:
    return DeleteTask(plain(task))
