"""The autoscaler's asyncio half: one queue key per autoscaled service.

Events map to services whose spec has ``autoscale`` (``workload.autoscale_of``):
the service's spec, any of its tasks or an agent's report of one, and a node's
load report (``agents/<node>/load``: the services of the tasks it names, and
of the tasks it counts connections to). Every service is evaluated again each
``period`` (the resync: reports keep coming, and a scale-down falls due with
no event).

Reconcile reads the service, its tasks and the fresh load reports, asks
``decide`` for the replicas, and writes a change through the one guarded
Service write path (``kubeless.store.services.replace_service`` with
``service_writes.scaled``: replicas alone, no new generation, no previous
spec), comparing the service as read plus the leader fence: a deposed
leader's write fails. ``status.autoscale`` is merged into the status and
written only when what it says changed (a holding decision's clock alone is
no change). The recommendation history lives here, per service, for the
current leadership term only: a new leader starts without one and so waits
the scale-down delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable, Iterable
from typing import Any

from kubeless.api import ApiError
from kubeless.api.service_writes import scaled
from kubeless.api.workload import autoscale_of
from kubeless.store import Conflict, ResourceStore
from kubeless.store.services import replace_service

from controllers.autoscaler import metrics
from controllers.autoscaler.decide import (Decision, History, LoadIndex, Policy, decide,
                                           remember, task_usage)
from controllers.base import ViewController
from controllers.ops import WriteServiceStatus
from controllers.specs import ValidatedSpecs
from controllers.view import ClusterView, ServiceKey

log = logging.getLogger(__name__)
Resource = dict[str, Any]

DEFAULT_PERIOD = 15.0  # seconds between evaluations of every service (--autoscale-period)
STATUS_ATTEMPTS = 6  # replication writes the same status key often: merge again on conflict


def autoscale_status(policy: Policy, decision: Decision, previous: Resource | None,
                     now: float) -> Resource:
    """``status.autoscale`` after ``decision`` (docs/MODEL.md). The last decision keeps its
    time and reason while what it decided (its kind, from, to) stands, so a holding
    decision's clock does not rewrite the status each period."""
    previous = previous or {}
    last = previous.get("lastDecision") or {}
    same = (last.get("kind"), last.get("from"), last.get("to")) == \
        (decision.kind, decision.current, decision.desired)
    status: Resource = {
        "desired": decision.desired, "min": policy.min, "max": policy.max,
        "targets": {k: v for k, v in (("cpu", policy.target_cpu),
                                      ("connections", policy.target_connections)) if v},
        "observed": decision.observed, "counted": decision.counted,
        "lastDecision": last if same else {"time": round(now, 3), "kind": decision.kind,
                                           "from": decision.current, "to": decision.desired,
                                           "reason": decision.reason}}
    scaled_at = round(now, 3) if decision.direction else previous.get("lastScaleTime")
    if scaled_at is not None:
        status["lastScaleTime"] = scaled_at
    return status


