"""Which nodes are ready, and at which address, for the DNS answers.

A node is ready while its heartbeat key exists (``heartbeats/<id>``,
docs/MODEL.md), and the heartbeat says the node's ``address``: one informer on
``heartbeats/`` is all DNS reads (a node's etcd role may read every heartbeat,
never ``spec/nodes/``). It is light: a heartbeat changes only when its agent
puts it again (a start, a stop, a runtime or DNS state change), never on the
lease's keep-alives; an agent never watches ``agents/``, where every task
report of the cluster changes.

``ready_address`` and ``ready_nodes`` are the pure part: heartbeats ->
{node id: address}.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kubeless.store import Etcd, Informer, KeyValue, Keyspace
from kubeless.store.codec import decode

log = logging.getLogger(__name__)


def ready_address(heartbeat: Any) -> str | None:
    """The address a heartbeat says (None: not a heartbeat DNS can answer with)."""
    address = heartbeat.get("address") if isinstance(heartbeat, dict) else None
    return str(address) if address else None


def ready_nodes(heartbeats: Mapping[str, Any]) -> dict[str, str]:
    """node id -> address, for every node whose heartbeat exists and says one."""
    ready = {}
    for node_id, beat in heartbeats.items():
        address = ready_address(beat)
        if address:
            ready[node_id] = address
    return ready


class ReadyNodes:
    """Keeps ``on_change(ready)`` told of the ready nodes, from an informer on ``heartbeats/``."""

    def __init__(self, etcd: Etcd, keys: Keyspace,
                 on_change: Callable[[dict[str, str]], None]) -> None:
        self.keys = keys
        self.on_change = on_change
        self.informer = Informer(etcd, keys.heartbeats_prefix(), _decode)
        self.informer.add_handler(self._on_heartbeat)
        self.ready: dict[str, str] = {}

    def _on_heartbeat(self, key: str, old: Any, new: Any) -> None:
        node_id = self.keys.parse_heartbeat(key)
        if node_id is None:
            return
        address = ready_address(new)
        if address == self.ready.get(node_id):
            return
        if address:
            self.ready[node_id] = address
        else:
            self.ready.pop(node_id, None)
        if self.informer.synced.is_set():  # the first listing is told once, when synced
            self.on_change(dict(self.ready))

    async def run(self) -> None:
        informer = asyncio.ensure_future(self.informer.run())
        try:
            await self.informer.synced.wait()
            self.on_change(dict(self.ready))
            await informer
        finally:
            informer.cancel()
            await asyncio.gather(informer, return_exceptions=True)


def _decode(kv: KeyValue) -> Any:
    return decode(kv.key, kv.value)
