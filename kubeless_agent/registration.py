"""Registration: create each local node's Node resource when it is absent.

The agent only creates ``spec/nodes/<id>``; once it exists, users own it
(availability, labels, role), so AlreadyExists is success and the existing
resource is left as it is. While etcd does not answer, registration waits
and tries again: an agent may start before its etcd.

With etcd auth on, a node's credentials may not read or write ``spec/``
(``kubeless.cluster.permissions``): its Node is registered by whoever admitted
it (the join endpoint, ``init``, both as a manager). A refusal (``Forbidden``)
is therefore no failure: the agent logs one line and goes on without it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from kubeless.store import AlreadyExists, Conflict, Forbidden, ResourceStore, Unavailable

from kubeless_agent.identity import NodeIdentity

log = logging.getLogger(__name__)


async def register_node(store: ResourceStore, ident: NodeIdentity, *,
                        backoff_max: float = 2.0) -> bool:
    """Create the Node resource if absent; True when this call created it (False: it
    existed, or this node's etcd role may not touch it)."""
    delay = 0.1
    while True:
        try:
            await store.create(ident.node_resource())
        except AlreadyExists:
            await _refresh_last_seen(store, ident)
            return False
        except Forbidden as err:
            log.info("not registering %s from this agent (%s): whoever admitted the node "
                     "registers it", store.keys.spec("Node", ident.node_id), err)
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
    try:
        await _update_last_seen(store, ident)
    except Forbidden as err:
        log.info("node %s: its Node's last-seen address is not this node's to update "
                 "(%s)", ident.node_id, err)


async def _update_last_seen(store: ResourceStore, ident: NodeIdentity) -> None:
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
