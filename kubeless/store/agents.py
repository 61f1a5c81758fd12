"""Reading what agents write under ``agents/<node>/``: heartbeats and task reports.

Both the CLI and tests read these the same way: every key of one sort,
decoded, keyed by node id (heartbeats) or task id (reports). Values that do
not decode are skipped: an agent's bad write must not hide the others.
"""

from __future__ import annotations

from typing import Any

from .codec import decode
from .errors import CorruptValue
from .resources import ResourceStore


async def agent_records(rstore: ResourceStore, sort: str,
                        revision: int = 0) -> dict[str, tuple[str, dict[str, Any]]]:
    """``sort`` "heartbeat": node id -> (node, value); "tasks": task id -> (node, value)."""
    prefix = rstore.keys.root + "agents/"
    kvs, _ = await rstore.etcd.list_prefix(prefix, revision=revision)
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for kv in kvs:
        parts = kv.key[len(prefix):].split("/")
        if parts[1:2] != [sort] or len(parts) != (2 if sort == "heartbeat" else 3):
            continue
        try:
            value = decode(kv.key, kv.value)
        except CorruptValue:
            continue
        if isinstance(value, dict):
            found[parts[-1] if sort == "tasks" else parts[0]] = (parts[0], value)
    return found
