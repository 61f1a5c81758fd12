"""How far a service is from what was asked of it, as ``docker service create`` shows it.

Pure: a Service (with its status) and its tasks (``kubeless.api.tasks.Task``, with
their effective status) in, a ``Progress`` out: one line per slot (replicated), node
(global) or a job's counts, an overall line, and whether the wait is over: ``done``
(converged) or ``failure`` (the reason it never will be without someone acting).

What "converged" means, for the generation the CLI wrote (``Target``):
- the controllers saw it: replication's ``status.observedGeneration`` and, for a
  service that rolls out, the rollout's ``status.updateStatus.generation``;
- no rollout under way; a paused one is a failure (its message says why), and so is
  an update the rollout controller rolled back (its reason);
- every slot (or eligible node) has exactly one task wanted running and it runs: no
  old task left of a start-first pair, nothing pending;
- a job: the run after the one seen before the write ended ``complete`` (``failed``
  is a failure); a job with a schedule has nothing to wait for.
A service that validation refuses is a failure at once.

The CLI renders it (``kubeless_cli.progress``); the dashboard shows the same lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubeless.api import workload
from kubeless.api.tasks import Task

Resource = dict[str, Any]
ROLLING = ("updating", "rollback_started")
PAUSED = ("paused", "rollback_paused")


@dataclass(frozen=True)
class Target:
    """What the wait is for: the generation written; for a job, the run before it."""

    generation: int
    rollback: bool = False  # the write was a rollback: a rolled-back state is success
    run_before: int | None = None  # a job's status.job.run before the write (None: create)


@dataclass(frozen=True)
class Line:
    label: str  # "1/3", "node-2"
    state: str  # the current task's state ("pending" when none yet)
    note: str = ""  # the task's error, or why it waits


@dataclass(frozen=True)
class Progress:
    overall: str
    lines: tuple[Line, ...] = ()
    done: bool = False
    failure: str | None = None
    notes: tuple[str, ...] = field(default=())  # lines after the slots: "verify: ..."


def progress(service: Resource, tasks: Sequence[Task], target: Target) -> Progress:
    status = service.get("status") or {}
    invalid = _invalid(status)
    if invalid:
        return Progress("service is invalid", failure=f"invalid: {invalid}")
    if workload.is_job(service):
        return _job(service, status, tasks, target)
    seen = int(status.get("observedGeneration") or 0) >= target.generation
    update = status.get("updateStatus") or {}
    rollout_seen = int(update.get("generation") or 0) >= target.generation
    state = str(update.get("state") or "")
    lines, running, desired = _slots(service, status, tasks)
    overall = f"overall progress: {running} out of {desired} tasks"
    if seen and rollout_seen:
        if state in PAUSED:
            return Progress(overall, lines, failure=f"update paused: "
                                                    f"{update.get('message') or state}")
        if update.get("rollback") and not target.rollback:
            reason = update.get("reason") or update.get("message") or "the update failed"
            return Progress(overall, lines, failure=f"update rolled back: {reason}")
    waiting = not (seen and rollout_seen)
    rolling = state in ROLLING
    converged = not waiting and not rolling and running == desired and all(
        line.state == "running" and not line.note for line in lines) and _no_extra(service, tasks)
    notes: tuple[str, ...] = ()
    if converged:
        notes = ("verify: Service converged",)
    elif rolling:
        notes = (f"update: {update.get('message') or 'in progress'}",)
    elif waiting:
        notes = ("waiting for the controllers",)
    return Progress(overall, lines, done=converged, notes=notes)


def _invalid(status: Resource) -> str | None:
    for condition in status.get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Valid" \
                and condition.get("status") == "False":
            return str(condition.get("message") or "the service is invalid")
    return None


def _slots(service: Resource, status: Resource,
           tasks: Sequence[Task]) -> tuple[tuple[Line, ...], int, int]:
    """(a line per slot or node, how many run, how many should)."""
    # Tasks meant to run: alive, or failed and not yet replaced (its error is the news).
    wanted = [t for t in tasks
              if t.wants_running and (not t.is_done or t.state in ("failed", "rejected"))]
    if workload.is_global(service):
        by_node: dict[str, list[Task]] = {}
        for task in wanted:
            by_node.setdefault(task.node or "?", []).append(task)
        desired = max(int(status.get("replicas") or 0), len(by_node))
        lines = tuple(_line(node, group) for node, group in sorted(by_node.items()))
    else:
        desired = max(int((service.get("spec") or {}).get("replicas", 1)), 0)
        by_slot: dict[int, list[Task]] = {}
        for task in wanted:
            if task.slot is not None:
                by_slot.setdefault(task.slot, []).append(task)
        lines = tuple(_line(f"{slot}/{desired}", by_slot.get(slot, []))
                      for slot in range(1, desired + 1))
    running = sum(1 for line in lines if line.state == "running")
    return lines, min(running, desired), desired


def _line(label: str, group: list[Task]) -> Line:
    """The slot's newest task wanted running (its error when it failed)."""
    if not group:
        return Line(label, "pending")
    task = max(group, key=lambda t: (t.spec_version, t.created_time or 0.0, t.id))
    if task.state == "running":
        return Line(label, task.state)
    error = str(task.status.get("error") or "")
    if task.state in ("pending", "failed", "rejected"):  # why it waits, or why it ended
        return Line(label, task.state, error or str(task.status.get("message") or ""))
    return Line(label, task.state, error)


def _no_extra(service: Resource, tasks: Sequence[Task]) -> bool:
    """No slot (or node) has a second task still meant to run (a start-first pair)."""
    seen: set[Any] = set()
    for task in tasks:
        if not task.wants_running or task.is_done:
            continue
        place = task.node if workload.is_global(service) else task.slot
        if place in seen:
            return False
        seen.add(place)
    return True


def _job(service: Resource, status: Resource, tasks: Sequence[Task], target: Target) -> Progress:
    job = status.get("job") or {}
    if (service.get("spec") or {}).get("schedule") and target.run_before is None:
        when = job.get("nextRunAt")
        return Progress("scheduled job: runs start at each tick", done=True,
                        notes=(f"next run: {when}",) if when else ())
    run = int(job.get("run") or 0)
    expected = (target.run_before or 0) + 1
    total, succeeded = int(job.get("total") or 0), int(job.get("succeeded") or 0)
    running = int(job.get("running") or 0)
    overall = f"job progress: {succeeded} out of {total} complete" if run >= expected \
        else "job progress: waiting for the run to start"
    notes = (f"active tasks: {running} running",) if run >= expected else ()
    if run < expected:
        return Progress(overall, notes=notes)
    state = job.get("state")
    if state == "failed":
        return Progress(overall, failure=f"job run {run} failed: "
                                         f"{job.get('failed', 0)} task(s) failed", notes=notes)
    return Progress(overall, done=state == "complete", notes=notes)
