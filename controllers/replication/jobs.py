"""Jobs (replicated-job, global-job): the tasks of one run, and how far the run has got.

A job's work is split into *places*: completion indexes 1..replicas (a
replicated job's slots) or eligible nodes (a global job's), each done once
per run. A place is

- *complete* once one of its tasks of the run exited 0 (``complete``): it is
  never run again in that run, whatever the restart policy;
- *active* while a task of the run there has not ended;
- *waiting* when its task failed and the restart policy will replace it
  (now, or after the delay: ``restart.judge``, as for services);
- *dead* when its task failed and the policy never replaces it;
- *fresh* when it has no task yet.

``plan_run`` returns the operations of one pass over a run: fresh and
waiting places are started, lowest slot first, while fewer than
``max_concurrent`` tasks of the run have not ended (replicated jobs; a
global job runs every node at once); a global job's task on a node that
became unwanted is stopped, a gone node's tasks deleted; nothing new once
the run was closed (``closed``: a global job's run that completed gives no
task to a node that joins afterwards). ``progress`` counts the places:
the run is complete when every place is, failed when nothing is active and
the only places left are dead, running otherwise.

Which run is current, when a new one starts and what the service's
``status.job`` says are ``job_runs``'; trimming old runs' tasks is here
(``trim_runs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controllers.ops import Op, Resource
from controllers.replication import history
from controllers.replication.facts import Eligible, NewId, delete, earliest, new_task, preference, \
    stop
from controllers.replication.global_mode import node_id, standing
from controllers.replication.restart import RestartPolicy, judge
from kubeless.api import workload
from kubeless.api.tasks import Task

Place = int | str  # a completion index, or a node id


def run_of(task: Task) -> int | None:
    """The run a job's task belongs to (None: not a job's task)."""
    run = task.spec.get("jobRun")
    return run if isinstance(run, int) and not isinstance(run, bool) and run > 0 else None


@dataclass(frozen=True)
class Progress:
    total: int
    succeeded: int
    failed: int  # tasks of the run that failed (every attempt)
    active: int  # tasks of the run not ended (running or on their way; stopping ones too)
    running: int  # of those, running now
    state: str  # running, complete or failed

    @property
    def done(self) -> bool:
        return self.state != "running"


@dataclass(frozen=True)
class Places:
    """A run's tasks by place, and the places the run wants done."""

    wanted: list[Place]
    by_place: dict[Place, list[Task]]


def places(service: Resource, run_tasks: list[Task], nodes: list[Resource],
           eligible: Eligible, closed: bool) -> Places:
    by_place: dict[Place, list[Task]] = {}
    wanted: list[Place]
    if workload.is_global(service):
        for task in run_tasks:
            if task.node is not None:
                by_place.setdefault(task.node, []).append(task)
        ready = [] if closed else [node_id(n) for n in nodes
                                   if standing(n, eligible) == "wanted"]
        wanted = sorted(set(ready) | set(by_place))
    else:
        for task in run_tasks:
            if task.slot is not None:
                by_place.setdefault(task.slot, []).append(task)
        replicas = max(int((service.get("spec") or {}).get("replicas", 1)), 0)
        wanted = list(range(1, replicas + 1))
    return Places(wanted, by_place)


def _place_state(group: list[Task], policy: RestartPolicy, now: float) -> str:
    if any(t.state == "complete" for t in group):
        return "complete"
    if any(not t.is_done for t in group):
        return "active"
    current = [t for t in group if t.wants_running]
    if not current:
        return "fresh"
    verdict = judge(max(current, key=lambda t: t.status_time or 0.0), group, policy, now)
    return "waiting" if verdict.replace or verdict.requeue_after is not None else "dead"


