"""The scheduler's asyncio half: place every pending task, in batches.

One queue key (``PENDING``) stands for "some task waits for a node"; it is
added when a pending task appears and when a node or heartbeat changes
while tasks wait. Reconcile plans all waiting tasks at once with
``plan_placements`` and commits each assignment (the task and its node's
assignment key together) through the fenced applier, many per
transaction. Node aggregates are kept incrementally (``NodeAggregates``).
Tasks just written are held "in flight" (counted on their node, not planned
again) until the cache shows them, as kube-scheduler assumes pods it binds,
so a pass never waits for the informer to see the last one. Tasks no node accepts keep waiting with the reason in
``status.message`` and ``status.error`` (what ``service ps`` shows), and
are placed as soon as a node fits. A task whose assignment etcd refuses as
too large (the applier skips it, see applier.py) says so the same way and is
not planned again while this process leads: it could never be written.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable
from typing import Any

from kubeless.api.tasks import Task
from kubeless.store import ResourceStore

from controllers.base import ViewController
from controllers.view import ClusterView, is_waiting
from controllers.ops import AssignTask, Op, UpdateTask
from controllers import metrics
from controllers.framework import ApplyResult, ControllerContext
from controllers.framework.applier import too_large_message
from controllers.scheduler.aggregates import NodeAggregates
from controllers.scheduler.request import Usage
from controllers.scheduler.plan import Plan, plan_placements

PENDING = "pending"
Resource = dict[str, Any]


class SchedulerController(ViewController):
    name = "scheduler"

    def __init__(self, store: ResourceStore, view: ClusterView | None = None) -> None:
        super().__init__(store, view)
        # Per-node sums of occupying tasks, brought up to date at each pass with the
        # tasks changed since (``_changed``, filled by the view) instead of re-summed.
        self.aggregates = NodeAggregates()
        self._changed: set[str] = set()
        # Tasks we wrote whose write the cache does not show yet (kube-scheduler's
        # "assumed" pods): task key -> (resourceVersion we wrote over, node, usage held).
        # A pass skips them and counts their usage, so it need not wait for the
        # informer after committing; an entry goes once the cache shows another
        # version of the task (ours, or whoever's write won), or when the write failed.
        self._in_flight: dict[str, tuple[Any, str | None, Usage | None]] = {}
        # Task keys whose assignment etcd refused as too large: never planned again
        # (a task's spec does not change); forgotten when the task goes.
        self._too_large: set[str] = set()

    def setup(self, ctx: ControllerContext) -> None:
        super().setup(ctx)
        self.view.on_task_change(self._note_change)

    def _note_change(self, key: str) -> None:
        self._changed.add(key)

    def keys_for_event(self, key: str, old: Any, new: Any) -> Iterable[Hashable]:
        view = self.view
        if key.startswith(view.tasks_prefix):
            if new is not None and is_waiting(new):
                yield PENDING
            elif old is not None and (old.get("spec") or {}).get("nodeName"):
                yield from self._if_waiting()  # capacity freed
        elif key.startswith(view.nodes_prefix) or key.startswith(view.heartbeats_prefix):
            yield from self._if_waiting()

    def resync_keys(self) -> Iterable[Hashable]:
        return self._if_waiting()

    def _if_waiting(self) -> Iterable[Hashable]:
        if self.view.waiting:
            yield PENDING

    async def reconcile(self, key: Hashable) -> float | None:
        self._settle()
        view = self.view
        pending = [t for t in map(view.task, [k for k in view.waiting
                                                   if k not in self._in_flight
                                                   and k not in self._too_large])
                   if t is not None]
        if not pending:
            return None
        started = time.perf_counter()
        infos = self.aggregates.infos(view.nodes())
        for _, node, usage in self._in_flight.values():
            if usage is not None and node in infos:
                infos[node].add(usage)
        plan = plan_placements(pending, [], [], infos=infos)
        metrics.PLAN_SECONDS.observe(time.perf_counter() - started)
        now = self.now()
        ops: list[Op] = [AssignTask(self._assigned(a.task, a.node_id, a.scores, now), a.node_id)
                         for a in plan.assignments]
        for u in plan.unschedulable:
            # As Swarm's scheduler does, the reason goes in the error too: that is the
            # column ``service ps`` shows (docker service ps: "no suitable node (...)").
            status = u.task.stored.get("status") or {}
            if status.get("message") != u.reason or status.get("error") != u.reason:
                ops.append(UpdateTask(self._stored(u.task, status={
                    **status, "message": u.reason, "error": u.reason}), "unschedulable"))
        result = await self._commit(ops)
        await self._commit(self._refused(result))
        self._record(plan, [op for op in ops if isinstance(op, UpdateTask)])
        for a in plan.assignments:
            created = a.task.created_time
            if created is not None:
                metrics.TIME_TO_ASSIGN.observe(max(0.0, now - created))
        metrics.PLACED.inc(len(plan.assignments))
        metrics.UNSCHEDULABLE.set(len(plan.unschedulable))
        return None

    def _record(self, plan: Plan, unschedulable: list[UpdateTask]) -> None:
        """Events: per service and node, tasks scheduled; per service, each new reason
        tasks wait (repeats of one reason aggregate into one Event: ``x40 over 1m``)."""
        for a in plan.assignments:
            self.ctx.events.record(kind="Service", name=a.task.service_name,
                                   namespace=a.task.namespace, reason="Scheduled",
                                   message=f"task scheduled on {a.node_id}")
        for op in unschedulable:
            meta, status = op.task["metadata"], op.task.get("status") or {}
            self.ctx.events.warning(kind="Service", name=str(op.task["spec"]["serviceName"]),
                                    namespace=str(meta.get("namespace") or "default"),
                                    reason="FailedScheduling", message=str(status["error"]))

    def _settle(self) -> None:
        """Bring the aggregates up to date with the tasks changed since the last pass;
        forget in-flight writes the cache now answers for."""
        view = self.view
        changed, self._changed = self._changed, set()
        tasks = view.caches[view.tasks_prefix]
        for key in changed:
            self.aggregates.update(key, view.task(key), key in view.waiting)
            flight = self._in_flight.get(key)
            if flight is not None:
                task = tasks.get(key)
                if task is None or task["metadata"].get("resourceVersion") != flight[0]:
                    del self._in_flight[key]
            if key not in tasks:
                self._too_large.discard(key)

    def _refused(self, result: ApplyResult | None) -> list[Op]:
        """Status updates saying why the tasks etcd refused to assign will wait forever."""
        ops: list[Op] = []
        for op, size in result.too_large if result else ():
            if not isinstance(op, AssignTask):
                continue
            key = self.view.task_key_by_id.get(op.task["metadata"]["name"])
            if key is None or key in self._too_large:
                continue
            self._too_large.add(key)
            task = self.view.task(key)
            if task is None:
                continue
            reason = too_large_message(size, "assigning")
            status = task.stored.get("status") or {}
            if status.get("message") != reason or status.get("error") != reason:
                ops.append(UpdateTask(self._stored(task, status={
                    **status, "message": reason, "error": reason}), "too large"))
        return ops

    async def _commit(self, ops: list[Op]) -> ApplyResult | None:
        """Commit (fenced, batched), holding each task as in flight meanwhile and after,
        until the cache shows it; a write that did not land is forgotten at once so
        the next pass plans its task again. Raises as ``apply`` does."""
        if not ops:
            return None
        keys = self.view.task_key_by_id
        for op in ops:
            assert isinstance(op, (AssignTask, UpdateTask))
            key = keys.get(op.task["metadata"]["name"])
            if key is not None:
                version = op.task["metadata"].get("resourceVersion")
                self._in_flight[key] = ((version, op.node_id, Usage.lenient(op.task))
                                        if isinstance(op, AssignTask) else (version, None, None))
        try:
            result = await self.ctx.applier.apply(ops)
        except BaseException:
            self._in_flight.clear()  # NotLeader (or a bug): start the next term afresh
            raise
        for batch in result.batches:
            if not batch.ok:
                for op in batch.ops:
                    assert isinstance(op, (AssignTask, UpdateTask))
                    self._in_flight.pop(keys.get(op.task["metadata"]["name"], ""), None)
        return result.check()

    @staticmethod
    def _stored(task: Task, **changes: Any) -> Resource:
        """The task as stored with some top-level fields replaced (what the write holds)."""
        return {**task.stored, **changes}

    def _assigned(self, task: Task, node_id: str, scores: dict[str, Any],
                  now: float) -> Resource:
        spec = {**task.spec, "nodeName": node_id}
        status = {**(task.stored.get("status") or {}), "state": "assigned", "timestamp": now,
                  "message": f"scheduled on {node_id}",
                  "scores": scores}
        status.pop("error", None)  # the "no suitable node" of an earlier pass
        return self._stored(task, spec=spec, status=status)
