"""The replication controller's decision: one service's snapshot in, store operations out.

``reconcile_service`` is level-triggered: from any set of tasks it returns
the operations that move the service one step toward its spec (see
``slots`` for replicated services, ``global_mode`` for global ones,
``jobs``/``job_runs`` for jobs, ``restart`` for the restart policy,
``history`` for trimming), and nothing
once the service has converged. A deleted service (``None``) has every task
marked desired ``remove`` and deleted once terminal; so do tasks left by an
earlier service of the same name (another ``serviceUid``).

``service_status`` computes the status the caller writes when it changed.

Reading etcd (the tasks as ``kubeless.api.tasks.Task``, with their
effective status), writing the operations (with assignments, under the
leader fence) and requeueing after ``requeue_after`` are the asyncio half's.
Scheduling is the scheduler's, rolling updates the rollout controller's,
node liveness health's.
"""

from __future__ import annotations

from typing import Any

from controllers.ops import Op, Resource
from controllers.replication.facts import Decision, Eligible, NewId, delete, stop
from controllers.replication.global_mode import availability, is_ready, node_id, reconcile_global
from controllers.replication.job_runs import job_status, reconcile_job
from controllers.replication.slots import reconcile_replicated
from kubeless.api import workload
from kubeless.api.tasks import Task, new_task_id


def _always(node: Resource) -> bool:
    return True


def reconcile_service(service: Resource | None, tasks: list[Task], nodes: list[Resource],
                      now: float, *, new_id: NewId = new_task_id,
                      eligible: Eligible = _always,
                      node_ids: frozenset[str] | None = None,
                      job: Resource | None = None) -> Decision:
    """Operations that move one service's tasks toward its spec, and when to look again.

    ``tasks`` are the service's tasks (with their effective status); ``nodes`` is the complete node list (Node
    merged with heartbeat status); ``eligible`` says whether a node meets
    the service's placement constraints (global services only); ``node_ids``, when
    given, are the ids of ``nodes`` (a caller that keeps them saves recomputing);
    ``job``, a job's ``status.job`` as stored (its run bookkeeping, see ``job_runs``).
    """
    if node_ids is None:
        node_ids = frozenset(node_id(n) for n in nodes)
    if service is None:
        return Decision(remove_all(tasks, node_ids))
    mine, others = split_by_incarnation(tasks, service)
    ops = remove_all(others, node_ids)
    if workload.is_job(service):
        decision = reconcile_job(service, mine, nodes, now, new_id, eligible, job)
    elif workload.is_global(service):
        decision = reconcile_global(service, mine, nodes, now, new_id, eligible)
    else:
        decision = reconcile_replicated(service, mine, node_ids, now, new_id)
    return Decision(ops + decision.ops, decision.requeue_after, decision.job)


def belongs(task: Task, service: Resource) -> bool:
    """Whether a task was made for this service, not for a deleted one of the same name."""
    uid = (service.get("metadata") or {}).get("uid")
    return not uid or not task.service_uid or uid == task.service_uid


def split_by_incarnation(tasks: list[Task], service: Resource) -> tuple[list[Task], list[Task]]:
    """(tasks that ``belongs`` to the service, the others), in one pass."""
    uid = (service.get("metadata") or {}).get("uid")
    if not uid:
        return list(tasks), []
    mine: list[Task] = []
    others: list[Task] = []
    for task in tasks:
        task_uid = task.service_uid
        (mine if not task_uid or task_uid == uid else others).append(task)
    return mine, others


def remove_all(tasks: list[Task], node_ids: frozenset[str]) -> list[Op]:
    """Tasks of a deleted service: ended ones deleted, the others told to go (desired remove)."""
    ops: list[Op] = []
    for task in sorted(tasks, key=lambda t: t.id):
        op = delete(task) if task.is_done else stop(task, "remove", "service deleted", node_ids)
        if op is not None:
            ops.append(op)
    return ops


def service_status(service: Resource, tasks: list[Task], nodes: list[Resource], *,
                   eligible: Eligible = _always, job: Resource | None = None,
                   now: float = 0.0) -> dict[str, Any]:
    """{replicas (desired), runningReplicas, observedGeneration} for the service's status,
    and a job's ``job`` (from ``job``, the bookkeeping its decision returned).

    Desired is ``spec.replicas`` for a replicated service; for a global one,
    the nodes that should run a task: ready, not drained, eligible, and
    active or (paused) still running one; for a job, the completions its
    current run wants (replicas, or the run's nodes).
    """
    spec = service.get("spec") or {}
    mine = split_by_incarnation(tasks, service)[0]
    running = sum(1 for t in mine if t.wants_running and t.state == "running")
    generation = int((service.get("metadata") or {}).get("generation") or 0)
    if workload.is_job(service):
        state = job_status(service, mine, nodes, job or {}, eligible, now)
        return {"replicas": int(state.get("total") or 0), "runningReplicas": running,
                "observedGeneration": generation, "job": state}
    if workload.is_global(service):
        holding = {t.node for t in mine if t.wants_running and not t.is_done and t.slot is None}
        desired = sum(1 for n in nodes
                      if is_ready(n) and availability(n) != "drain" and eligible(n)
                      and (availability(n) == "active" or node_id(n) in holding))
    else:
        desired = max(int(spec.get("replicas", 1)), 0)
    return {"replicas": desired, "runningReplicas": running, "observedGeneration": generation}
