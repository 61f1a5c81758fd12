"""Jobs' runs: which run is current, when a new one starts, and the service's ``status.job``.

A job works in numbered runs (Swarm's JobIteration); every task carries its
run (``spec.jobRun``). A new run starts

- at creation, when the job has no schedule (trigger ``created``);
- when ``forceUpdate`` changes (``force``: ``service update --force``), and
  when the generation changes (``update``): a spec change is a new run, the
  old run's tasks still going are stopped. A scheduled job whose last run is
  over waits for its next tick instead (editing a schedule does not fire it);
- at each tick of ``spec.schedule`` (``schedule``) when the last run is over;
  a tick that finds the last run still going is skipped and counted
  (``skipped``, ``lastSkipped``); ticks missed while no leader ran start one
  run (the latest) and count the others as skipped.

The bookkeeping (run, trigger, times, generation and forceUpdate the run
was made for, skipped ticks, the previous runs' summaries) is kept in
``status.job``, and what the tasks say wins over it: the current run is the
highest of the status' and the tasks' run numbers, and its generation the
tasks' spec version, so a leader whose status write was lost (or a new
leader) never starts a run twice. Counts and state come from the tasks
(``jobs.progress``) when the status is written (``job_status``).
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from controllers.ops import Op, Resource
from controllers.replication.facts import Decision, Eligible, NewId, earliest
from controllers.replication.global_mode import node_id
from controllers.replication.jobs import Places, plan_run, places, progress, run_of, trim_runs
from controllers.replication.slots import discard
from kubeless.api import cron, workload
from kubeless.api.tasks import Task

ENDED = ("complete", "failed")
MAX_COUNTED_TICKS = 100_000  # missed ticks counted after a long outage (every minute: 69 days)


def reconcile_job(service: Resource, tasks: list[Task], nodes: list[Resource], now: float,
                  new_id: NewId, eligible: Eligible, prev: Resource | None) -> Decision:
    """The operations of one pass over a job, and its run bookkeeping (``Decision.job``)."""
    node_ids = frozenset(node_id(n) for n in nodes)
    is_global = workload.is_global(service)
    ops: list[Op] = []
    by_run: dict[int, list[Task]] = {}
    for task in tasks:
        run = run_of(task)
        if run is None or (task.slot is not None) == is_global:
            ops.extend(discard(task, "not a task of this job's mode", node_ids))
        else:
            by_run.setdefault(run, []).append(task)
    book = _resumed(dict(prev or {}), by_run, now)
    run = int(book.get("run") or 0)
    # The status lists the current run first among the runs: the history is the others.
    book["runs"] = [r for r in book.get("runs") or [] if r.get("run") != run]
    current = _places(service, book, by_run.get(run, []), nodes, eligible)
    done = run == 0 or progress(service, current, now).done
    trigger = _trigger(service, book, by_run.get(run, []), done)
    requeue: float | None = None
    schedule = workload.schedule_of(service)
    if schedule is not None:
        trigger, requeue = _ticks(schedule, book, trigger, done, now,
                                  _generation(service) != book.get("generation"))
    else:
        for field in ("nextRunAt", "scheduledAt"):
            book.pop(field, None)
    if trigger is not None:
        book = _new_run(service, book, trigger, current, now)
        run = book["run"]
        current = _places(service, book, [], nodes, eligible)
    book["generation"] = _generation(service)  # seen: a later change is a new change
    ops.extend(trim_runs(by_run, run, workload.run_history_limit(service), node_ids))
    if run > 0:
        plan, retry = plan_run(service, run, current, nodes, now, new_id, eligible)
        ops.extend(plan)
        requeue = earliest(requeue, retry)
    return Decision(ops, requeue, job=book)


def _generation(service: Resource) -> int:
    return int((service.get("metadata") or {}).get("generation") or 0)


def _force(service: Resource) -> int:
    return int((service.get("spec") or {}).get("forceUpdate") or 0)


def _resumed(book: Resource, by_run: dict[int, list[Task]], now: float) -> Resource:
    """The bookkeeping, caught up with the tasks: a run the status never recorded (its
    write lost) is taken as current, made for its tasks' generation."""
    run = max([int(book.get("run") or 0), *by_run])
    if run != int(book.get("run") or 0):
        tasks = by_run[run]
        started = min((t.created_time or t.status_time or now) for t in tasks)
        book = {**{k: v for k, v in book.items() if k in ("skipped", "lastSkipped", "runs",
                                                          "forceUpdate", "nextRunAt")},
                "run": run, "startedAt": started,
                "generation": max(t.spec_version for t in tasks)}
    return book


def _places(service: Resource, book: Resource, run_tasks: list[Task], nodes: list[Resource],
            eligible: Eligible) -> Places:
    closed = book.get("state") in ENDED  # a global run that ended takes no new node
    return places(service, run_tasks, nodes, eligible, closed)


