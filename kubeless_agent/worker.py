"""The worker: drives a runtime to match one node's assignments, and reports.

Three parts, one idea each:

- decisions, pure: ``next_action`` (what the next runtime call for a task
  is, from its assignment and what we know of it), ``moves_forward`` and
  ``make_report`` (a report never moves a state backwards, and a terminal
  state is never rewritten);
- ``Reporter``, shared by every node of the process: coalesces reports per
  task and writes them in transactions of at most 100 operations, each
  comparing the report key's mod_revision (so a stale agent cannot
  overwrite a newer report: on a failed compare it re-reads and drops what
  would go backwards);
- ``Worker``, one per node: reacts to assignment changes (from the process's
  informer, routed by ``AgentsRouter``) and advances each task one runtime
  call at a time, tasks in parallel. A failing runtime call makes the task
  ``rejected`` (start) or is logged and counted (stop, remove); it never
  crashes the agent. A running task with an ingress port is drained before
  it is stopped (``drain_period``): the endpoints controller has already
  taken it out of its service's endpoints, and every node's mesh needs a
  moment to see that before the container stops answering. Only that
  task waits; the others go on.

A task whose template references secrets or configs waits, before its start,
until its node's copies of them are all there (``kubeless_agent.copies``, fed
by ``on_copy``) and, for secrets, sealed to this agent's key: it is reported
``preparing`` with "waiting for secret dbpass" meanwhile, and wakes when a
copy arrives or its assignment changes (it never polls; the other tasks go on).
Then the values are opened and written as files where the runtime finds them
(``runtime.files``) and the task starts. The files go when the task is removed
or stops for good (a terminal state); a graceful agent stop touches nothing.

Restarting tasks, replacing failed ones and deleting assignments are the
controllers' business (docs/MODEL.md); the worker only runs what it is told.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from kubeless.api import parse_duration
from kubeless.api.file_refs import file_refs
from kubeless.api.tasks import is_terminal, state_index
from kubeless.cluster.sealing import key_id, new_private_key, public_text
from kubeless.store import Compare, Delete, Etcd, Keyspace, Put, StoreError
from kubeless.store.codec import encode_json
from kubeless.store.events import EventRecorder

from kubeless_agent import metrics
from kubeless_agent.copies import (Copy, CopyName, OpenedFile, open_files, parse_copy,
                                   waiting_for, waiting_message)
from kubeless_agent.errors import CopyUnusable
from kubeless_agent.task_events import task_event
from kubeless_agent.runtime import Report, Runtime, Task

log = logging.getLogger(__name__)

BATCH = 100  # operations per report transaction (etcd's default limit is 128)
DEFAULT_GRACE = 10.0
MESSAGES = {"accepted": "accepted", "preparing": "preparing", "starting": "starting",
            "running": "started", "complete": "finished", "failed": "failed",
            "rejected": "rejected", "shutdown": "shutdown"}

Clock = Callable[[], float]


# -- decisions (pure) -----------------------------------------------------------

@dataclass
class TaskRecord:
    """What a worker knows of one task."""

    task: Task | None = None  # the last assignment seen (kept after it is deleted)
    assigned: bool = False  # the assignment key exists
    started: bool = False  # start was called (or the runtime already had it)
    stopped: bool = False  # stop was called, or shutdown reported without a start
    removed: bool = False
    files: bool = False  # its secrets' and configs' files may be on the node
    state: str | None = None  # the latest state reported
    report: Report | None = None  # the latest report written

    @property
    def desired(self) -> str | None:
        if not self.assigned or self.task is None:
            return None
        return str((self.task.get("spec") or {}).get("desiredState") or "running")


def next_action(rec: TaskRecord) -> str:
    """The next step for a task: start, stop, report-shutdown, remove, drop-files (its
    secrets' and configs' files), forget or none."""
    terminal = is_terminal(rec.state)
    desired = rec.desired
    if desired is None:  # the assignment is gone: clean up, then drop the report
        if rec.started and not rec.stopped and not terminal:
            return "stop"
        if rec.started and not rec.removed:
            return "remove"
        return "drop-files" if rec.files else "forget"
    if terminal and rec.files:  # stopped for good: a task never runs again
        return "drop-files"
    if desired == "running":
        return "none" if rec.started or terminal else "start"
    if rec.stopped or terminal:  # shutdown or remove
        return "none"
    return "stop" if rec.started else "report-shutdown"


def moves_forward(current: str | None, new: str) -> bool:
    """A report may repeat its state (with more detail) or move it on, never back.

    A terminal state is final: the task's history. Nothing moves it on to
    another terminal state, so the stopped container of a task shut down
    long ago, found again by a restarted agent (``exited with code 137``),
    never rewrites that ``shutdown`` as ``failed``."""
    if current is None:
        return True
    if is_terminal(current):
        return new == current
    return state_index(new) >= state_index(current)


def make_report(node: str, report: Report, previous: Report | None, now: float) -> Report:
    """The stored form of a runtime's report; keeps the container and ports once known."""
    prev = previous or {}
    state = str(report["state"])
    return {"state": state, "message": report.get("message") or MESSAGES.get(state, state),
            "error": report.get("error"), "timestamp": now,
            "containerId": report.get("containerId") or prev.get("containerId"),
            "exitCode": report.get("exitCode", prev.get("exitCode")),
            "ports": report.get("ports") or prev.get("ports") or [], "nodeName": node}


