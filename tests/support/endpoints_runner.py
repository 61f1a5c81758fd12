"""The endpoints controller in a runner of its own, on a hollow cluster, and reading
what it writes: services' documents (``endpoints/<ns>/<svc>``) and Routes'
(``endpoints/_routes/<ns>/<route>``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from controllers.endpoints.controller import EndpointsController
from controllers.framework import ControllerRunner
from kubeless import store
from lab.hollow import HollowCluster
from lab.waiting import until

Resource = dict[str, Any]


class Endpoints:
    def __init__(self, cluster: HollowCluster) -> None:
        self.cluster = cluster
        self.store = store.connect(cluster.endpoints, cluster.prefix,
                                   tls=cluster.tls("manager:endpoints-test"))
        self.controller = EndpointsController(self.store)
        self.runner = ControllerRunner(self.store, [self.controller], "endpoints-test",
                                       lease_ttl=2)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        task = self.task = asyncio.create_task(self.runner.run(), name="endpoints runner")
        await until(lambda: self.runner.elector("endpoints").is_leader or task.done(),
                    15, "endpoints controller leads")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.store.etcd.close()

    def _check_alive(self) -> None:
        if self.task is not None and self.task.done():
            self.task.result()  # the runner's error, raised in the test

    async def read(self, name: str, ns: str = "default") -> tuple[Resource | None, int]:
        """A service's document and its key's version ((None, 0): no key)."""
        kv, _ = await self.cluster.store.etcd.get(self.cluster.store.keys.endpoints(ns, name))
        return (json.loads(kv.value), kv.version) if kv is not None else (None, 0)

    async def wait(self, name: str, count: int, timeout: float = 20) -> Resource:
        """Until the service's document lists ``count`` endpoints."""
        async def check() -> Resource | None:
            self._check_alive()
            doc, _ = await self.read(name)
            return doc if doc is not None and len(doc["endpoints"]) == count else None
        found: Resource = await until(check, timeout, f"{count} endpoints of {name}")
        return found

    def reconciles(self) -> int:
        return self.runner.stats("endpoints").reconciles

    async def idle(self, before: int) -> None:
        """Until the controller has reconciled since ``before`` and its queue is empty."""
        stats = self.runner.stats("endpoints")
        await until(lambda: stats.reconciles > before, 10, "a reconcile")
        state = self.runner.states["endpoints"]
        await until(lambda: state.queue is not None and state.queue.len() == 0
                    and state.queue.processing == 0, 10, "endpoints queue drained")

    async def read_route(self, name: str, ns: str = "default") -> Resource | None:
        kv, _ = await self.cluster.store.etcd.get(
            self.cluster.store.keys.route_endpoints(ns, name))
        found: Resource | None = json.loads(kv.value) if kv is not None else None
        return found

    async def wait_up(self, name: str, up: dict[str, int], timeout: float = 20) -> Resource:
        """Until the Route's document lists ``up`` endpoints per backend service."""
        async def check() -> Resource | None:
            self._check_alive()
            doc = await self.read_route(name)
            if doc is None:
                return None
            found = {b["service"]: len(b["endpoints"]) for b in doc["backends"]}
            return doc if found == up else None
        doc: Resource = await until(check, timeout, f"route {name} with {up} up")
        return doc
