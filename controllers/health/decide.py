"""The health controller's decision: what a node's liveness and availability mean for its tasks.

- ``orphan_tasks``: a down node (heartbeat lease gone) cannot run anything:
  its tasks that have not ended become ``orphaned`` (health writes that
  status), so replication replaces them under the restart policy;
- ``shutdown_stale``: a node that is ready again may still run the
  containers of tasks orphaned while it was away: those still wanted
  running get desired ``shutdown`` so its agent stops them;
- ``drain``: a drained node's live tasks get desired ``shutdown``; their
  slots are then free and replication makes new tasks at once.

Each takes the node and any tasks (those not on the node are ignored) and is
idempotent. Deciding when a node is down (lease expiry), writing the
operations with the nodes' assignments, and restarting failed tasks
(replication's restart policy) are left to others.
"""

from __future__ import annotations

from typing import Any

from controllers.ops import Op, Resource, UpdateTask
from kubeless.api.tasks import Task
from kubeless.store.resources import copy_data


def _node_id(node: Resource) -> str:
    return str((node.get("metadata") or {}).get("name", ""))


def _on(node: Resource, tasks: list[Task]) -> list[Task]:
    name = _node_id(node)
    return sorted((t for t in tasks if t.node == name), key=lambda t: t.id)


def _plain(task: Task) -> Resource:
    out: Resource = copy_data(task.stored)
    return out


def _with_desired(task: Task, desired: str, reason: str) -> UpdateTask:
    out = _plain(task)
    out["spec"] = {**(out.get("spec") or {}), "desiredState": desired}
    return UpdateTask(out, reason)


def _node_state(node: Resource) -> str:
    return str((node.get("status") or {}).get("state") or "unknown")


def orphan_tasks(node: Resource, tasks: list[Task], now: float) -> list[Op]:
    """A down node's tasks that have not ended become orphaned (nothing when the node is not down)."""
    if _node_state(node) != "down":
        return []
    ops: list[Op] = []
    message = f"node {_node_id(node)} is down"
    for task in _on(node, tasks):
        if task.is_done:
            continue
        out = _plain(task)
        status: dict[str, Any] = dict(out.get("status") or {})
        status.update(state="orphaned", message=message, timestamp=now)
        out["status"] = status
        ops.append(UpdateTask(out, message))
    return ops


def shutdown_stale(node: Resource, tasks: list[Task]) -> list[Op]:
    """A ready node's orphaned tasks still wanted running get desired shutdown."""
    if _node_state(node) != "ready":
        return []
    return [_with_desired(t, "shutdown", f"node {_node_id(node)} is back; task was orphaned")
            for t in _on(node, tasks) if t.state == "orphaned" and t.wants_running]


def drain(node: Resource, tasks: list[Task]) -> list[Op]:
    """A drained node's live tasks wanted running get desired shutdown.

    Ended tasks are left alone: nothing runs, and their slot stays under the
    restart policy (replication places any replacement elsewhere).
    """
    if (node.get("spec") or {}).get("availability") != "drain":
        return []
    return [_with_desired(t, "shutdown", f"node {_node_id(node)} is drained")
            for t in _on(node, tasks)
            if t.wants_running and not t.is_done]
