"""The rollout controller's asyncio half: one queue key per service.

Events map to services as for replication (a service's spec or status, its
tasks, agents' reports on them). Reconcile validates the service, asks
``decide`` what to do, writes the status first (so a rollout's start is on
record before a task is touched), commits the task operations, rolls the Service's
spec back when the decision says so (the one write of a controller to a
spec key, as Swarm's updater does, fenced and compared like any other),
and merges ``updateStatus`` into the status key, keeping what replication
writes there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable, Iterable
from typing import Any

from kubeless.api import ApiError, validate
from kubeless.store import Conflict, ResourceStore

from controllers.base import ViewController
from controllers.ops import WriteServiceStatus
from controllers.replication.decide import belongs
from controllers.rollout import annotations as ann
from controllers.rollout import metrics
from controllers.rollout.decide import RolloutPlan, decide

log = logging.getLogger(__name__)
STATUS_ATTEMPTS = 6
Resource = dict[str, Any]


class RolloutController(ViewController):
    name = "rollout"

    def __init__(self, store: ResourceStore, clock: Any = time.time) -> None:
        super().__init__(store)
        self.now = clock
        self.passes = 0
        self.pass_seconds = 0.0

    def keys_for_event(self, key: str, old: Any, new: Any) -> Iterable[Hashable]:
        view = self.view
        if key.startswith(view.services_prefix) or key.startswith(view.tasks_prefix):
            ref = self.ctx.store.keys.parse(key)
            if ref is not None:
                yield (ref.namespace, ref.name if ref.kind == "Service" else ref.service)
        elif key.startswith(view.agents_prefix):
            parts = view.agent_key_parts(key)
            if parts is not None and parts[1] == "tasks" and parts[2]:
                task_key = view.task_key_by_id.get(parts[2])
                skey = view.service_of_task_key(task_key) if task_key else None
                if skey:
                    yield skey

    def resync_keys(self) -> Iterable[Hashable]:
        return {(s["metadata"].get("namespace", "default"), s["metadata"]["name"])
                for s in self.view.services()}

    async def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        ns, name = str(key[0]), str(key[1])
        started = time.perf_counter()
        stored = self.view.service(ns, name)
        if stored is None:
            return None
        try:
            service = validate({k: v for k, v in stored.items() if k != "status"})
        except ApiError:
            return None  # replication says why in the status
        service["metadata"]["resourceVersion"] = stored["metadata"].get("resourceVersion")
        status = stored.get("status") or {}
        spec = service["spec"]
        desired = int(status.get("replicas") or 0) if spec.get("mode") == "global" \
            else max(int(spec.get("replicas", 1)), 0)
        tasks = [t for t in self.view.tasks_of(ns, name) if belongs(t, service)]
        plan = decide(service, tasks, status.get("updateStatus"), desired, self.now())
        # The status first: a rollout's start (and its failure clock) is on record before
        # any task is touched, so a retry after a conflict never starts it anew.
        await self._write_status(ns, name, plan.update_status)
        await self.apply(plan.ops)
        if plan.rollback:
            await self._roll_back(stored, plan.rollback)
        self._observe(plan)
        self.passes += 1
        took = time.perf_counter() - started
        self.pass_seconds += took
        metrics.BATCH_SECONDS.observe(took)
        return plan.requeue_after

    async def _roll_back(self, stored: Resource, reason: str) -> None:
        """Put the previous spec back (one generation on), fenced, comparing what we read."""
        doc = ann.rolled_back(stored, reason, keep_current=False)
        txn = self.ctx.store.transaction()
        txn.update(doc)
        res = await self.ctx.store.etcd.txn([self.ctx.elector.fence(), *txn.compares], txn.ops)
        if not res.succeeded:
            raise Conflict(f"service {doc['metadata']['name']} changed while rolling back")
        log.info("rolling back service %s/%s: %s", doc["metadata"].get("namespace"),
                 doc["metadata"]["name"], reason)
        await self.caught_up(res.revision, {self.view.services_prefix})

    async def _write_status(self, ns: str, name: str, update_status: Resource) -> None:
        """Merge updateStatus into the status as cached now; write only on a change.

        Replication writes the same key often (runningReplicas): on a conflict the
        merge is redone over the newer status (we own only updateStatus), a few times.
        """
        for attempt in range(STATUS_ATTEMPTS):
            current = (self.view.service(ns, name) or {}).get("status") or {}
            if current.get("updateStatus") == update_status:
                return
            merged = {**current, "updateStatus": update_status}
            try:
                await self.apply([WriteServiceStatus(ns, name, merged,
                                                     self.view.status_revision(ns, name))])
                return
            except Conflict:
                if attempt == STATUS_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.01 * 2 ** attempt)  # let the informer catch up

    def _observe(self, plan: RolloutPlan) -> None:
        for event in plan.events:
            metrics.ROLLOUTS.labels(event).inc()
        if plan.replaced:
            metrics.TASKS_REPLACED.inc(plan.replaced)
        if "completed" in plan.events:
            status = plan.update_status
            metrics.DURATION.observe(max(0.0, float(status.get("completedAt") or 0)
                                         - float(status.get("startedAt") or 0)))
