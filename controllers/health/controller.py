"""The health controller's asyncio half: one queue key per node.

Events map to nodes: a node's spec or heartbeat, and a task change on a
node only when it can matter (``_task_matters``); every node that is down
maps to one key, ``DOWN_KEY``. A node is down when its heartbeat key is
gone (the agent's lease expired or was revoked), so a brief blip shorter
than the lease TTL changes nothing. Reconcile of ``DOWN_KEY`` orphans the live tasks of every down
(or removed) node at once; reconcile of a node: down orphans its live tasks;
ready shuts down the stale tasks it still runs; drained shuts down its
tasks so replication moves them elsewhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Any

from kubeless.api.nodes import DOWN, READY
from kubeless.store import ResourceStore

from controllers.base import ViewController
from controllers.health.decide import drain, orphan_tasks, shutdown_stale
from controllers.ops import Op
from controllers.view import ClusterView


# The queue key of every down (or removed) node: a lost rack (100 nodes of one lease)
# is orphaned in one reconcile, its writes batched into a few transactions, so the
# informers and replication see a handful of changes instead of one per node.
DOWN_KEY = ("down nodes",)


class HealthController(ViewController):
    name = "health"
    workers = 16  # node keys touch disjoint tasks

    def __init__(self, store: ResourceStore, view: ClusterView | None = None) -> None:
        super().__init__(store, view)

    def keys_for_event(self, key: str, old: Any, new: Any) -> Iterable[Hashable]:
        view = self.view
        if key.startswith(view.nodes_prefix):
            ref = self.ctx.store.keys.parse(key)
            if ref is not None:
                yield self._key_of(ref.name)
        elif key.startswith(view.heartbeats_prefix):
            node = self.ctx.store.keys.parse_heartbeat(key)
            if node is not None:
                yield self._key_of(node)
        elif key.startswith(view.tasks_prefix):
            for task in (old, new):
                node = ((task or {}).get("spec") or {}).get("nodeName")
                if node and self._task_matters(node, task):
                    yield self._key_of(node)

    def _key_of(self, name: str) -> Hashable:
        """``DOWN`` for a node that is down or gone, else the node's name."""
        node = self.view.node(name)
        return DOWN_KEY if node is None or node["status"].get("state") == DOWN else name

    def _task_matters(self, name: str, task: Any) -> bool:
        """Whether a task change on node ``name`` can give the node's reconcile something
        to do: the node is down, gone, not ready or drained, or the task was orphaned
        (a ready node shuts those down). A task placed on, or running on, a healthy
        node changes nothing here, so 10,000 placements are not 10,000 reconciles."""
        node = self.view.node(name)
        if node is None or node["status"].get("state") != READY or \
                (node.get("spec") or {}).get("availability") == "drain":
            return True
        return bool(((task or {}).get("status") or {}).get("state") == "orphaned")

    def resync_keys(self) -> Iterable[Hashable]:
        names = {n["metadata"]["name"] for n in self.view.caches[self.view.nodes_prefix].values()}
        names.update(self.view.tasks_by_node)
        return {self._key_of(name) for name in names}

    async def reconcile(self, key: Hashable) -> float | None:
        if key == DOWN_KEY:
            await self.apply(self._orphan_all())
            return None
        name = str(key)
        tasks = self.view.tasks_on(name)
        node = self.view.node(name)
        if node is None:  # removed: nothing will ever run there again
            node = {"metadata": {"name": name}, "spec": {}, "status": {"state": DOWN}}
        ops: list[Op]
        if node["status"].get("state") == DOWN:
            ops = orphan_tasks(node, tasks, self.now())
            self._record_down(name, ops)
        else:
            ops = shutdown_stale(node, tasks)
            if node["spec"].get("availability") == "drain":
                ops += drain(node, tasks)
        await self.apply(ops)
        return None

    def _orphan_all(self) -> list[Op]:
        """Orphan the live tasks of every node that is down or gone, in one go, grouped
        by service: each service's orphans land in as few transactions as may be, so
        replication sees them together and replaces them in one pass."""
        ops: list[Op] = []
        now = self.now()
        for name in sorted(self.view.tasks_by_node):
            node = self.view.node(name)
            if node is None:
                node = {"metadata": {"name": name}, "spec": {}, "status": {"state": DOWN}}
            if node["status"].get("state") == DOWN:
                orphaned = orphan_tasks(node, self.view.tasks_on(name), now)
                self._record_down(name, orphaned)
                ops += orphaned
        return sorted(ops, key=_service_of)

    def _record_down(self, node: str, orphaned: list[Op]) -> None:
        """Events: the node is down, and each service whose tasks it orphans."""
        if not orphaned:
            return
        self.ctx.events.warning(kind="Node", name=node, reason="NodeDown",
                                message=f"no heartbeat: {len(orphaned)} task(s) orphaned")
        per_service = Counter(_service_of(op) for op in orphaned)
        for (ns, service), count in sorted(per_service.items()):
            self.ctx.events.warning(kind="Service", name=service, namespace=ns,
                                    reason="TasksOrphaned",
                                    message=f"{count} task(s) on down node {node} orphaned: "
                                            "replaced elsewhere")


def _service_of(op: Op) -> tuple[str, str]:
    task = getattr(op, "task", None) or {}
    return (str((task.get("metadata") or {}).get("namespace") or "default"),
            str((task.get("spec") or {}).get("serviceName") or ""))