def _trigger(service: Resource, book: Resource, run_tasks: list[Task], done: bool) -> str | None:
    """Why a new run starts now (not counting the schedule's ticks), or None."""
    run = int(book.get("run") or 0)
    generation = _generation(service)
    made_for = max((t.spec_version for t in run_tasks), default=book.get("generation", generation))
    scheduled = workload.schedule_of(service) is not None
    if _force(service) != book.setdefault("forceUpdate", _force(service)):
        return "force"
    if run == 0:
        return None if scheduled else "created"
    if made_for != generation and not (scheduled and done):
        return "update"
    return None


def _ticks(schedule: str, book: Resource, trigger: str | None, done: bool, now: float,
           changed: bool) -> tuple[str | None, float]:
    """The schedule's part: start a run on a due tick (or skip it), and when the next one is."""
    due_at = book.get("nextRunAt")
    if changed or not isinstance(due_at, (int, float)):
        due_at = cron.next_tick(schedule, now)  # a new or edited schedule counts from now
    due: list[float] = []
    if due_at <= now:
        due = [float(due_at), *islice(cron.ticks_between(schedule, due_at, now),
                                      MAX_COUNTED_TICKS)]
    if due:
        starts = trigger is not None or done
        missed = due[:-1] if starts else due
        if starts:
            trigger = trigger or "schedule"
            book["scheduledAt"] = due[-1]
        if missed:
            book["skipped"] = int(book.get("skipped") or 0) + len(missed)
            book["lastSkipped"] = missed[-1]
        due_at = cron.next_tick(schedule, max(now, due[-1]))
    book["nextRunAt"] = float(due_at)
    return trigger, max(float(due_at) - now, 0.0)


def _new_run(service: Resource, book: Resource, trigger: str, current: Places,
             now: float) -> Resource:
    """The bookkeeping of run N+1; run N's summary joins ``runs``."""
    runs = list(book.get("runs") or [])
    if int(book.get("run") or 0) > 0:
        runs = [_summary(service, book, current, now)] + runs
    fresh: Resource = {"run": int(book.get("run") or 0) + 1, "trigger": trigger,
                       "startedAt": now, "forceUpdate": _force(service),
                       "runs": runs[:max(workload.run_history_limit(service) - 1, 0)]}
    for field in ("skipped", "lastSkipped", "nextRunAt"):
        if field in book:
            fresh[field] = book[field]
    if trigger == "schedule":
        fresh["scheduledAt"] = book["scheduledAt"]
    return fresh


def _summary(service: Resource, book: Resource, current: Places, now: float) -> Resource:
    """One run as ``status.job.runs`` lists it; a run stopped before it ended: ``stopped``."""
    seen = progress(service, current, now)
    out: Resource = {"run": book.get("run"), "state": seen.state if seen.done else "stopped",
                     "succeeded": seen.succeeded,
                     "failed": max(int(book.get("failed") or 0), seen.failed),
                     "startedAt": book.get("startedAt")}
    out["completedAt"] = book.get("completedAt") or now
    return out


def job_status(service: Resource, tasks: list[Task], nodes: list[Resource], book: Resource,
               eligible: Eligible, now: float) -> dict[str, Any]:
    """``status.job``: the bookkeeping with the current run's counts from its tasks."""
    run = int(book.get("run") or 0)
    out = dict(book)
    if run == 0:
        return out
    run_tasks = [t for t in tasks if run_of(t) == run]
    seen = progress(service, _places(service, book, run_tasks, nodes, eligible), now)
    out.update(state=seen.state, total=seen.total, succeeded=seen.succeeded,
               failed=max(int(book.get("failed") or 0), seen.failed), running=seen.running)
    if seen.done:
        out["completedAt"] = book.get("completedAt") or now
    else:
        out.pop("completedAt", None)
    this = {k: out.get(k) for k in ("run", "state", "succeeded", "failed", "startedAt",
                                    "completedAt") if out.get(k) is not None}
    out["runs"] = ([this] + list(book.get("runs") or []))[:workload.run_history_limit(service)]
    return out


def job_events(before: Resource | None, after: Resource | None) -> list[tuple[str, str, str]]:
    """(type, reason, message) for what changed between two ``status.job``: a run
    started, ended (complete or failed), or a tick was skipped."""
    old, new = before or {}, after or {}
    out: list[tuple[str, str, str]] = []
    run = int(new.get("run") or 0)
    if run and run != int(old.get("run") or 0):
        out.append(("Normal", "JobRunStarted",
                    f"run {run} started ({new.get('trigger') or 'created'})"))
    same_run = run == int(old.get("run") or 0)
    state = new.get("state")
    if run and state != (old.get("state") if same_run else None):
        counts = f"{new.get('succeeded', 0)}/{new.get('total', 0)} complete"
        if state == "complete":
            out.append(("Normal", "JobRunCompleted", f"run {run} completed: {counts}"))
        elif state == "failed":
            out.append(("Warning", "JobRunFailed",
                        f"run {run} failed: {counts}, {new.get('failed', 0)} failed"))
    skipped = int(new.get("skipped") or 0) - int(old.get("skipped") or 0)
    if skipped > 0:
        out.append(("Warning", "TickSkipped",
                    f"{skipped} schedule tick(s) skipped: run {run} was still going"))
    return out
