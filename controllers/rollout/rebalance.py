"""Rebalancing: move a replicated service's tasks onto nodes that joined or returned.

Swarm never moves a running task (moby/moby#24103): a node that joins an
uneven cluster gets only new tasks. Here a service with
``placement.rebalance: true`` (``workload.rebalances``), or with a one-shot
request (the annotation ``kubeless.io/rebalance-requested: <unix s>``
newer than ``status.rebalance.requested``), is evened out, one batch at a
time, when:

- no rollout is under way or paused (the rollout's own state, decided
  first in the same pass), and
- every slot holds exactly one task and every one of them runs (nothing in
  flight: a batch this pass made, a restart, a pair still starting).

A batch picks tasks on the fullest eligible node and asks the scheduler's
own spread (``controllers.scheduler.spread``, with its filter pipeline:
ready, active, constraints, resources, ``maxReplicasPerNode``, host ports)
where each replacement would go, given what the scheduler will see then: a
start-first replacement is placed while its old task still counts on the
full node, a stop-first one after its old task has gone. A move is made
only when that node holds 2 or more fewer of the service's tasks than the
one it leaves (counting the batch's earlier moves), so the spread ends with
max - min <= 1 over the eligible nodes, or as even as the scheduler's
preferences allow (it never sends a task back where it came from, so a
move never loops). At most ``update.parallelism`` moves (0: all) a batch,
in ``update.order``: stop-first stops the old task (replication refills the
slot and the scheduler places the new one); start-first creates the new
task in the same slot, annotated ``kubeless.io/replaces``, and the
rollout's start-first step stops the old one once the new one runs.

``status.rebalance`` {state balanced|moving|waiting, message, moved (tasks
moved since the spread was last even), requested (the last one-shot request
done), completedAt (when the spread last became even after moving or a
request)}. Tasks on nodes that are not eligible (paused, down, constraints
no longer met) are left where they are: draining is replication's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kubeless.api import rollout_annotations as ann
from kubeless.api import workload
from kubeless.api.tasks import REPLACES_ANNOTATION, Task, new_task_id

from controllers.ops import Op
from controllers.replication.facts import NewId, new_task, stop
from controllers.rollout.facts import UpdateConfig
from controllers.scheduler import spread
from controllers.scheduler.filters import DEFAULT_PIPELINE, Filter
from controllers.scheduler.nodeinfo import NodeInfo, build_nodeinfos
from controllers.scheduler.request import TaskRequest, Usage

Resource = dict[str, Any]
ROLLING = ("updating", "rollback_started", "paused", "rollback_paused")


@dataclass
class RebalancePlan:
    ops: list[Op] = field(default_factory=list)
    status: Resource | None = None  # status.rebalance to store (None: leave it as it is)
    moved: int = 0                  # tasks this pass moves


def pending_request(service: Resource, previous: Resource | None) -> float:
    """The one-shot request not yet done (its unix time), or 0."""
    asked = ann.rebalance_requested_at(service)
    done = previous.get("requested") if isinstance(previous, dict) else None
    return asked if asked > float(done or 0) else 0.0


def wanted(service: Resource, previous: Resource | None) -> bool:
    """Whether the service is to be kept even: on, or asked once (a replicated service)."""
    if workload.mode_of(service) != "replicated":
        return False
    return workload.rebalances(service) or pending_request(service, previous) > 0


def decide(service: Resource, tasks: list[Task], nodes: list[Resource],
           all_tasks: list[Task], previous: Resource | None, rollout_state: str | None,
           now: float, *, new_id: NewId = new_task_id) -> RebalancePlan:
    """``tasks``: the service's (this incarnation's); ``nodes`` every node with its
    heartbeat as status; ``all_tasks`` every task of the cluster (what the scheduler
    counts on each node); ``previous`` the stored status.rebalance; ``rollout_state``
    the rollout's updateStatus.state as decided in this pass."""
    prev = dict(previous) if isinstance(previous, dict) else {}
    if not wanted(service, prev):
        return RebalancePlan()
    if rollout_state in ROLLING:
        return _waiting(prev, "rollout in progress")
    spec = service.get("spec") or {}
    replicas = max(int(spec.get("replicas", 1)), 0)
    claimants = [t for t in tasks if t.wants_running]
    running = [t for t in claimants if t.is_up and t.node is not None]
    by_slot = Counter(t.slot for t in claimants)
    if len(running) != len(claimants) or len(by_slot) != replicas or \
            any(n != 1 for n in by_slot.values()):
        if prev.get("state") == "moving":
            return RebalancePlan(status=prev)  # our own batch, on its way
        return _waiting(prev, f"tasks not running ({len(running)} of {replicas} running)")

    cfg = UpdateConfig.of(spec.get("update"))
    moves = plan_moves(service, running, nodes, all_tasks, cfg, now)
    if not moves:
        return RebalancePlan(status=_balanced(service, prev, now))
    plan = RebalancePlan(moved=len(moves))
    generation = int((service.get("metadata") or {}).get("generation") or 0)
    for task, _ in moves:
        if cfg.order == "start-first":
            plan.ops.append(new_task(service, new_id(), now, slot=task.slot,
                                     annotations={REPLACES_ANNOTATION: task.id}))
        else:
            op = stop(task, "shutdown", f"rebalanced (generation {generation})", None)
            if op is not None:
                plan.ops.append(op)
    moved = int(prev.get("moved") or 0) if prev.get("state") == "moving" else 0
    routes = Counter((t.node, to) for t, to in moves)
    plan.status = {**prev, "state": "moving", "moved": moved + len(moves),
                   "message": "moving " + ", ".join(
                       f"{n} from {src} to {dst}" for (src, dst), n in sorted(routes.items()))}
    return plan


