"""Reading what agents write: heartbeats (``heartbeats/<node>``) and task reports
(``agents/<node>/tasks/<task>``).

Both the CLI and tests read these the same way: every record of one sort,
decoded, keyed by node id (heartbeats) or task id (reports). Values that do
not decode are skipped: an agent's bad write must not hide the others.
"""

from __future__ import annotations

from typing import Any

from .codec import decode
from .errors import CorruptValue
from .etcd import KeyValue
from .resources import ResourceStore


async def agent_records(rstore: ResourceStore, sort: str,
                        revision: int = 0) -> dict[str, tuple[str, dict[str, Any]]]:
    """``sort`` "heartbeat": node id -> (node, value); "tasks": task id -> (node, value)."""
    if sort == "heartbeat":
        kvs, _ = await rstore.etcd.list_prefix(rstore.keys.heartbeats_prefix(), revision=revision)
        beats = ((rstore.keys.parse_heartbeat(kv.key), kv) for kv in kvs)
        return {node: (node, value) for node, kv in beats
                if node is not None and (value := _mapping(kv)) is not None}
    kvs, _ = await rstore.etcd.list_prefix(rstore.keys.agents_prefix(), revision=revision)
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for kv in kvs:
        parsed = rstore.keys.parse_agent(kv.key)
        if parsed is None or parsed.sort != sort or parsed.task_id is None:
            continue
        value = _mapping(kv)
        if value is not None:
            found[parsed.task_id] = (parsed.node, value)
    return found


def _mapping(kv: KeyValue) -> dict[str, Any] | None:
    """The value as a mapping; None when it does not decode to one."""
    try:
        value = decode(kv.key, kv.value)
    except CorruptValue:
        return None
    return value if isinstance(value, dict) else None