class AutoscalerController(ViewController):
    name = "autoscaler"
    workers = 4  # services are independent
    batch_period = 0.2  # the nodes' reports of one period arrive together: one evaluation

    def __init__(self, store: ResourceStore, view: ClusterView | None = None,
                 period: float = DEFAULT_PERIOD) -> None:
        super().__init__(store, view)
        self.resync_period = period
        self.specs = ValidatedSpecs(self.view)
        self._history: dict[ServiceKey, History] = {}
        self._term = -1  # the leadership term the history belongs to
        self._index: tuple[Any, LoadIndex] | None = None

    # -- events -> services ------------------------------------------------------------

    def keys_for_event(self, key: str, old: Any, new: Any) -> Iterable[Hashable]:
        view, keys = self.view, self.ctx.store.keys
        found: set[ServiceKey] = set()
        if key.startswith(view.services_prefix):
            ref = keys.parse(key)
            if ref is not None and ref.namespace and any(
                    isinstance(s, dict) and autoscale_of(s) for s in (old, new)):
                found.add((ref.namespace, ref.name))
            return found
        if key.startswith(view.tasks_prefix):
            ref = keys.parse(key)
            if ref is not None and ref.namespace and ref.service:
                found.add((ref.namespace, ref.service))
        elif key.startswith(view.agents_prefix):
            parsed = keys.parse_agent(key)
            if parsed is None:
                return found
            if parsed.sort == "load" and parsed.task_id is None:
                found.update(self._reported(old) | self._reported(new))
            elif parsed.sort == "tasks" and parsed.task_id:
                task_key = view.task_key_by_id.get(parsed.task_id)
                skey = view.service_of_task_key(task_key) if task_key else None
                if skey:
                    found.add(skey)
        return {s for s in found if self._autoscaled(*s)}

    def _reported(self, report: Any) -> set[ServiceKey]:
        """The services of the tasks a load report names (its figures or connections)."""
        if not isinstance(report, dict):
            return set()
        tasks = report.get("tasks")
        found = {(str(t.get("namespace") or "default"), str(t.get("service")))
                 for t in (tasks.values() if isinstance(tasks, dict) else ())
                 if isinstance(t, dict) and t.get("service")}
        connections = report.get("connections")
        for task_id in connections if isinstance(connections, dict) else ():
            task_key = self.view.task_key_by_id.get(str(task_id))
            skey = self.view.service_of_task_key(task_key) if task_key else None
            if skey:
                found.add(skey)
        return found

    def _autoscaled(self, ns: str, name: str) -> bool:
        service = self.view.service(ns, name)
        return service is not None and (autoscale_of(service) is not None or
                                        "autoscale" in (service.get("status") or {}))

    def resync_keys(self) -> Iterable[Hashable]:
        return {(s["metadata"].get("namespace", "default"), s["metadata"]["name"])
                for s in self.view.services() if autoscale_of(s)} | \
            {key for key in self._history}

    # -- reconcile -------------------------------------------------------------------------

    async def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        skey: ServiceKey = (str(key[0]), str(key[1]))
        if self.ctx.stats.terms != self._term:  # a new term: what we remembered is stale
            self._term, self._history = self.ctx.stats.terms, {}
        stored = self.view.service(*skey)
        service = self.specs.get(*skey) if stored is not None else None
        policy = Policy.of(service) if isinstance(service, dict) else None
        if stored is None or isinstance(service, ApiError) or service is None or policy is None:
            self._forget(skey)
            if stored is not None and not isinstance(service, ApiError) and policy is None:
                await self._write_status(skey, None)  # no longer autoscaled
            return None
        now = self.now()
        current = max(int(service["spec"].get("replicas", 1)), 0)
        uid = stored["metadata"].get("uid")
        tasks = [t for t in self.view.tasks_of(*skey) if t.service_uid in (None, uid)]
        usage = task_usage(tasks, self._load_index(), now)
        history = self._history.get(skey, ())
        decision = decide(policy, current, usage, history, now)
        self._history[skey] = remember(history, decision, policy, now)
        if decision.direction:
            await self._scale(stored, decision)
        metrics.DESIRED.labels(*skey).set(decision.desired)
        await self._write_status(skey, autoscale_status(
            policy, decision, (stored.get("status") or {}).get("autoscale"), now))
        return None

    def _load_index(self) -> LoadIndex:
        """The reports indexed by task, made again only when a report changed (the view
        parses a report anew on each change: a new object)."""
        reports = self.view.load_reports()
        version = tuple(sorted((node, id(r)) for node, r in reports.items()))
        if self._index is None or self._index[0] != version:
            self._index = (version, LoadIndex(reports.values()))
        return self._index[1]

    def _forget(self, skey: ServiceKey) -> None:
        if self._history.pop(skey, None) is not None:
            with contextlib.suppress(KeyError):  # never set: the first pass failed
                metrics.DESIRED.remove(*skey)

    async def _scale(self, stored: Resource, decision: Decision) -> None:
        """Write the new replicas, comparing the service as read and the leader fence."""
        meta = stored["metadata"]
        ns, name = meta.get("namespace") or "default", meta["name"]
        written = await replace_service(
            self.ctx.store, name, ns, lambda live: scaled(live, decision.desired),
            what=f"autoscaling service {name}", read=stored, fence=self.ctx.elector.fence())
        direction = decision.direction or ""
        metrics.DECISIONS.labels(ns, name, direction).inc()
        log.info("service %s/%s scaled %s: %s", ns, name, direction, decision.reason)
        self.ctx.events.record(kind="Service", name=name, namespace=ns, reason="Scaled",
                               message=decision.reason)
        await self.caught_up(written.revision, {self.view.services_prefix})

    async def _write_status(self, skey: ServiceKey, autoscale: Resource | None) -> None:
        """Merge ``status.autoscale`` (None: remove it) into the status as cached now; write
        only on a change; on a conflict merge again over the newer status, a few times."""
        for attempt in range(STATUS_ATTEMPTS):
            current = (self.view.service(*skey) or {}).get("status") or {}
            if current.get("autoscale") == autoscale:
                return
            merged = {k: v for k, v in current.items() if k != "autoscale"}
            if autoscale is not None:
                merged["autoscale"] = autoscale
            try:
                await self.apply([WriteServiceStatus(*skey, merged,
                                                     self.view.status_revision(*skey))])
                return
            except Conflict:
                if attempt == STATUS_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.01 * 2 ** attempt)  # let the informer catch up
