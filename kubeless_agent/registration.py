"""Registration: create each local node's Node resource when it is absent.

The agent only creates ``spec/nodes/<id>``; once it exists, users own it
(availability, labels, role), so AlreadyExists is success and the existing
resource is left as it is. While etcd does not answer, registration waits
and tries again: an agent may start before its etcd.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from kubeless.store import AlreadyExists, Conflict, ResourceStore, Unavailable

from kubeless_agent.identity import NodeIdentity

log = logging.getLogger(__name__)


async def register_node(store: ResourceStore, ident: NodeIdentity, *,
                        backoff_max: float = 2.0) -> bool:
    """Create the Node resource if absent; True when this call created it."""
    delay = 0.1
    while True:
        try:
            await store.create(ident.node_resource())
        except AlreadyExists:
            await _refresh_last_seen(store, ident)
            return False
        except Unavailable as err:
            log.warning("registering node %s: %s; retrying", ident.node_id, err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff_max)
            continue
        log.info("registered node %s", ident.node_id)
        return True


async def _refresh_last_seen(store: ResourceStore, ident: NodeIdentity) -> None:
    """Keep the stored hostname and address current (users own everything else)."""
    for _ in range(3):
        node = await store.get("Node", ident.node_id)
        if node is None or {**(node.get("status") or {}), **ident.last_seen()} == node.get("status"):
            return
        node["status"] = {**(node.get("status") or {}), **ident.last_seen()}
        try:
            await store.update(node)
            return
        except Conflict:
            continue


async def register_nodes(store: ResourceStore, idents: Sequence[NodeIdentity], *,
                         concurrency: int = 64) -> int:
    """Register many nodes (hollow nodes) with bounded concurrency; how many were created."""
    gate = asyncio.Semaphore(concurrency)

    async def one(ident: NodeIdentity) -> bool:
        async with gate:
            return await register_node(store, ident)

    results = await asyncio.gather(*(one(i) for i in idents))
    return sum(results)
