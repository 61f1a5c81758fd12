"""The endpoints controller's asyncio half: one queue key per service, one per Route.

Events map to services: a service's spec, one of its tasks, an agent's
report on one of its tasks, a node (spec or heartbeat: up, down, a new
address) that runs some of its tasks, and the endpoints key itself, so a
key changed or left behind by anyone converges back. Each service an event
maps to also maps to the Routes that send to it (their documents list its
endpoints); a Route's own spec and its document (``endpoints/_routes/``) map to
the Route. Reconcile reads the cluster view, asks ``decide`` for the document,
and writes it only when it differs from the cached key, in a transaction that
compares the key's mod_revision (absence, for a new key) and the leader fence;
a key whose service (or Route) is gone is deleted the same way. After a write it
waits until its informer has seen it, so the next reconcile decides on fresh data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable, Iterable
from typing import Any

from kubeless.api import ApiError, validate
from kubeless.store import Compare, Conflict, Delete, KeyValue, Put, ResourceStore
from kubeless.store.keys import ROUTES_SEGMENT

from controllers.base import ViewController
from controllers.endpoints import metrics
from controllers.endpoints.decide import (CORRUPT, DeleteEndpoints, EndpointsOp, PutEndpoints,
                                          desired_endpoints, desired_route, endpoints_op)
from controllers.framework import InformerSpec
from controllers.view import ClusterView, route_services

log = logging.getLogger(__name__)
Resource = dict[str, Any]
ROUTE = "Route"  # a Route's queue key is (ROUTE, namespace, name); a service's (namespace, name)


def decode_endpoints(kv: KeyValue) -> Any:
    """The key's JSON document, or CORRUPT (kept in the cache, so it is overwritten)."""
    try:
        value = json.loads(kv.value)
    except ValueError:
        return CORRUPT
    return value if isinstance(value, dict) else CORRUPT


def encode_endpoints(value: Resource) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _running(report: Any) -> bool:
    return isinstance(report, dict) and report.get("state") == "running"


