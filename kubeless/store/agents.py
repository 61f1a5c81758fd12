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
    kvs, _ = await rstore.etcd.list_prefix(rstore.keys.agents_prefix(), revision=revision)
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for kv in kvs:
        parsed = rstore.keys.parse_agent(kv.key)
        if parsed is None or parsed.sort != sort or \
                (parsed.task_id is None) != (sort == "heartbeat"):
            continue
        try:
            value = decode(kv.key, kv.value)
        except CorruptValue:
            continue
        if isinstance(value, dict):
            found[parsed.task_id or parsed.node] = (parsed.node, value)
    return found
