"""Which nodes are ready, and at which address, for the DNS answers (a light way).

The node list comes from an informer on ``spec/nodes/`` (small, rarely
changing). Readiness is a node's heartbeat key (``agents/<id>/heartbeat``,
docs/MODEL.md), read every ``interval`` seconds with ONE transaction of
single-key gets per 100 nodes: an agent never watches ``agents/``, where
every task report of the cluster changes. The heartbeat's address wins
over the Node's last-seen one.

``ready_nodes`` is the pure part: heartbeats found and Node resources ->
{node id: address}.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kubeless.store import Etcd, Informer, KeyValue, Keyspace, StoreError
from kubeless.store.codec import decode

log = logging.getLogger(__name__)

BATCH = 100


def ready_nodes(nodes: Mapping[str, Any], heartbeats: Mapping[str, Any]) -> dict[str, str]:
    """node id -> address, for every node whose heartbeat exists (a node's last-seen
    address when the heartbeat has none)."""
    ready = {}
    for node_id, beat in heartbeats.items():
        node = nodes.get(node_id) or {}
        address = (beat or {}).get("address") if isinstance(beat, dict) else None
        address = address or ((node.get("status") or {}).get("address"))
        if address:
            ready[node_id] = str(address)
    return ready


class ReadyNodes:
    """Keeps ``on_change(ready)`` told of the ready nodes, polling their heartbeats."""

    def __init__(self, etcd: Etcd, keys: Keyspace, on_change: Callable[[dict[str, str]], None],
                 *, interval: float = 3.0) -> None:
        self.etcd = etcd
        self.keys = keys
        self.on_change = on_change
        self.interval = interval
        self.informer = Informer(etcd, keys.kind_prefix("Node"), _decode)
        self.ready: dict[str, str] = {}

    def nodes(self) -> dict[str, Any]:
        return {str(k).rsplit("/", 1)[1]: v for k, v in self.informer.cache.items()}

    async def poll(self) -> dict[str, str]:
        nodes = self.nodes()
        ids = sorted(nodes)
        beats: dict[str, Any] = {}
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            found, _ = await self.etcd.get_many([self.keys.heartbeat(n) for n in chunk])
            for node_id in chunk:
                kv = found.get(self.keys.heartbeat(node_id))
                if kv is not None:
                    beats[node_id] = _json(kv.value)
        self.ready = ready_nodes(nodes, beats)
        self.on_change(self.ready)
        return self.ready

    async def run(self) -> None:
        informer = asyncio.ensure_future(self.informer.run())
        try:
            await self.informer.synced.wait()
            while True:
                try:
                    await self.poll()
                except StoreError as err:
                    log.debug("reading heartbeats: %s", err)
                await asyncio.sleep(self.interval)
        finally:
            informer.cancel()
            await asyncio.gather(informer, return_exceptions=True)


def _decode(kv: KeyValue) -> Any:
    return decode(kv.key, kv.value)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return {}
