"""The dashboard's page model: the cluster as the view holds it in, rows to show out.

Pure (no etcd, no event loop): ``snapshot`` takes plain data (nodes merged with
their heartbeats, services with their status, ``Task``s, Event documents) and
``now``, and returns the JSON document the page renders and the ``/events``
stream pushes. Every row carries its display text ready-made (the page only
lays it out) and, where the page keeps an age current between snapshots, the
unix time it counts from (``since``).

What a mode means is ``kubeless.api.workload``'s; a task's effective state
``kubeless.api.tasks``'; an Event's texts ``kubeless.api.events``'.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from collections.abc import Iterable, Sequence
from typing import Any

from kubeless.api import human_duration
from kubeless.api.events import frequency, object_text
from kubeless.api.ports import ports_text
from kubeless.api.tasks import Task, parse_time, task_display_name
from kubeless.api.workload import is_global, mode_of

Resource = dict[str, Any]
Row = dict[str, Any]

# Enough to see what happened lately without shipping the whole history each push.
MAX_EVENTS = 50
MAX_TASKS = 500


def snapshot(nodes: Sequence[Resource], services: Sequence[Resource], tasks: Sequence[Task],
             events: Iterable[Resource], now: float, *, max_tasks: int = MAX_TASKS,
             max_events: int = MAX_EVENTS) -> Row:
    """The page's document: nodes, services, tasks and the latest events, as rows."""
    by_service: dict[tuple[str, str], list[Task]] = {}
    for t in tasks:
        by_service.setdefault((t.namespace, t.service_name), []).append(t)
    task_rows = sorted((task_row(t, now) for t in tasks), key=task_order)
    event_rows = sorted((event_row(e, now) for e in events if isinstance(e, dict)),
                        key=lambda r: -r["since"])
    return {"generatedAt": now,
            "nodes": node_rows(nodes, tasks),
            "services": [service_row(s, by_service.get(service_key(s), []))
                         for s in sorted(services, key=resource_order)],
            "tasks": task_rows[:max_tasks],
            "tasksOmitted": max(0, len(task_rows) - max_tasks),
            "events": event_rows[:max_events],
            "eventsOmitted": max(0, len(event_rows) - max_events)}


def resource_order(resource: Resource) -> tuple[str, str]:
    meta = resource.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def service_key(service: Resource) -> tuple[str, str]:
    meta = service.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


# -- nodes -------------------------------------------------------------------------

def node_rows(nodes: Sequence[Resource], tasks: Sequence[Task]) -> list[Row]:
    """One row per node: its state from the heartbeat, and how many tasks it holds."""
    held = Counter(t.node for t in tasks if t.occupies)
    return [node_row(n, held[(n.get("metadata") or {}).get("name")])
            for n in sorted(nodes, key=resource_order)]


def node_row(node: Resource, tasks: int) -> Row:
    spec, status = node.get("spec") or {}, node.get("status") or {}
    return {"name": str((node.get("metadata") or {}).get("name", "")),
            "state": str(status.get("state") or "down"),
            "availability": str(spec.get("availability") or "active"),
            "role": str(spec.get("role") or "worker"),
            "address": str(status.get("address") or ""),
            "tasks": tasks,
            "message": str(status.get("message") or "")}


# -- services ----------------------------------------------------------------------

def service_row(service: Resource, tasks: Sequence[Task]) -> Row:
    """Mode, replicas running/desired, the rollout's progress and the ports (``tasks``:
    the service's own)."""
    spec = service.get("spec") or {}
    status = _mapping(service.get("status"))
    update = _mapping(status.get("updateStatus"))
    ns, name = service_key(service)
    running = sum(1 for t in tasks if t.wants_running and t.state == "running")
    desired = status.get("replicas") if is_global(service) else spec.get("replicas")
    desired = desired if isinstance(desired, int) else 0
    return {"namespace": ns, "name": name, "mode": mode_of(service),
            "running": running, "desired": desired, "replicas": f"{running}/{desired}",
            "update": update_text(update), "updateState": str(update.get("state") or ""),
            "ports": ports_text(status.get("ports") or spec.get("ports"))}


def _mapping(value: Any) -> Resource:
    return value if isinstance(value, dict) else {}


def update_text(update: Resource) -> str:
    """``updating 2/3 (1 failed)``, ``paused: <why>``, ``completed``; "" with no rollout."""
    if not update.get("state"):
        return ""
    text = str(update["state"]).replace("_", " ")
    total = update.get("total")
    if isinstance(total, int) and total > 0 and text in ("updating", "rollback started"):
        text += f" {update.get('updated', 0)}/{total}"
        if update.get("failed"):
            text += f" ({update['failed']} failed)"
    if "paused" in text and update.get("message"):
        text += f": {update['message']}"
    return text


# -- tasks -------------------------------------------------------------------------

def task_row(task: Task, now: float) -> Row:
    """``web.2`` on its node, state and desired state, for how long, and its error."""
    since = task.status_time or task.created_time or now
    return {"id": task.id, "name": task_display_name(task.stored), "namespace": task.namespace,
            "service": task.service_name, "slot": task.slot, "node": task.node or "",
            "state": task.state, "desired": task.desired, "since": since,
            "age": human_duration(int(max(0.0, now - since))),
            "error": str(task.status.get("error") or "")}


def task_order(row: Row) -> tuple[Any, ...]:
    """By service, then slot (global tasks by node), newest first: ``service ps``'s order."""
    slot = row["slot"]
    return (row["namespace"], row["service"], slot if slot is not None else 0,
            row["node"] if slot is None else "", -row["since"])


# -- events ------------------------------------------------------------------------

def event_row(event: Resource, now: float) -> Row:
    """type, reason, object, message and ``x7 over 3m``, as ``kubeless events`` writes
    them (``kubeless.api.events``); a field it cannot read shows as empty, never fails."""
    count = event["count"] if isinstance(event.get("count"), int) else 1
    readable = {**event, "count": count}
    last = parse_time(event.get("lastTimestamp")) or parse_time(event.get("firstTimestamp"))
    since = last if last is not None else now
    source = _mapping(event.get("source"))
    involved = _mapping(event.get("involvedObject"))
    return {"type": str(event.get("type") or "Normal"), "reason": str(event.get("reason") or ""),
            "object": object_text(readable), "namespace": str(involved.get("namespace") or ""),
            "message": str(event.get("message") or ""), "count": count,
            "repeat": frequency(readable, datetime.fromtimestamp(now, timezone.utc)),
            "source": str(source.get("component") or ""),
            "since": since, "age": human_duration(int(max(0.0, now - since)))}
