"""Replicated services: keep ``replicas`` slots, each with one task replication wants running.

A slot is *held* while one of its tasks has desired state running; that task
is the slot's *current* task. A held slot is *occupied* while its current
task is not terminal; a held slot whose current task ended waits on the
restart policy (``restart.judge``), and keeps the slot held meanwhile, so a
service whose task completed under on-failure, or failed under none, stays
one replica short, as in Swarm. A slot with no task wanting to run (never
made, scaled down, drained, stopped by an update) is free, and is filled
once none of its tasks may still run (told to stop but not yet seen
stopped), so a slot never has two containers at once, as Swarm's
stop-first.

Each pass: extra claimants of one slot are stopped (the best one stays);
held slots beyond ``replicas`` are released (ended slots first, then the
tasks on the nodes running the most tasks of the service, unscheduled ones
first of all); free slots are filled, lowest numbers first, up to
``replicas``; ended current tasks are replaced under the restart policy;
history is trimmed. Survivors keep their slot numbers.

Placement is the scheduler's, new spec versions are the rollout
controller's: a task from an older generation still occupies its slot.

One exception to "one claimant per slot", for the rollout's start-first
order: a slot holding exactly two claimants, an older-version task that is
not terminal and a newer-version one (not terminal) whose annotation
``kubeless.io/replaces`` names it, is left alone
(``kubeless.api.tasks.start_first_pair``);
the rollout stops the old task once the new one runs. Should either of the
two end, the usual rule applies again (the alive one stays). Scaling such a
slot away stops both.
"""

from __future__ import annotations

from collections import Counter

from controllers.ops import Op, Resource
from controllers.replication import history
from controllers.replication.facts import (
    Decision,
    NewId,
    delete,
    earliest,
    new_task,
    preference,
    stop,
)
from controllers.replication.restart import RestartPolicy, carried, history_annotation, judge, \
    restart_times
from kubeless.api.tasks import Task, start_first_pair, state_index


_MAY_RUN = frozenset({"accepted", "preparing", "starting", "running"})


def current_tasks(by_slot: dict[int, list[Task]], node_ids: frozenset[str],
                  ops: list[Op]) -> dict[int, Task]:
    """Each held slot's current task; extra claimants get stop ops appended to ``ops``
    (except a start-first pair, see the module's docstring)."""
    current: dict[int, Task] = {}
    for slot, tasks in by_slot.items():
        claimants = [t for t in tasks if t.wants_running]
        if not claimants:
            continue
        if len(claimants) == 1:  # the usual case: nothing to choose, nothing to stop
            current[slot] = claimants[0]
            continue
        current[slot] = keep = max(claimants, key=preference)
        if start_first_pair(claimants) is not None:
            continue
        for task in claimants:
            if task is not keep:
                _append(ops, stop(task, "shutdown", f"slot {slot} has another task", node_ids))
    return current


def choose_victims(current: dict[int, Task], count: int) -> list[int]:
    """Which held slots to release on scale-down, as Swarm picks them.

    Ended slots go first (nothing runs there); then unscheduled tasks; then
    tasks on the node running the most tasks of the service (recounted after
    each pick, so the rest stays balanced), less advanced before running,
    highest slot number last of all.
    """
    victims = sorted((s for s, t in current.items() if t.is_done), reverse=True)[:count]
    alive = {s: t for s, t in current.items() if not t.is_done}
    load = Counter(t.node for t in alive.values() if t.node is not None)

    def badness(slot: int) -> tuple[bool, int, int, int]:
        node = alive[slot].node
        return (node is None, load[node] if node else 0, -state_index(alive[slot].state), slot)

    while len(victims) < count and alive:
        pick = max(alive, key=badness)
        node = alive.pop(pick).node
        if node is not None:
            load[node] -= 1
        victims.append(pick)
    return victims


def free_slots(held: set[int], count: int) -> list[int]:
    """The ``count`` lowest slot numbers nobody holds."""
    out: list[int] = []
    slot = 1
    while len(out) < count:
        if slot not in held:
            out.append(slot)
        slot += 1
    return out


def reconcile_replicated(service: Resource, tasks: list[Task], node_ids: frozenset[str],
                         now: float, new_id: NewId) -> Decision:
    """Decide one replicated service's slots (``tasks`` all belong to this service incarnation)."""
    spec = service.get("spec") or {}
    replicas = max(int(spec.get("replicas", 1)), 0)
    policy = RestartPolicy.of(service)
    ops: list[Op] = []
    by_slot: dict[int, list[Task]] = {}
    for task in tasks:
        slot = task.slot
        if slot is None:
            ops.extend(discard(task, "not a replicated task", node_ids))
        else:
            by_slot.setdefault(slot, []).append(task)
    current = current_tasks(by_slot, node_ids, ops)

    excess = len(current) - replicas
    for slot in choose_victims(current, excess) if excess > 0 else []:
        pair = start_first_pair([t for t in by_slot[slot] if t.wants_running])
        for task in pair or (current[slot],):  # the slot's task, or both of a start-first pair
            _append(ops, stop(task, "shutdown", "scale down", node_ids))
        current.pop(slot)
    # A slot whose last task is still stopping is filled once that task is seen
    # stopped (Swarm's stop-first): never two containers of one slot at once.
    stopping = {slot for slot, group in by_slot.items()
                if slot not in current and any(is_stopping(t) for t in group)}
    for slot in free_slots(set(current), -excess) if excess < 0 else []:
        if slot in stopping:
            continue
        times = carried(restart_times(by_slot.get(slot, []), policy, now), policy)
        ops.append(new_task(service, new_id(), now, slot=slot, annotations=history_annotation(times)))

    requeue: float | None = None
    for slot, task in sorted(current.items()):
        if not task.is_done:
            continue
        verdict = judge(task, by_slot[slot], policy, now)
        requeue = earliest(requeue, verdict.requeue_after)
        if verdict.replace:
            _append(ops, stop(task, "shutdown", f"restarted ({task.state})", node_ids))
            ops.append(new_task(service, new_id(), now, slot=slot, annotations=verdict.annotations))

    limit = int(spec.get("taskHistoryLimit", 5))
    for slot, group in sorted(by_slot.items()):
        ops.extend(history.trim(group, limit if slot in current or slot <= replicas else 0))
    return Decision(ops, requeue)


def is_stopping(task: Task) -> bool:
    """Told to stop, and may still run on its node (the agent has not reported it ended)."""
    return not task.wants_running and task.state in _MAY_RUN


def discard(task: Task, reason: str, node_ids: frozenset[str]) -> list[Op]:
    """A task that has no place in the service any more: stop it, delete it once it ended."""
    if task.is_done:
        return [delete(task)]
    op = stop(task, "shutdown", reason, node_ids)
    return [op] if op is not None else []


def _append(ops: list[Op], op: Op | None) -> None:
    if op is not None:
        ops.append(op)