class EndpointsController(ViewController):
    name = "endpoints"
    workers = 4  # service keys are independent
    # A burst of task events (a scale, a node lost) becomes one document write,
    # well inside the agents' drain period.
    batch_period = 0.1

    def __init__(self, store: ResourceStore, view: ClusterView | None = None) -> None:
        super().__init__(store, view)
        self.endpoints_prefix = store.keys.endpoints_prefix()
        # Route spec key -> (resourceVersion, the Route validated, or None when invalid).
        self._routes: dict[str, tuple[Any, Resource | None]] = {}

    def informers(self) -> list[InformerSpec]:
        return [*self.view.informer_specs(), InformerSpec(self.endpoints_prefix, decode_endpoints)]

    # -- events -> services -------------------------------------------------------

    def keys_for_event(self, key: str, old: Any, new: Any) -> Iterable[Hashable]:
        view = self.view
        for found in self._keys_for_event(key, old, new):
            yield found
            if len(found) == 2:  # a service: the Routes sending to it list its endpoints
                for route_key in list(view.routes_by_service.get(found, ())):
                    ref = self.ctx.store.keys.parse(route_key)
                    if ref is not None:
                        yield (ROUTE, ref.namespace, ref.name)

    def _keys_for_event(self, key: str, old: Any, new: Any) -> Iterable[tuple[Any, ...]]:
        view = self.view
        if (route := self.ctx.store.keys.parse_route_endpoints(key)) is not None:
            yield (ROUTE, *route)
        elif key.startswith(view.routes_prefix):
            ref = self.ctx.store.keys.parse(key)
            if ref is not None:
                yield (ROUTE, ref.namespace, ref.name)
        elif key.startswith(self.endpoints_prefix):
            ns, _, name = key[len(self.endpoints_prefix):].partition("/")
            if ns and name and "/" not in name and ns != ROUTES_SEGMENT:
                yield (ns, name)
        elif key.startswith(view.services_prefix) or key.startswith(view.tasks_prefix):
            ref = self.ctx.store.keys.parse(key)
            if ref is not None:
                yield (ref.namespace, ref.name if ref.kind == "Service" else ref.service)
        elif key.startswith(view.nodes_prefix):
            ref = self.ctx.store.keys.parse(key)
            if ref is not None:
                yield from self._services_on(ref.name)
        elif key.startswith(view.heartbeats_prefix):
            node = self.ctx.store.keys.parse_heartbeat(key)
            if node is not None:
                yield from self._services_on(node)
        elif key.startswith(view.agents_prefix):
            parsed = self.ctx.store.keys.parse_agent(key)
            if parsed is None:
                return
            if parsed.sort == "tasks" and parsed.task_id and (_running(old) or _running(new)):
                # a report matters only into or out of running: the bulk of reports
                # (accepted, preparing, starting...) cannot change an endpoint
                task_key = view.task_key_by_id.get(parsed.task_id)
                skey = view.service_of_task_key(task_key) if task_key else None
                if skey:
                    yield skey

    def _services_on(self, node: str) -> set[tuple[str, str]]:
        view = self.view
        found: set[tuple[str, str]] = set()
        for task_key in list(view.tasks_by_node.get(node, ())):
            skey = view.service_of_task_key(task_key)
            if skey:
                found.add(skey)
        return found

    def resync_keys(self) -> Iterable[Hashable]:
        keys: set[Hashable] = {(s["metadata"].get("namespace", "default"), s["metadata"]["name"])
                               for s in self.view.services()}
        keys.update((ROUTE, r["metadata"].get("namespace", "default"), r["metadata"]["name"])
                    for r in self.view.routes())
        for key in list(self.ctx.cache(self.endpoints_prefix)):
            keys.update(self.keys_for_event(key, None, None))
        return keys

    # -- reconcile --------------------------------------------------------------------

    async def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        if key[0] == ROUTE and len(key) == 3:
            await self._reconcile_route(str(key[1]), str(key[2]))
            return None
        ns, name = str(key[0]), str(key[1])
        ep_key = self.ctx.store.keys.endpoints(ns, name)
        current = self.ctx.cache(self.endpoints_prefix).get(ep_key)
        revision = self.ctx.informers[self.endpoints_prefix].revisions.get(ep_key, 0)
        service = self.view.service(ns, name)
        desired = None
        if service is not None:
            tasks = self.view.tasks_of(ns, name)
            nodes = {n: node for n in {t.node for t in tasks} if n
                     for node in [self.view.node(n)] if node is not None}
            desired = desired_endpoints(service, tasks, nodes)
        op = endpoints_op(ns, name, desired, current, revision)
        if op is not None:
            await self._commit(ep_key, op)
        return None

    async def _reconcile_route(self, ns: str, name: str) -> None:
        doc_key = self.ctx.store.keys.route_endpoints(ns, name)
        current = self.ctx.cache(self.endpoints_prefix).get(doc_key)
        revision = self.ctx.informers[self.endpoints_prefix].revisions.get(doc_key, 0)
        route = self._valid_route(ns, name)
        desired = None
        if route is not None:
            names = {svc for _, svc in route_services(route)}
            services = {svc: found for svc in names
                        for found in [self.view.service(ns, svc)] if found is not None}
            tasks = {svc: self.view.tasks_of(ns, svc) for svc in services}
            nodes = {n: node for n in {t.node for ts in tasks.values() for t in ts} if n
                     for node in [self.view.node(n)] if node is not None}
            desired = desired_route(route, services, tasks, nodes)
        op = endpoints_op(ns, name, desired, current, revision)
        if op is not None:
            await self._commit(doc_key, op)

    def _valid_route(self, ns: str, name: str) -> Resource | None:
        """The Route validated (once per resourceVersion); None when absent or invalid
        (written behind the CLI's back: no document, said once in the log)."""
        stored = self.view.route(ns, name)
        key = self.ctx.store.keys.spec("Route", name, ns)
        if stored is None:
            self._routes.pop(key, None)
            return None
        version = stored["metadata"].get("resourceVersion")
        found = self._routes.get(key)
        if found is None or found[0] != version:
            try:
                checked: Resource | None = validate(stored)
            except ApiError as err:
                log.warning("route %s/%s is invalid, so it gets no document: %s", ns, name,
                            str(err).replace("\n", ";"))
                checked = None
            found = self._routes[key] = (version, checked)
        return found[1]

    async def _commit(self, key: str, op: EndpointsOp) -> None:
        compare = (Compare(key, "mod", "==", op.revision) if op.revision
                   else Compare(key, "create", "==", 0))
        write: Put | Delete = (Put(key, encode_endpoints(op.value))
                               if isinstance(op, PutEndpoints) else Delete(key))
        res = await self.ctx.store.etcd.txn([self.ctx.elector.fence(), compare], [write])
        if not res.succeeded:  # the key changed, or we lost the lead (fence() says so next)
            raise Conflict(f"{key} changed since revision {op.revision}")
        if isinstance(op, DeleteEndpoints):
            metrics.WRITES.labels("delete").inc()
            what = "route" if self.ctx.store.keys.parse_route_endpoints(key) else "service"
            log.info("endpoints %s/%s deleted: the %s is gone", op.namespace, op.service, what)
        else:
            metrics.WRITES.labels("put").inc()
            if "endpoints" in op.value:  # a service's document (a Route's lists backends)
                metrics.ENDPOINTS.observe(len(op.value["endpoints"]))
        await self.caught_up(res.revision, {self.endpoints_prefix})
