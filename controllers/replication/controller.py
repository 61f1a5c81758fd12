"""The replication controller's asyncio half: one queue key per service.

Events map to services: a service's spec, any of its tasks, an agent's
report on one of its tasks, a Route sending to it (the ports it exposes on the
service's tasks), and, for global services, any node or
heartbeat change. A job's schedule requeues its key at the next tick
(``Decision.requeue_after``). Reconcile validates the service (an invalid one is left
alone and says why in its status), asks ``reconcile_service`` what to do,
commits it, and writes the service status when it changed. A task etcd
refuses to create even alone (too large: the applier skips it) leaves the
service a ``TasksWritten`` condition saying so, and the others are written.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from kubeless.api import ApiError, workload
from kubeless.store import ResourceStore

from controllers.base import ViewController
from controllers.specs import ValidatedSpecs
from controllers.framework.applier import too_large_message
from controllers.ops import CreateTask, WriteServiceStatus
from controllers.replication.decide import reconcile_service, service_status
from controllers.replication.global_mode import eligibility
from controllers.replication.job_runs import job_events
from controllers.view import ClusterView, route_services

Resource = dict[str, Any]


def invalid_message(err: ApiError) -> str:
    """One line: every violation of an invalid service (what ``get`` warns with)."""
    violations = getattr(err, "violations", None)
    if violations:
        return "; ".join(str(v) for v in violations)
    return str(err).splitlines()[0]


class ReplicationController(ViewController):
    name = "replication"
    workers = 16  # service keys are independent: their writes and waits overlap
    # A lost node orphans its tasks in one write, a lost rack in a hundred: let them
    # land, then replace them in one pass per service (not one pass per write).
    batch_period = 0.1

    def __init__(self, store: ResourceStore, view: ClusterView | None = None) -> None:
        super().__init__(store, view)
        self.specs = ValidatedSpecs(self.view)

    def keys_for_event(self, key: str, old: Any, new: Any) -> Iterable[Hashable]:
        view = self.view
        if key.startswith(view.services_prefix) or key.startswith(view.tasks_prefix):
            ref = self.ctx.store.keys.parse(key)
            if ref is None:
                return
            if ref.kind == "Service":
                yield (ref.namespace, ref.name)
            else:
                yield (ref.namespace, ref.service)
        elif key.startswith(view.routes_prefix):  # the ports it exposes on its services
            yield from route_services(old) | route_services(new)
        elif key.startswith(view.nodes_prefix):
            yield from self._global_services()
        elif key.startswith(view.heartbeats_prefix):
            yield from self._global_services()
        elif key.startswith(view.agents_prefix):
            parsed = self.ctx.store.keys.parse_agent(key)
            if parsed is None:
                return
            if parsed.sort == "tasks" and parsed.task_id:
                task_key = view.task_key_by_id.get(parsed.task_id)
                skey = view.service_of_task_key(task_key) if task_key else None
                if skey:
                    yield skey

    def resync_keys(self) -> Iterable[Hashable]:
        keys = {(s["metadata"].get("namespace", "default"), s["metadata"]["name"])
                for s in self.view.services()}
        keys.update(self.view.tasks_by_service)
        return keys

    def _global_services(self) -> Iterable[Hashable]:
        for s in self.view.services():
            if workload.is_global(s):
                yield (s["metadata"].get("namespace", "default"), s["metadata"]["name"])

    async def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        ns, name = str(key[0]), str(key[1])
        stored = self.view.service(ns, name)
        tasks = self.view.tasks_of(ns, name)
        if stored is None:
            decision = reconcile_service(None, tasks, self.view.nodes(), self.now())
            await self.apply(decision.ops)
            return decision.requeue_after
        current_status = stored.get("status")
        service = self.specs.get(ns, name)
        if service is None:
            return None  # deleted between the two reads: the delete event brings us back
        if isinstance(service, ApiError):
            await self._write_status(ns, name, current_status, {
                "observedGeneration": stored["metadata"].get("generation"),
                "conditions": [{"type": "Valid", "status": "False",
                                "message": invalid_message(service),
                                "detail": str(service)}]})
            return None
        nodes = self.view.nodes()
        eligible = eligibility(service)
        now = self.now()
        decision = reconcile_service(service, tasks, nodes, now, eligible=eligible,
                                     node_ids=self.view.node_ids(),
                                     job=(current_status or {}).get("job"))
        status: dict[str, Any] = {}
        if decision.ops:
            result = await self.apply(decision.ops)
            tasks = self.view.tasks_of(ns, name)  # as the writes left them
            refused = [size for op, size in result.too_large if isinstance(op, CreateTask)]
            if refused:
                status["conditions"] = [{"type": "TasksWritten", "status": "False",
                                         "message": too_large_message(max(refused), "creating")}]
        status.update(service_status(service, tasks, nodes, eligible=eligible, job=decision.job,
                                     now=now))
        await self._write_status(ns, name, current_status, status)
        for type_, reason, message in job_events((current_status or {}).get("job"),
                                                 status.get("job")):
            self.ctx.events.record(kind="Service", name=name, namespace=ns, type_=type_,
                                   reason=reason, message=message)
        return decision.requeue_after

    async def _write_status(self, ns: str, name: str, current: Any, wanted: dict[str, Any]) -> None:
        """Merge our fields into the status; write only when something changed. The merge
        is over the status as cached now, read with the revision the write compares:
        what others wrote while we reconciled (the autoscaler's, the rollout's fields)
        is kept, never overwritten by the status read at the start."""
        revision = self.view.status_revision(ns, name)
        current = (self.view.service(ns, name) or {}).get("status", current)
        merged = {**(current or {}), **wanted}
        if "conditions" not in wanted:
            merged.pop("conditions", None)
        if merged == current:
            return
        await self.apply([WriteServiceStatus(ns, name, merged, revision)])
