"""The health controller's asyncio half: one queue key per node.

A node is down when its heartbeat key is gone (the agent's lease expired
or was revoked), so a brief blip shorter than the lease TTL changes
nothing. Reconcile of a node: down (or removed) orphans its live tasks;
ready shuts down the stale tasks it still runs; drained shuts down its
tasks so replication moves them elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable
from typing import Any

from kubeless.api.nodes import DOWN
from kubeless.store import ResourceStore

from controllers.base import ViewController
from controllers.health.decide import drain, orphan_tasks, shutdown_stale
from controllers.ops import Op


class HealthController(ViewController):
    name = "health"
    workers = 16  # node keys touch disjoint tasks; a lost rack is reconciled in parallel

    def __init__(self, store: ResourceStore, clock: Any = time.time) -> None:
        super().__init__(store)
        self.now = clock

    def keys_for_event(self, key: str, old: Any, new: Any) -> Iterable[Hashable]:
        view = self.view
        if key.startswith(view.nodes_prefix):
            ref = self.ctx.store.keys.parse(key)
            if ref is not None:
                yield ref.name
        elif key.startswith(view.agents_prefix):
            parts = view.agent_key_parts(key)
            if parts is not None and parts[1] == "heartbeat":
                yield parts[0]
        elif key.startswith(view.tasks_prefix):
            for task in (old, new):
                node = ((task or {}).get("spec") or {}).get("nodeName")
                if node:
                    yield node

    def resync_keys(self) -> Iterable[Hashable]:
        names = {n["metadata"]["name"] for n in self.view.caches[self.view.nodes_prefix].values()}
        names.update(self.view.tasks_by_node)
        return names

    async def reconcile(self, key: Hashable) -> float | None:
        name = str(key)
        tasks = self.view.tasks_on(name)
        node = self.view.node(name)
        if node is None:  # removed: nothing will ever run there again
            node = {"metadata": {"name": name}, "spec": {}, "status": {"state": DOWN}}
        ops: list[Op]
        if node["status"].get("state") == DOWN:
            ops = orphan_tasks(node, tasks, self.now())
        else:
            ops = shutdown_stale(node, tasks)
            if node["spec"].get("availability") == "drain":
                ops += drain(node, tasks)
        await self.apply(ops)
        return None
