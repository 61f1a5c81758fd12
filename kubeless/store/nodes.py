"""Reading nodes together with their heartbeats, and who manages the cluster.

Used by the CLI (``node ls``) and anything else that wants nodes as users
see them; controllers get the same view from their informers.
"""

from __future__ import annotations

from typing import Any

from kubeless.api.nodes import with_heartbeat

from .agents import agent_records
from .resources import ListResult, ResourceStore


async def list_nodes(rstore: ResourceStore) -> ListResult:
    """Every Node with status merged from its heartbeat (down when none)."""
    result = await rstore.list("Node")
    beats = await heartbeats(rstore, result.revision)
    result.items = [with_heartbeat(n, beats.get(n["metadata"]["name"])) for n in result.items]
    return result


async def heartbeats(rstore: ResourceStore, revision: int = 0) -> dict[str, dict[str, Any]]:
    """node id -> heartbeat, for every live agent."""
    return {node: value for node, (_, value) in
            (await agent_records(rstore, "heartbeat", revision)).items()}


async def manager_state(rstore: ResourceStore) -> tuple[set[str], set[str]]:
    """(identities leading some controller, identities with a live controllers process)."""
    leaders_kvs, _ = await rstore.etcd.list_prefix(rstore.keys.root + "leaders/")
    managers_kvs, _ = await rstore.etcd.list_prefix(rstore.keys.root + "managers/")
    leaders = {kv.value.decode(errors="replace").strip() for kv in leaders_kvs}
    live = {kv.key.rsplit("/", 1)[-1] for kv in managers_kvs}
    return leaders, live
