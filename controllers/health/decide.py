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
from kubeless.api.tasks import TERMINAL_STATES, later_state
from kubeless.store.resources import copy_data

DERIVED_KEYS = ("effectiveState", "effectiveStatus")


def _node_id(node: Resource) -> str:
    return str((node.get("metadata") or {}).get("name", ""))


def _on(node: Resource, tasks: list[Resource]) -> list[Resource]:
    name = _node_id(node)
    mine = [t for t in tasks if (t.get("spec") or {}).get("nodeName") == name]
    return sorted(mine, key=lambda t: str((t.get("metadata") or {}).get("name", "")))


def _state(task: Resource) -> str:
    state = task.get("effectiveState")
    return state if isinstance(state, str) else later_state((task.get("status") or {}).get("state"), None)


def _desired(task: Resource) -> str:
    return str((task.get("spec") or {}).get("desiredState") or "running")


def _plain(task: Resource) -> Resource:
    return {k: copy_data(v) for k, v in task.items() if k not in DERIVED_KEYS}


def _with_desired(task: Resource, desired: str, reason: str) -> UpdateTask:
    out = _plain(task)
    out["spec"] = {**(out.get("spec") or {}), "desiredState": desired}
    return UpdateTask(out, reason)


def _node_state(node: Resource) -> str:
    return str((node.get("status") or {}).get("state") or "unknown")


def orphan_tasks(node: Resource, tasks: list[Resource], now: float) -> list[Op]:
    """A down node's tasks that have not ended become orphaned (nothing when the node is not down)."""
    if _node_state(node) != "down":
        return []
    ops: list[Op] = []
    message = f"node {_node_id(node)} is down"
    for task in _on(node, tasks):
        if _state(task) in TERMINAL_STATES:
            continue
        out = _plain(task)
        status: dict[str, Any] = dict(out.get("status") or {})
        status.update(state="orphaned", message=message, timestamp=now)
        out["status"] = status
        ops.append(UpdateTask(out, message))
    return ops


def shutdown_stale(node: Resource, tasks: list[Resource]) -> list[Op]:
    """A ready node's orphaned tasks still wanted running get desired shutdown."""
    if _node_state(node) != "ready":
        return []
    return [_with_desired(t, "shutdown", f"node {_node_id(node)} is back; task was orphaned")
            for t in _on(node, tasks) if _state(t) == "orphaned" and _desired(t) == "running"]


def drain(node: Resource, tasks: list[Resource]) -> list[Op]:
    """A drained node's live tasks wanted running get desired shutdown.

    Ended tasks are left alone: nothing runs, and their slot stays under the
    restart policy (replication places any replacement elsewhere).
    """
    if (node.get("spec") or {}).get("availability") != "drain":
        return []
    return [_with_desired(t, "shutdown", f"node {_node_id(node)} is drained")
            for t in _on(node, tasks)
            if _desired(t) == "running" and _state(t) not in TERMINAL_STATES]
