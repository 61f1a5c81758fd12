"""The rollout decision: one service's snapshot in, task operations and its updateStatus out.

Replication owns how many slots exist and fills a free slot with a task of
the current spec; the rollout owns which version runs in a slot. Each pass
(level-triggered, nothing stored but ``status.updateStatus``):

1. bookkeeping: a new target (``facts.fingerprint``: content and
   forceUpdate, so a scale or a config change is no new target) starts a
   rollout (``updating``, or ``rollback_started`` when the generation is
   marked a rollback); the first target seen of a new service is only
   recorded;
2. start-first pairs whose new task runs get their old task stopped;
3. pause and resume: the user's annotations, or a paused-on-failure rollout
   that the user resumed;
4. failures (``facts.failed_within``) over slots updated above
   ``maxFailureRatio`` apply ``failureAction``: pause, continue, or rollback
   (a rollback that fails pauses: it never rolls back a rollback);
5. new slots are started while fewer than ``parallelism`` are taken. A
   slot is taken while it is in flight (a current task neither running nor
   ended, a start-first pair, a free slot replication has yet to fill) and,
   with a ``delay``, for ``delay`` after its new task ran or ended: as in
   Swarm's updater, whose ``parallelism`` workers each wait the delay after
   the slot they updated before taking the next, so the delay is waited
   between batches whatever the parallelism. Stop-first stops the old task
   (replication refills the slot); start-first creates the new task in the
   same slot, annotated ``kubeless.io/replaces: <old id>``;
6. nothing old and nothing in flight, ``monitor`` after the last new task
   ran: completed (or rollback_completed).

Which slots are done is always derived from the tasks, so a new leader
resumes a rollout where the old one was. Writing the ops, the status and
(for an automatic rollback) the rolled-back Service is the controller's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controllers.ops import Op
from controllers.replication.facts import NewId, earliest, new_task, stop
from controllers.rollout.facts import (Slot, UpdateConfig, current_test, failed_within,
                                       fingerprint, in_flight, pair_candidates, slots_of)
from kubeless.api import rollout_annotations as ann
from kubeless.api.tasks import REPLACES_ANNOTATION, Task, new_task_id

Resource = dict[str, Any]
ACTIVE = ("updating", "rollback_started")
PAUSED = ("paused", "rollback_paused")
ENDED = ("completed", "rollback_completed")


@dataclass
class RolloutPlan:
    """What one pass decided."""

    ops: list[Op] = field(default_factory=list)
    update_status: Resource = field(default_factory=dict)
    rollback: str | None = None    # roll the service back, for this reason
    requeue_after: float | None = None
    events: list[str] = field(default_factory=list)  # started, completed, paused, rolled_back
    replaced: int = 0              # old tasks told to stop


def decide(service: Resource, tasks: list[Task], previous: Resource | None, desired: int,
           now: float, *, new_id: NewId = new_task_id) -> RolloutPlan:
    """``tasks`` are the service's (with their effective status); ``previous`` is the stored
    updateStatus; ``desired`` the number of slots (replicas, or eligible nodes)."""
    meta, spec = service.get("metadata") or {}, service.get("spec") or {}
    generation = int(meta.get("generation") or 0)
    prev = dict(previous or {})
    force = int(spec.get("forceUpdate") or 0)
    if not prev:
        force_base = 0
    elif int(prev.get("forceUpdate") or 0) != force:
        force_base = generation
    else:
        force_base = int(prev.get("forceBase") or 0)
    status = {**prev, "generation": generation, "forceUpdate": force, "forceBase": force_base}
    plan = RolloutPlan(update_status=status)
    target = fingerprint(spec)
    if prev.get("specHash") == target and prev.get("state") not in ACTIVE + PAUSED:
        # No new target and no rollout under way: only a start-first pair that a
        # finished rollout left may need its old task stopped; look only where one may be.
        _finish_pairs(plan, slots_of(pair_candidates(tasks), current_test(spec, force_base)))
        return plan

    slots = slots_of(tasks, current_test(spec, force_base))
    old = [s for s in slots if s.old and not s.new]
    if prev.get("specHash") != target:
        status["specHash"] = target
        if old or prev.get("specHash"):  # a first sight of a new service has nothing to do
            _start(plan, service, now)
    state = status.get("state")
    if state not in ACTIVE + PAUSED:
        _finish_pairs(plan, slots)
        return plan

    rollback = bool(status.get("rollback"))
    cfg = UpdateConfig.of(spec.get("rollback" if rollback else "update"))
    _finish_pairs(plan, slots)
    _pause_or_resume(plan, service, now)
    if status["state"] in PAUSED:
        return plan

    failed, updated = _failures(slots, cfg.monitor, float(status.get("failuresSince") or 0))
    status.update(updated=updated, failed=len(failed), total=desired,
                  ready=sum(1 for s in slots if any(t.is_up for t in s.new)))
    if failed and len(failed) / max(updated, 1) > cfg.max_failure_ratio:
        if _on_failure(plan, service, cfg, failed[0], now):
            return plan

    fresh = [s for s in old if not _attempted(s, float(status.get("failuresSince") or 0))]
    busy = _in_flight(slots, desired)
    resting = _resting(slots, cfg.delay, float(status.get("startedAt") or 0), now)
    room = len(fresh) if cfg.parallelism == 0 else cfg.parallelism - busy - len(resting)
    for slot in sorted(fresh, key=_urgency)[:max(room, 0)]:
        _replace(plan, service, slot, cfg, now, new_id)
    if len(fresh) > max(room, 0) and resting:
        plan.requeue_after = min(resting) - now
    if not fresh and busy == 0:
        _complete(plan, slots, cfg.monitor, now)
    return plan


# -- the steps ------------------------------------------------------------------

def _start(plan: RolloutPlan, service: Resource, now: float) -> None:
    reason = ann.rollback_reason(service)
    status = plan.update_status
    status.update(state="rollback_started" if reason else "updating", startedAt=now,
                  completedAt=None, pausedAt=None, pausedBy=None, failuresSince=now,
                  rollback=reason is not None, reason=reason,
                  message=reason if reason else "update in progress")
    plan.events.append("rolled_back" if reason else "started")


def _finish_pairs(plan: RolloutPlan, slots: list[Slot]) -> None:
    """Start-first: the old task of a pair goes once its replacement runs."""
    for slot in slots:
        pair = slot.pair()
        if pair is not None and pair[0].is_up:
            op = stop(pair[1], "shutdown", f"replaced by {pair[0].id} (update)", None)
            if op is not None:
                plan.ops.append(op)
                plan.replaced += 1


def _pause_or_resume(plan: RolloutPlan, service: Resource, now: float) -> None:
    status = plan.update_status
    rollback = bool(status.get("rollback"))
    if status["state"] in ACTIVE and ann.is_paused(service):
        _pause(plan, "paused by the user", "user", now)
    elif status["state"] in PAUSED:
        by_user_over = status.get("pausedBy") == "user" and not ann.is_paused(service)
        resumed = status.get("pausedBy") != "user" and not ann.is_paused(service) and \
            ann.resumed_at(service) > float(status.get("pausedAt") or 0)
        if by_user_over or resumed:
            status.update(state="rollback_started" if rollback else "updating", pausedAt=None,
                          pausedBy=None, message="resumed")
            if resumed:
                status["failuresSince"] = now


def _pause(plan: RolloutPlan, message: str, by: str, now: float) -> None:
    status = plan.update_status
    status.update(state="rollback_paused" if status.get("rollback") else "paused",
                  pausedAt=now, pausedBy=by, message=message)
    plan.events.append("paused")


def _failures(slots: list[Slot], monitor: float, since: float) -> tuple[list[str], int]:
    """(tasks whose failure counts, one per slot; slots updated so far)."""
    failed: list[str] = []
    updated = 0
    for slot in slots:
        if slot.current:
            updated += 1
        bad = [t for t in slot.current if failed_within(t, monitor, since)]
        if bad:
            failed.append(bad[0].id)
    return failed, updated


def _on_failure(plan: RolloutPlan, service: Resource, cfg: UpdateConfig, task: str,
                now: float) -> bool:
    """Apply failureAction; True when the pass ends here."""
    status = plan.update_status
    what = "rollback" if status.get("rollback") else "update"
    action = cfg.failure_action
    if action == "rollback" and not status.get("rollback"):
        if ann.previous_spec(service) is None:
            _pause(plan, f"update paused due to failure or early termination of task {task} "
                         "(no previous spec to roll back to)", "failure", now)
            return True
        plan.rollback = f"update rolled back due to failure or early termination of task {task}"
        status.update(state="rollback_started", message=plan.rollback)
        return True
    if action == "continue":
        return False
    _pause(plan, f"{what} paused due to failure or early termination of task {task}",
           "failure", now)
    return True


def _attempted(slot: Slot, since: float) -> bool:
    """A slot whose new task already failed in this rollout is not tried again (continue)."""
    return any(t.state in ("failed", "rejected", "complete")
               and (t.status_time or 0) >= since for t in slot.current)


def _in_flight(slots: list[Slot], desired: int) -> int:
    held = sum(1 for s in slots if s.held)
    busy = max(desired - held, 0)  # free slots replication has yet to fill
    return busy + sum(1 for s in slots if any(in_flight(t) for t in s.new))


def _last_ran(slots: list[Slot]) -> float | None:
    times = [t.status_time for s in slots for t in s.new if t.is_up]
    return max((t for t in times if t is not None), default=None)


def _resting(slots: list[Slot], delay: float, since: float, now: float) -> list[float]:
    """When each slot whose updated task ran (or ended) less than ``delay`` ago, since the
    rollout started at ``since``, gives its place back (Swarm's worker waits the delay
    after each slot it updated, then takes the next)."""
    if delay <= 0:
        return []
    until: list[float] = []
    for slot in slots:
        if any(in_flight(t) for t in slot.new):
            continue  # in flight: counted as such
        times = [t.status_time for t in slot.current if t.is_up or t.is_done]
        last = max((t for t in times if t is not None and t >= since), default=None)
        if last is not None and last + delay > now:
            until.append(last + delay)
    return until


def _urgency(slot: Slot) -> tuple[int, bool, str]:
    """Old tasks that do not run go first (nothing is lost), then by slot."""
    running = any(t.is_up for t in slot.old)
    return (1 if running else 0, isinstance(slot.key, str), str(slot.key).zfill(12))


def _replace(plan: RolloutPlan, service: Resource, slot: Slot, cfg: UpdateConfig, now: float,
             new_id: NewId) -> None:
    generation = int((service.get("metadata") or {}).get("generation") or 0)
    old = max(slot.old, key=lambda t: (t.is_up, not t.is_done))
    if cfg.order == "start-first" and len(slot.old) == 1 and old.is_up:
        where: dict[str, Any] = {"slot": slot.key} if isinstance(slot.key, int) \
            else {"node": slot.key}
        plan.ops.append(new_task(service, new_id(), now, **where,
                                 annotations={REPLACES_ANNOTATION: old.id}))
        return
    for task in slot.old:
        op = stop(task, "shutdown", f"updated to generation {generation}", None)
        if op is not None:
            plan.ops.append(op)
            plan.replaced += 1


def _complete(plan: RolloutPlan, slots: list[Slot], monitor: float, now: float) -> None:
    status = plan.update_status
    last = _last_ran(slots)
    if last is not None and now < last + monitor:
        plan.requeue_after = earliest(plan.requeue_after, last + monitor - now)
        return
    rollback = bool(status.get("rollback"))
    failed = int(status.get("failed") or 0)
    status.update(state="rollback_completed" if rollback else "completed", completedAt=now,
                  message=(f"rollback completed ({status.get('reason')})" if rollback
                           else "update completed")
                  + (f", {failed} tasks failed" if failed else ""))
    plan.events.append("completed")
