"""Global services: one task per eligible node, its node fixed when the task is made.

A node is, for a global service:
- *wanted*: ready, availability active, and ``eligible(node)`` (the caller
  passes ``eligibility(service)``): it gets a task if it has none
  wanting to run, and an ended one is replaced under the restart policy;
- *paused* (availability pause): keeps the task it has, gets none new;
- *down* (not ready): left alone: health orphans its task, nothing is made
  elsewhere, and the node gets a task again when it returns;
- *unwanted* (drain, or constraints no longer met): its task is stopped;
- *gone* (no Node resource): its tasks are deleted, since no agent will act
  on them (the caller must pass the complete, synced node list).
Tasks carrying a slot (not global tasks) are stopped and deleted once ended.
History is trimmed per node. ``eligibility`` reads the service's placement
constraints with kubeless.api.constraints, the grammar the scheduler uses.
"""

from __future__ import annotations

from kubeless.api.constraints import InvalidConstraint, matches_all, parse_constraints

from controllers.ops import Op, Resource
from controllers.replication import history
from controllers.replication.facts import (
    Decision,
    Eligible,
    NewId,
    delete,
    earliest,
    new_task,
    stop,
)
from controllers.replication.restart import RestartPolicy, carried, history_annotation, judge, \
    restart_times
from controllers.replication.slots import current_tasks, discard
from kubeless.api.tasks import Task


def eligibility(service: Resource) -> Eligible:
    """eligible(node) for a global service: its placement constraints hold on the node.
    Constraints that do not parse (validation refuses them) make no node eligible."""
    placement = (service.get("spec") or {}).get("placement") or {}
    try:
        constraints = parse_constraints(placement.get("constraints") or ())
    except (InvalidConstraint, TypeError):
        return lambda node: False
    return lambda node: matches_all(constraints, node)


def node_id(node: Resource) -> str:
    return str((node.get("metadata") or {}).get("name", ""))


def is_ready(node: Resource) -> bool:
    return (node.get("status") or {}).get("state") == "ready"


def availability(node: Resource) -> str:
    return str((node.get("spec") or {}).get("availability") or "active")


def standing(node: Resource | None, eligible: Eligible) -> str:
    """gone, down, unwanted, paused or wanted (see the module docstring)."""
    if node is None:
        return "gone"
    if not is_ready(node):
        return "down"
    if availability(node) == "drain" or not eligible(node):
        return "unwanted"
    return "paused" if availability(node) == "pause" else "wanted"


def reconcile_global(service: Resource, tasks: list[Task], nodes: list[Resource], now: float,
                     new_id: NewId, eligible: Eligible) -> Decision:
    """Decide one global service's per-node tasks (``tasks`` all belong to this incarnation)."""
    nodes_by_id = {node_id(n): n for n in nodes}
    node_ids = frozenset(nodes_by_id)
    policy = RestartPolicy.of(service)
    limit = int((service.get("spec") or {}).get("taskHistoryLimit", 5))
    ops: list[Op] = []
    by_node: dict[str, list[Task]] = {}
    for task in tasks:
        node = task.node
        if task.slot is not None or node is None:
            ops.extend(discard(task, "not a global task", node_ids))
        else:
            by_node.setdefault(node, []).append(task)

    requeue: float | None = None
    for name in sorted(node_ids | set(by_node)):
        group = by_node.get(name, [])
        where = standing(nodes_by_id.get(name), eligible)
        if where == "gone":
            ops.extend(delete(t) for t in group)
            continue
        # Keyed by a dummy slot 0: one claimant per node, like one per slot.
        current = current_tasks({0: group}, node_ids, ops).get(0) if group else None
        if where == "unwanted" and current is not None:
            op = stop(current, "shutdown", f"node {name} is no longer eligible", node_ids)
            ops.extend([op] if op is not None else [])
        elif where == "wanted" and current is None:
            times = carried(restart_times(group, policy, now), policy)
            ops.append(new_task(service, new_id(), now, node=name,
                                annotations=history_annotation(times)))
        elif where == "wanted" and current is not None and current.is_done:
            verdict = judge(current, group, policy, now)
            requeue = earliest(requeue, verdict.requeue_after)
            if verdict.replace:
                op = stop(current, "shutdown", f"restarted ({current.state})", node_ids)
                ops.extend([op] if op is not None else [])
                ops.append(new_task(service, new_id(), now, node=name,
                                    annotations=verdict.annotations))
        ops.extend(history.trim(group, limit))
    return Decision(ops, requeue)
