"""Leaving the cluster on purpose: ``kubeless node leave`` (Swarm's ``swarm leave``).

A graceful stop of an agent leaves its node ready for a TTL so that a
restart adopts everything; leaving is the explicit other way. The request
is one key under the node's own prefix, ``agents/<id>/leave``, which its
agent already watches:

    {"requestedAt": ..., "by": "kubeless node leave"}             the CLI puts it
    {"requestedAt": ..., "by": ..., "leftAt": ..., "removed": N}  once done

The node's agent, seeing the request, stops its workers, revokes its
heartbeat lease (the node goes down at once; health orphans its tasks and
replication replaces them elsewhere), stops and removes the containers (or
processes) of this node and every file of their secrets and configs, its
tmpfs unmounted (``remove_all``), deletes the kernel mesh's nftables table and
its DOCKER-USER rule (``remove_mesh_table``), records ``leftAt`` and exits.
When no agent of the node runs, the CLI does the same itself with the
node's runtime. The key stays as the node's tombstone: an agent started
for a node that left refuses to start (``errors.NodeLeft``, with
``left_message``) until ``kubeless node rm`` removes the node (and the
key) and the host joins again.

Every write compares what it read. Deciding who may leave (a manager
needs ``--force``) and the state dir are the CLI's business.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kubeless.store import Compare, Etcd, Keyspace, Put
from kubeless.store.codec import encode_json
from kubeless.store.resources import now_rfc3339

from kubeless_agent.mesh.kernel import remove_table
from kubeless_agent.mesh.kernel_host import NftError, NftHost
from kubeless_agent.runtime import Runtime
from kubeless_agent.worker import DEFAULT_GRACE

log = logging.getLogger(__name__)


def left_message(node_id: str) -> str:
    return (f"node {node_id} left the cluster (kubeless node leave): remove it with "
            f"`kubeless node rm {node_id}`, then join again with a token")


def leave_request(now: str) -> dict[str, Any]:
    return {"requestedAt": now, "by": "kubeless node leave"}


def is_done(value: Any) -> bool:
    return isinstance(value, dict) and bool(value.get("leftAt"))


async def request_leave(etcd: Etcd, keys: Keyspace, node_id: str) -> None:
    """Put the request unless one is there already (a second ``leave`` waits on the first)."""
    key = keys.leave(node_id)
    await etcd.txn([Compare(key, "create", "==", 0)],
                   [Put(key, encode_json(leave_request(now_rfc3339())))])


async def read_request(etcd: Etcd, keys: Keyspace, node_id: str) -> tuple[Any, int]:
    """(the request's value, its mod revision); (None, 0) when there is none."""
    kv, _ = await etcd.get(keys.leave(node_id))
    if kv is None:
        return None, 0
    try:
        return json.loads(kv.value), kv.mod_revision
    except ValueError:
        return {}, kv.mod_revision


async def left_nodes(etcd: Etcd, keys: Keyspace, node_ids: Sequence[str]) -> list[str]:
    """Which of ``node_ids`` left the cluster (an agent must not start for them)."""
    found, _ = await etcd.get_many([keys.leave(n) for n in node_ids])
    return [n for n in node_ids if keys.leave(n) in found]


async def mark_done(etcd: Etcd, keys: Keyspace, node_id: str, removed: int) -> None:
    """Record that the node left, on the request as it was read."""
    value, revision = await read_request(etcd, keys, node_id)
    if not revision:
        return
    done = {**(value if isinstance(value, dict) else {}), "leftAt": now_rfc3339(),
            "removed": removed}
    key = keys.leave(node_id)
    await etcd.txn([Compare(key, "mod", "==", revision)], [Put(key, encode_json(done))])


async def remove_all(runtime: Runtime, graces: Mapping[str, float] | None = None) -> int:
    """Stop (each task's grace period, all at once) and remove everything ``runtime``
    holds for its node, then its tasks' files (the tmpfs unmounted); how many tasks.
    A failure is logged, never raised."""
    held = [tid for tid, _ in await runtime.list()]

    async def one(tid: str) -> None:
        task = {"metadata": {"name": tid}}
        try:
            await runtime.stop(task, (graces or {}).get(tid, DEFAULT_GRACE))
            await runtime.remove(task)
        except Exception as err:  # noqa: BLE001 - one task's failure is not the others'
            log.warning("leaving: could not remove task %s: %s", tid, err)

    await asyncio.gather(*(one(t) for t in held))
    try:
        await asyncio.to_thread(runtime.files.remove_all)
    except OSError as err:
        log.warning("leaving: could not remove the tasks' secrets and configs: %s", err)
    return len(held)


async def remove_mesh_table(node_id: str, host: NftHost | None = None) -> None:
    """Delete the node's kernel mesh table and its DOCKER-USER rule, if there are any
    (nothing where nft is absent). A failure is logged, never raised."""
    host = host or NftHost()
    if await asyncio.to_thread(host.probe) is not None:
        return
    try:
        await asyncio.to_thread(remove_table, host, node_id)
    except NftError as err:
        log.warning("leaving: could not remove the mesh's nftables table: %s", err)