def progress(service: Resource, run: Places, now: float) -> Progress:
    policy = RestartPolicy.of(service)
    states = [_place_state(run.by_place.get(p, []), policy, now) for p in run.wanted]
    tasks = [t for group in run.by_place.values() for t in group]
    succeeded = states.count("complete")
    active = sum(1 for t in tasks if not t.is_done)
    if succeeded == len(states):
        state = "complete"
    elif active == 0 and all(s in ("complete", "dead") for s in states):
        state = "failed"
    else:
        state = "running"
    return Progress(total=len(states), succeeded=succeeded,
                    failed=sum(1 for t in tasks if t.state in ("failed", "rejected")),
                    active=active,
                    running=sum(1 for t in tasks if t.state == "running" and t.wants_running),
                    state=state)


def plan_run(service: Resource, run: int, run_places: Places, nodes: list[Resource],
             now: float, new_id: NewId, eligible: Eligible) -> tuple[list[Op], float | None]:
    """One pass over the current run: (operations, when to look again)."""
    policy = RestartPolicy.of(service)
    node_ids = frozenset(node_id(n) for n in nodes)
    nodes_by_id = {node_id(n): n for n in nodes}
    is_global = workload.is_global(service)
    limit = int((service.get("spec") or {}).get("taskHistoryLimit", 5))
    ops: list[Op] = []
    by_place = run_places.by_place
    for group in by_place.values():
        _stop_extras(group, node_ids, ops)
    budget = (len(run_places.wanted) if is_global else workload.max_concurrent(service)) \
        - sum(1 for group in by_place.values() for t in group if not t.is_done)
    requeue: float | None = None
    for place in run_places.wanted:
        group = by_place.get(place, [])
        if is_global:
            where = standing(nodes_by_id.get(str(place)), eligible)
            if where == "gone":
                ops.extend(delete(t) for t in group)
                continue
            if where != "wanted":  # unwanted: its task stopped; down or paused: left be
                for task in group if where == "unwanted" else []:
                    if not task.is_done and task.wants_running:
                        _append(ops, stop(task, "shutdown", f"node {place} is no longer "
                                                            f"eligible", node_ids))
                continue
        if any(t.state == "complete" or not t.is_done for t in group):
            continue  # complete, or a task of the run still going
        wanting = [t for t in group if t.wants_running]
        annotations: dict[str, str] = {}
        if wanting:  # its task failed: the restart policy decides
            last = max(wanting, key=lambda t: t.status_time or 0.0)
            verdict = judge(last, group, policy, now)
            requeue = earliest(requeue, verdict.requeue_after)
            if not verdict.replace or budget <= 0:
                continue
            _append(ops, stop(last, "shutdown", f"restarted ({last.state})", node_ids))
            annotations = verdict.annotations
        elif budget <= 0:
            continue
        budget -= 1
        where_to: dict[str, Any] = {"node": str(place)} if is_global else {"slot": int(place)}
        ops.append(new_task(service, new_id(), now, job_run=run, annotations=annotations,
                            **where_to))
    for group in by_place.values():
        ops.extend(history.trim(group, limit))
    return ops, requeue


def trim_runs(tasks_by_run: dict[int, list[Task]], run: int, keep: int,
              node_ids: frozenset[str]) -> list[Op]:
    """Older runs' tasks: those still wanted running stopped (their run is over), ended
    ones deleted once their run is older than the last ``keep`` runs (the current
    one always kept)."""
    ops: list[Op] = []
    for number, group in sorted(tasks_by_run.items()):
        if number == run:
            continue
        for task in group:
            if not task.is_done and task.wants_running:
                _append(ops, stop(task, "shutdown", f"run {number} is over: run {run} replaces "
                                                    f"it", node_ids))
            elif task.is_done and number <= run - max(keep, 1):
                ops.append(delete(task))
    return ops


def _stop_extras(group: list[Task], node_ids: frozenset[str], ops: list[Op]) -> None:
    """One task of a place going at a time: the furthest along stays, the others stop."""
    going = [t for t in group if t.wants_running and not t.is_done]
    if len(going) > 1:
        keep = max(going, key=preference)
        for task in going:
            if task is not keep:
                _append(ops, stop(task, "shutdown", "the place has another task", node_ids))


def _append(ops: list[Op], op: Op | None) -> None:
    if op is not None:
        ops.append(op)