def needs_drain(rec: TaskRecord) -> bool:
    """A running task behind the mesh (an ingress port) waits before it is stopped."""
    if rec.state != "running" or rec.task is None:
        return False
    ports = (rec.task.get("spec") or {}).get("ports") or []
    return any(isinstance(p, dict) and (p.get("mode") or "ingress") == "ingress" for p in ports)


def stop_grace(task: Task | None) -> float:
    text = ((task or {}).get("spec") or {}).get("template", {}).get("stopGracePeriod")
    try:
        return parse_duration(text) if text else DEFAULT_GRACE
    except ValueError:
        return DEFAULT_GRACE


def _stored_state(raw: bytes) -> str | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value.get("state") if isinstance(value, dict) else None


# -- the reporter -----------------------------------------------------------------

class Reporter:
    """Writes reports of every local node, coalesced per key, in small transactions."""

    def __init__(self, etcd: Etcd, *, batch: int = BATCH, backoff_max: float = 2.0) -> None:
        self.etcd = etcd
        self.batch = batch
        self.backoff_max = backoff_max
        self._pending: dict[str, Report | None] = {}  # key -> report, None: delete
        self._known: dict[str, tuple[str | None, int]] = {}  # key -> (state, mod_revision)
        self._wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.transactions = 0

    def state_of(self, key: str) -> str | None:
        """The latest state of a report key, pending or stored."""
        pending = self._pending.get(key)
        if pending is not None:
            return str(pending["state"])
        return self._known.get(key, (None, 0))[0]

    def report(self, key: str, report: Report) -> bool:
        """Queue a report; False (and nothing queued) when it would move the state back."""
        if not moves_forward(self.state_of(key), report["state"]):
            return False
        self._pending[key] = report
        self._kick()
        return True

    def delete(self, key: str) -> None:
        if key in self._known or self._pending.get(key) is not None:
            self._pending[key] = None
            self._kick()
        else:
            self._pending.pop(key, None)

    def observe(self, key: str, value: Any, mod_revision: int) -> None:
        """What the informer saw under a report key (seeds and corrects ``_known``)."""
        if value is None:
            self._known.pop(key, None)
            return
        if mod_revision > self._known.get(key, (None, 0))[1]:
            state = value.get("state") if isinstance(value, dict) else None
            self._known[key] = (state, mod_revision)

    def _kick(self) -> None:
        self.idle.clear()
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
                backoff = 0.1
            except StoreError as err:
                log.warning("writing task reports: %s; retrying in %.1fs", err, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                self._wake.set()

    async def flush(self) -> None:
        """Write everything pending now."""
        while self._pending:
            keys = list(itertools.islice(self._pending, self.batch))
            ops = {k: self._pending.pop(k) for k in keys}
            try:
                await self._write(ops)
            except BaseException:
                for k, v in ops.items():  # newer reports queued meanwhile win
                    self._pending.setdefault(k, v)
                raise
        self.idle.set()

    async def _write(self, ops: dict[str, Report | None]) -> None:
        compares = [Compare(k, "mod", "==", self._known.get(k, (None, 0))[1]) for k in ops]
        writes = [Delete(k) if v is None else Put(k, encode_json(v)) for k, v in ops.items()]
        res = await self.etcd.txn(compares, writes)
        self.transactions += 1
        metrics.REPORT_TXNS.inc()
        if res.succeeded:
            for k, v in ops.items():
                if v is None:
                    self._known.pop(k, None)
                else:
                    self._known[k] = (v["state"], res.revision)
            metrics.TASK_REPORTS.inc(len(ops))
            return
        await self._refresh(ops)

    async def _refresh(self, ops: dict[str, Report | None]) -> None:
        """A compare failed: read what is stored, drop what would go back, queue the rest."""
        current, _ = await self.etcd.get_many(list(ops))
        for k, v in ops.items():
            kv = current.get(k)
            if kv is None:
                self._known.pop(k, None)
            else:
                self._known[k] = (_stored_state(kv.value), kv.mod_revision)
            if v is None and kv is None:
                continue
            if v is not None and not moves_forward(self._known.get(k, (None, 0))[0], v["state"]):
                log.info("dropping report %s=%s: etcd already has a later state", k, v["state"])
                continue
            self._pending.setdefault(k, v)


# -- the worker -------------------------------------------------------------------

class Worker:
    """Runs one node's assignments on a runtime."""

    def __init__(self, node_id: str, runtime: Runtime, reporter: Reporter, keys: Keyspace, *,
                 clock: Clock = time.time, drain_period: float = 0.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 secrets_key: X25519PrivateKey | None = None,
                 events: EventRecorder | None = None) -> None:
        self.node_id = node_id
        self.events = events  # the node's history (None: hollow nodes, some tests)
        self.secrets_key = secrets_key or new_private_key()  # the process's: copies open with it
        self.key_id = key_id(public_text(self.secrets_key))
        self.copies: dict[CopyName, Copy] = {}  # as they arrived: sealed
        self._waiting: dict[str, asyncio.Event] = {}  # tasks waiting for copies -> their wake
        self.drain_period = drain_period
        self.sleep = sleep
        self.runtime = runtime
        self.reporter = reporter
        self.keys = keys
        self.clock = clock
        self.records: dict[str, TaskRecord] = {}
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._adopted: dict[str, Report] = {}  # what the runtime had before assignments came
        runtime.subscribe(self._on_runtime_report)

    def report_key(self, tid: str) -> str:
        return self.keys.observed(self.node_id, tid)

    def running(self) -> dict[str, Task]:
        """The tasks reported running, with their assignment (what load reports measure)."""
        return {tid: rec.task for tid, rec in self.records.items()
                if rec.state == "running" and rec.task is not None}

    async def adopt(self) -> None:
        """Take over what the runtime already runs (before assignments arrive)."""
        held = await self.runtime.list()
        for tid, report in held:
            rec = self.records.setdefault(tid, TaskRecord())
            rec.started = rec.files = True
            rec.state = report.get("state")
            metrics.task_state_changed(None, rec.state)
            self._adopted[tid] = report
        try:  # the files of tasks gone while no agent ran
            await asyncio.to_thread(self.runtime.files.sweep, {tid for tid, _ in held})
        except OSError as err:
            log.warning("removing the files of tasks gone from %s: %s", self.node_id, err)

    def resync(self) -> None:
        """After the first listing: report what changed while no agent watched (a container
        that ended), and clean up adopted tasks that have no assignment."""
        adopted, self._adopted = self._adopted, {}
        for tid, rec in list(self.records.items()):
            report = adopted.get(tid)
            if rec.assigned and report is not None and \
                    report["state"] != self.reporter.state_of(self.report_key(tid)):
                self._report(tid, report)
            if not rec.assigned:
                self.kick(tid)

    def on_assignment(self, tid: str, task: Task | None) -> None:
        rec = self.records.get(tid)
        if task is None:
            if rec is None:
                self.reporter.delete(self.report_key(tid))
                return
            rec.assigned = False
        else:
            if rec is None:
                rec = self.records[tid] = TaskRecord()
            rec.task, rec.assigned = task, True
        self._wake(tid)
        self.kick(tid)

    def on_copy(self, kind: str, namespace: str, name: str, value: Any) -> None:
        """A copy of a Secret or Config for this node, put (value) or deleted (None)."""
        key = (kind, namespace, name)
        copy = parse_copy(kind, namespace, name, value) if value is not None else None
        if copy is None:
            if value is not None:
                log.warning("ignoring this node's copy of %s %s/%s: not a copy", kind,
                            namespace, name)
            self.copies.pop(key, None)
        else:
            self.copies[key] = copy
        for event in self._waiting.values():
            event.set()

    def _wake(self, tid: str) -> None:
        event = self._waiting.get(tid)
        if event is not None:
            event.set()

    def kick(self, tid: str) -> None:
        if tid in self._busy:
            self._dirty.add(tid)
            return
        self._busy[tid] = asyncio.create_task(self._drive(tid), name=f"task {self.node_id}/{tid}")

    async def close(self) -> None:
        busy = list(self._busy.values())
        for t in busy:
            t.cancel()
        await asyncio.gather(*busy, return_exceptions=True)
        for rec in self.records.values():
            metrics.task_state_changed(rec.state, None)

    async def _drive(self, tid: str) -> None:
        try:
            while True:
                self._dirty.discard(tid)
                await self._advance(tid)
                if tid not in self._dirty:
                    return
        except Exception:
            log.exception("task %s on %s: unexpected error", tid, self.node_id)
        finally:
            self._busy.pop(tid, None)

    async def _advance(self, tid: str) -> None:
        while (rec := self.records.get(tid)) is not None:
            stored = self.reporter.state_of(self.report_key(tid))
            if stored is not None and stored != rec.state and \
                    (is_terminal(stored) or moves_forward(rec.state, stored)):
                metrics.task_state_changed(rec.state, stored)
                rec.state = stored  # e.g. a previous agent process saw it end: its report stands
            action = next_action(rec)
            if action == "none":
                return
            await self._do(action, tid, rec)

    async def _do(self, action: str, tid: str, rec: TaskRecord) -> None:
        task = rec.task or {"metadata": {"name": tid}}
        if action == "start":
            files = await self._open_files(tid, rec)
            if files is None:  # no longer to be started: the next action says what then
                return
            rec.started = True
            error = await self._call("start", self._start(tid, rec, files))
            if error is not None:
                self._report(tid, {"state": "rejected", "error": error})
        elif action == "stop":
            rec.stopped = True
            if self.drain_period > 0 and needs_drain(rec):
                log.info("task %s on %s: draining %.1fs before it stops", tid, self.node_id,
                         self.drain_period)
                await self.sleep(self.drain_period)
            error = await self._call("stop", self.runtime.stop(task, stop_grace(task)))
            if rec.assigned:
                self._report(tid, {"state": "shutdown",
                                   "error": error and f"stop failed: {error}"})
        elif action == "report-shutdown":
            rec.stopped = True
            self._report(tid, {"state": "shutdown", "message": "shut down before it started"})
        elif action == "remove":
            rec.removed = True
            await self._call("remove", self.runtime.remove(task))
        elif action == "drop-files":
            rec.files = False
            await asyncio.to_thread(self.runtime.files.remove, tid)
        elif action == "forget":
            self.records.pop(tid, None)
            metrics.task_state_changed(rec.state, None)
            self.reporter.delete(self.report_key(tid))

    async def _open_files(self, tid: str, rec: TaskRecord) -> list[OpenedFile] | None:
        """The task's secrets and configs, opened, once every copy is usable (waiting,
        ``preparing``, until then); None when the task is no longer to be started."""
        assert rec.task is not None
        refs = file_refs((rec.task.get("spec") or {}).get("template"))
        if not refs:
            return []
        namespace = str((rec.task.get("metadata") or {}).get("namespace") or "default")
        while next_action(rec) == "start":
            try:
                waiting = waiting_for(refs, namespace, self.copies, self.key_id)
                if not waiting:
                    return open_files(refs, self.node_id, namespace, self.copies,
                                      self.secrets_key)
                message = waiting_message(waiting)
            except CopyUnusable as err:
                message = f"waiting for {err}"
            if (rec.report or {}).get("message") != message:
                log.info("task %s on %s: %s", tid, self.node_id, message)
                self._report(tid, {"state": "preparing", "message": message})
            event = self._waiting[tid] = asyncio.Event()
            try:
                await event.wait()
            finally:
                self._waiting.pop(tid, None)
        return None

    async def _start(self, tid: str, rec: TaskRecord, files: list[OpenedFile]) -> None:
        """Write the task's files (when it has any), then start it."""
        if files:
            rec.files = True
            await asyncio.to_thread(self.runtime.files.write, tid, files)
        assert rec.task is not None
        await self.runtime.start(rec.task)

    async def _call(self, operation: str, call: Awaitable[None]) -> str | None:
        """Await one runtime call; its error message, or None when it succeeded."""
        try:
            await call
        except Exception as err:  # a runtime's failure is the task's, never the agent's
            metrics.RUNTIME_ERRORS.labels(operation=operation).inc()
            message = str(err) or type(err).__name__
            log.warning("runtime %s failed on %s: %s", operation, self.node_id, message)
            return message
        return None

    def _on_runtime_report(self, tid: str, report: Report) -> None:
        rec = self.records.get(tid)
        if rec is not None and rec.task is None and tid in self._adopted:
            self._adopted[tid] = report  # adopted, assignment not seen yet: resync reports it
            return
        if rec is None or not rec.assigned:
            return  # being cleaned up: its report key goes away
        self._report(tid, report)

    def _report(self, tid: str, report: Report) -> None:
        rec = self.records.get(tid)
        if rec is None:
            return
        full = make_report(self.node_id, report, rec.report, self.clock())
        if self.reporter.report(self.report_key(tid), full):
            metrics.task_state_changed(rec.state, full["state"])
            self._record(rec, full)
            rec.state, rec.report = full["state"], full
            if rec.files and is_terminal(rec.state):
                self.kick(tid)  # stopped for good: its files go


    def _record(self, rec: TaskRecord, report: Report) -> None:
        """An Event for the state change, under the node's own prefix (best effort)."""
        event = task_event(rec.task, rec.state, report) if self.events is not None else None
        if event is None or rec.task is None or self.events is None:
            return
        meta = rec.task.get("metadata") or {}
        self.events.record(kind="Task", name=str(meta.get("name")),
                           namespace=str(meta.get("namespace") or "default"),
                           service=str((rec.task.get("spec") or {}).get("serviceName") or ""),
                           type_=event.type, reason=event.reason, message=event.message)


# -- routing the process's informer to workers ------------------------------------------

class AgentsRouter:
    """An informer handler on ``agents/`` (or one node's prefix) dispatching by node id."""

    def __init__(self, keys: Keyspace, workers: Mapping[str, Worker], reporter: Reporter,
                 revision_of: Callable[[str], int],
                 on_leave: Callable[[str], None] | None = None) -> None:
        self.keys = keys
        self.workers = workers
        self.reporter = reporter
        self.revision_of = revision_of
        self.on_leave = on_leave

    def __call__(self, key: str, old: Any, new: Any) -> None:
        parsed = self.keys.parse_agent(key)
        if parsed is None:
            copy = self.keys.parse_copy(key)
            if copy is not None and copy.node in self.workers:
                self.workers[copy.node].on_copy(copy.kind, copy.namespace, copy.name, new)
            return
        if parsed.node not in self.workers:
            return
        if parsed.sort == "assignments" and parsed.task_id:
            self.workers[parsed.node].on_assignment(parsed.task_id,
                                                    new if _is_task(new) else None)
        elif parsed.sort == "tasks" and parsed.task_id:
            self.reporter.observe(key, new, self.revision_of(key) if new is not None else 0)
        elif parsed.sort == "leave" and parsed.task_id is None and new is not None \
                and self.on_leave is not None:
            self.on_leave(parsed.node)  # kubeless node leave (kubeless_agent.leave)


def _is_task(value: Any) -> bool:
    if value is None:
        return False
    ok = isinstance(value, dict) and isinstance(value.get("metadata"), dict) \
        and isinstance(value.get("spec"), dict)
    if not ok:
        log.warning("ignoring an assignment that is not a Task resource")
    return ok