def plan_moves(service: Resource, running: list[Task], nodes: list[Resource],
               all_tasks: list[Task], cfg: UpdateConfig,
               now: float) -> list[tuple[Task, str]]:
    """(task, the node the scheduler will put its replacement on), for one batch."""
    try:  # what the scheduler will be asked to place: a task frozen from the service
        request = TaskRequest.of(new_task(service, "", now, slot=0).task)
    except ValueError:
        return []  # unreadable placement: the scheduler says why on the tasks
    infos = build_nodeinfos(nodes, all_tasks)
    enabled = DEFAULT_PIPELINE.enabled(request)
    static = [f for f in enabled if f.static]
    dynamic: list[Filter] = [f for f in enabled if not f.static]
    eligible = [i for i in infos.values() if all(f.check(request, i) for f in static)]
    where = {i.id for i in eligible}
    # The service's tasks per eligible node once the batch is done (the eventual spread).
    counts = {i.id: 0 for i in eligible}
    movable: dict[str, list[Task]] = {}
    for task in running:
        if task.node in where:
            counts[task.node] += 1
            movable.setdefault(str(task.node), []).append(task)
    for group in movable.values():
        group.sort(key=lambda t: (t.slot or 0, t.id))  # the highest slot goes first
    limit = cfg.parallelism or len(running)
    moves: list[tuple[Task, str]] = []
    while len(moves) < limit:
        source = max((n for n in counts if movable.get(n)), key=lambda n: (counts[n], n),
                     default=None)
        if source is None:
            break
        task = movable[source][-1]
        usage = Usage.lenient(task.stored)
        if cfg.order != "start-first":
            infos[source].remove(usage)  # stopped before its replacement is placed
        to = _placed(request, eligible, dynamic)
        if to is None or to == source or counts[source] - counts[to] < 2:
            break
        movable[source].pop()
        counts[source] -= 1
        counts[to] += 1
        moves.append((task, to))
    return moves


def _placed(request: TaskRequest, eligible: list[NodeInfo],
            dynamic: list[Filter]) -> str | None:
    """Where the scheduler's spread puts one more task of the service (counting it there)."""
    got = spread.take(spread.build(request, eligible), request, dynamic)
    return got[0].id if got is not None else None


def _waiting(prev: Resource, why: str) -> RebalancePlan:
    return RebalancePlan(status={**prev, "state": "waiting", "message": f"waiting: {why}"})


def _balanced(service: Resource, prev: Resource, now: float) -> Resource:
    """Even: a request is done, a batch (or a wait) is over; an even spread stays so."""
    asked = pending_request(service, prev)
    was = prev.get("state")
    if was == "balanced" and not asked:
        return prev
    out = {**prev, "state": "balanced", "message": "the spread is even"}
    if asked:
        out["requested"] = asked
    if asked or was == "moving":
        out["completedAt"] = now
    if was != "moving":
        out["moved"] = 0  # nothing moved since it was last even
    return out
