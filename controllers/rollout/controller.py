"""The rollout controller's asyncio half: one queue key per service.

Events map to services as for replication (a service's spec, its tasks,
agents' reports on them, a Route sending to it), except that a task's or report's change wakes a
service only when it may move a rollout: one under way or paused, a target
not yet recorded, or a start-first pair (``_task_matters``); a service at
rest is not re-read on every report of its tasks. A node that joins or returns (its
heartbeat appears, its runtime comes back, its availability becomes active) wakes
the services that rebalance (``rebalance``). Reconcile validates the service, asks
``decide`` what to do (then ``rebalance.decide``, for a service that rebalances),
writes the status first (so a rollout's start is on
record before a task is touched), commits the task operations, rolls the Service's
spec back when the decision says so (the one write of a controller to a
spec key, as Swarm's updater does, fenced and compared like any other),
and merges ``updateStatus`` and ``rebalance`` into the status key, keeping what
replication writes there. Jobs are left alone: a job's new spec is a new run,
replication's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable, Iterable
from typing import Any

from kubeless.api import ApiError, workload
from kubeless.api import rollout_annotations as ann
from kubeless.api.tasks import Task
from kubeless.store import Conflict, ResourceStore
from kubeless.store.services import roll_back_service

from controllers.base import ViewController
from controllers.specs import ValidatedSpecs
from controllers.view import ClusterView, route_services
from controllers.ops import WriteServiceStatus
from controllers.replication.decide import split_by_incarnation
from controllers.rollout import metrics, rebalance
from controllers.rollout.decide import ACTIVE, PAUSED, RolloutPlan, decide
from controllers.rollout.facts import fingerprint

log = logging.getLogger(__name__)
STATUS_ATTEMPTS = 6
Resource = dict[str, Any]


# A step of the rollout (``RolloutPlan.events``) -> its Event's type and reason.
_EVENT_OF_STEP = {"started": ("Normal", "RolloutStarted"),
                  "rolled_back": ("Warning", "RollbackStarted"),
                  "paused": ("Warning", "RolloutPaused"),
                  "completed": ("Normal", "RolloutCompleted")}


class RolloutController(ViewController):
    name = "rollout"

    def __init__(self, store: ResourceStore, view: ClusterView | None = None) -> None:
        super().__init__(store, view)
        self.specs = ValidatedSpecs(self.view)
        self.passes = 0
        self.pass_seconds = 0.0
        self._targets: dict[str, tuple[Any, str | None]] = {}  # spec key -> (version, target)

    def keys_for_event(self, key: str, old: Any, new: Any) -> Iterable[Hashable]:
        view = self.view
        if key.startswith(view.services_prefix):
            ref = self.ctx.store.keys.parse(key)
            if ref is not None:
                yield (ref.namespace, ref.name)
        elif key.startswith(view.tasks_prefix):
            ref = self.ctx.store.keys.parse(key)
            if ref is not None and ref.service is not None and \
                    self._task_matters(ref.namespace or "default", ref.service, new or old):
                yield (ref.namespace, ref.service)
        elif key.startswith(view.routes_prefix):  # the ports it exposes on its services
            yield from route_services(old) | route_services(new)
        elif key.startswith(view.nodes_prefix):
            if _availability(new) == "active" != _availability(old):
                yield from self._rebalancing()
        elif key.startswith(view.heartbeats_prefix):
            if _alive(new) and not _alive(old):
                yield from self._rebalancing()
        elif key.startswith(view.agents_prefix):
            parsed = self.ctx.store.keys.parse_agent(key)
            if parsed is not None and parsed.sort == "tasks" and parsed.task_id:
                task_key = view.task_key_by_id.get(parsed.task_id)
                skey = view.service_of_task_key(task_key) if task_key else None
                if skey and self._task_matters(
                        skey[0], skey[1], view.caches[view.tasks_prefix].get(task_key or "")):
                    yield skey

    def _rebalancing(self) -> Iterable[Hashable]:
        """The services a node joining or returning may even out: those that rebalance, or
        whose one-shot request is not done yet."""
        view = self.view
        for stored in view.services():
            meta = stored.get("metadata") or {}
            ns, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
            status = view.caches[view.status_prefix].get(
                self.ctx.store.keys.status("Service", name, ns) or "")
            previous = status.get("rebalance") if isinstance(status, dict) else None
            if rebalance.wanted(stored, previous if isinstance(previous, dict) else None):
                yield (ns, name)

    def _task_matters(self, ns: str, name: str, task: Any) -> bool:
        """Whether a change of one task (or of its report) may move the service's rollout:
        a rollout under way or paused, a target not yet recorded (the next pass starts a
        rollout, or records a new service's first target), a start-first pair's new
        task (its old one stops once it runs), or a rebalance moving or waiting for its
        tasks to run. Anything else changes nothing: a pass
        over a service at rest only finishes such pairs (``decide``)."""
        if isinstance(task, dict) and Task.of(task).replaces:
            return True
        view = self.view
        status = view.caches[view.status_prefix].get(
            self.ctx.store.keys.status("Service", name, ns) or "")
        update = (status or {}).get("updateStatus") if isinstance(status, dict) else None
        if not isinstance(update, dict) or update.get("state") in ACTIVE + PAUSED:
            return True
        balance = status.get("rebalance") if isinstance(status, dict) else None
        if isinstance(balance, dict) and balance.get("state") in ("moving", "waiting"):
            return True  # a batch on its way, or a wait for tasks to run
        return bool(update.get("specHash") != self._target(ns, name))

    def _target(self, ns: str, name: str) -> str | None:
        """The fingerprint of the service's validated spec (None: absent or invalid),
        computed once per resourceVersion."""
        key = self.ctx.store.keys.spec("Service", name, ns)
        stored = self.view.caches[self.view.services_prefix].get(key)
        if stored is None:
            self._targets.pop(key, None)
            return None
        version = self.view.spec_version(ns, name)  # its routes' too: they expose ports
        found = self._targets.get(key)
        if found is None or found[0] != version:
            service = self.specs.get(ns, name)
            target = fingerprint(service["spec"]) if isinstance(service, dict) else None
            found = self._targets[key] = (version, target)
        return found[1]

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
        service = self.specs.get(ns, name)
        if service is None or isinstance(service, ApiError):
            return None  # replication says why in the status
        if workload.is_job(service):
            return None  # a job's new spec is a new run (replication's), never a rolling update
        status = stored.get("status") or {}
        spec = service["spec"]
        desired = int(status.get("replicas") or 0) if workload.is_global(service) \
            else max(int(spec.get("replicas", 1)), 0)
        tasks = split_by_incarnation(self.view.tasks_of(ns, name), service)[0]
        now = self.now()
        plan = decide(service, tasks, status.get("updateStatus"), desired, now)
        balance = rebalance.RebalancePlan()
        if rebalance.wanted(service, status.get("rebalance")):
            balance = rebalance.decide(service, tasks, self.view.nodes(), self.view.all_tasks(),
                                       status.get("rebalance"),
                                       plan.update_status.get("state"), now)
        # The status first: a rollout's start (and its failure clock) is on record before
        # any task is touched, so a retry after a conflict never starts it anew.
        await self._write_status(ns, name, plan.update_status, balance.status)
        await self.apply(plan.ops + balance.ops)
        if plan.rollback:
            await self._roll_back(stored, plan.rollback)
        self._observe(plan)
        self._record(plan, ns, name)
        if balance.moved and balance.status is not None:
            metrics.TASKS_MOVED.inc(balance.moved)
            self.ctx.events.record(kind="Service", name=name, namespace=ns,
                                   reason="Rebalancing", message=str(balance.status["message"]))
        self.passes += 1
        took = time.perf_counter() - started
        self.pass_seconds += took
        metrics.BATCH_SECONDS.observe(took)
        return plan.requeue_after

    async def _roll_back(self, stored: Resource, reason: str) -> None:
        """Put the previous spec back (one generation on), fenced, comparing what we read."""
        written = await roll_back_service(self.ctx.store, stored, reason, keep_current=False,
                                          fence=self.ctx.elector.fence())
        doc = written.value
        log.info("rolling back service %s/%s: %s", doc["metadata"].get("namespace"),
                 doc["metadata"]["name"], reason)
        await self.caught_up(written.revision, {self.view.services_prefix})

    async def _write_status(self, ns: str, name: str, update_status: Resource,
                            rebalance_status: Resource | None) -> None:
        """Merge updateStatus (and rebalance, unless None) into the status as cached now;
        write only on a change.

        Replication writes the same key often (runningReplicas): on a conflict the
        merge is redone over the newer status (we own only updateStatus and rebalance),
        a few times.
        """
        ours = {"updateStatus": update_status}
        if rebalance_status is not None:
            ours["rebalance"] = rebalance_status
        for attempt in range(STATUS_ATTEMPTS):
            current = (self.view.service(ns, name) or {}).get("status") or {}
            if all(current.get(k) == v for k, v in ours.items()):
                return
            merged = {**current, **ours}
            try:
                await self.apply([WriteServiceStatus(ns, name, merged,
                                                     self.view.status_revision(ns, name))])
                return
            except Conflict:
                if attempt == STATUS_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.01 * 2 ** attempt)  # let the informer catch up

    def _record(self, plan: RolloutPlan, ns: str, name: str) -> None:
        """An Event per step of the rollout: started, paused (why), completed, rolled back."""
        message = str(plan.update_status.get("message") or "")
        for step in plan.events:
            type_, reason = _EVENT_OF_STEP[step]
            if plan.update_status.get("reason") == ann.MANUAL_ROLLBACK:
                type_ = "Normal"  # the user asked for it: nothing went wrong
            self.ctx.events.record(kind="Service", name=name, namespace=ns, type_=type_,
                                   reason=reason, message=message or step)

    def _observe(self, plan: RolloutPlan) -> None:
        for event in plan.events:
            metrics.ROLLOUTS.labels(event).inc()
        if plan.replaced:
            metrics.TASKS_REPLACED.inc(plan.replaced)
        if "completed" in plan.events:
            status = plan.update_status
            metrics.DURATION.observe(max(0.0, float(status.get("completedAt") or 0)
                                         - float(status.get("startedAt") or 0)))


def _availability(node: Any) -> str | None:
    """A Node's availability as stored (None: no node)."""
    if not isinstance(node, dict):
        return None
    return str((node.get("spec") or {}).get("availability") or "active")


def _alive(heartbeat: Any) -> bool:
    """A heartbeat that says its node can run tasks (its runtime not known to be down)."""
    return isinstance(heartbeat, dict) and heartbeat.get("runtimeState") != "down"
