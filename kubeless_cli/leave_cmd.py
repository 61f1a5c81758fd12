"""``kubeless node leave``: this node leaves the cluster on purpose (Swarm's ``swarm leave``).

Run on the node: the node's identity comes from its state dir (``--state-dir``,
``KUBELESS_STATE_DIR``, as ``init``/``join``/``up`` wrote it). A graceful
stop of an agent keeps the node (a restart adopts everything); this is the
explicit way out:

1. refuse a manager without ``--force`` (its controllers leave with it; the
   last manager's leave stops every controller of the cluster);
2. put the leave request (``kubeless_agent.leave``) under the node's own
   agent prefix;
3. a live agent of the node (its heartbeat held and not marked stopped, read before
   the request is put) revokes its lease (the node goes down at once, its tasks are replaced
   elsewhere), removes its containers and exits: wait for its ``leftAt``;
   with no live agent, do the same here: delete the heartbeat (compared to
   what was read) and remove the node's containers with its runtime;
4. forget the node in the state dir (``node.yaml``, ``node-id``), so
   ``kubeless join --state-dir`` does not bring it back.

The node stays listed as Down until ``kubeless node rm``, as in Swarm.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

import click

from kubeless_cli.context import CliError, Context, pass_context
from kubeless_cli.flags import flag
from kubeless.cluster import DEFAULT_STATE_DIR, NodeState, StateDir

POLL = 0.2


@click.command("leave")
@flag("-f", "--force", help="Leave even when this node is a manager (its controllers leave too).")
@click.option("--state-dir", envvar="KUBELESS_STATE_DIR", default=DEFAULT_STATE_DIR,
              show_default=True, help="The node's state dir [env KUBELESS_STATE_DIR].")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for the node's running agent to leave.")
@pass_context
def leave(ctx: Context, force: bool, state_dir: str, timeout: float) -> None:
    """Make the node this host runs leave the cluster (as docker swarm leave).

    The node goes down at once and its tasks are replaced on other nodes;
    its containers on this host are stopped and removed; its running agent
    stops. It stays listed as Down until `kubeless node rm`. A graceful
    stop of the agent (SIGTERM, Ctrl-C) does none of this: a restart within
    the heartbeat TTL keeps every container.
    """
    from kubeless_cli.node_state import cluster_call, explicit, explicit_endpoints

    state = StateDir(state_dir)
    if not cluster_call(state.has_node):
        raise CliError(f"the state dir {state} holds no node: nothing to leave (run this on "
                       "the node, with its --state-dir or KUBELESS_STATE_DIR)")
    node = cluster_call(state.load_node)
    node = replace(node, endpoints=explicit_endpoints(ctx) or node.endpoints,
                   prefix=explicit(ctx, "prefix") or node.prefix)
    rctx = replace(ctx, endpoints=node.endpoints, prefix=node.prefix)
    removed = rctx.run(lambda rstore: _leave(rstore, node, state, force, timeout))
    cluster_call(state.forget_node)
    click.echo(f"Node {node.node_id} left the cluster ({removed} task(s) removed from this "
               f"host). `kubeless node rm {node.node_id}` removes it from `node ls`.")


async def _leave(rstore: Any, node: NodeState, state: StateDir, force: bool,
                 timeout: float) -> int:
    from kubeless_agent.leave import read_request, request_leave

    resource = await rstore.get("Node", node.node_id)
    if resource is None:
        raise CliError(f'node "{node.node_id}" not found in the cluster at {node.endpoints}: '
                       f"it was removed; remove the state dir {state} to join again")
    if (resource.get("spec") or {}).get("role") == "manager" and not force:
        raise CliError(f"node {node.node_id} is a manager: leaving takes its controllers "
                       "out of the cluster (the last manager's leave stops them all); "
                       f"demote it first (kubeless node demote {node.node_id}) or use --force")
    # Liveness is read before the request is put: a live agent that sees the request
    # revokes its heartbeat at once, and a check made after it would take the agent
    # for gone and race it for the containers.
    live = await _agent_is_live(rstore, node.node_id)
    await request_leave(rstore.etcd, rstore.keys, node.node_id)
    if live:
        removed = await _wait_left(rstore, node.node_id, timeout)
        if removed is not None:
            return removed
    value, _ = await read_request(rstore.etcd, rstore.keys, node.node_id)
    if isinstance(value, dict) and value.get("leftAt"):
        return int(value.get("removed") or 0)  # an agent did it meanwhile
    return await _leave_here(rstore, node, state)


async def _agent_is_live(rstore: Any, node_id: str) -> bool:
    kv, _ = await rstore.etcd.get(rstore.keys.heartbeat(node_id))
    if kv is None:
        return False
    from kubeless_agent.heartbeat import stopped_at

    return stopped_at(kv.value) is None


async def _wait_left(rstore: Any, node_id: str, timeout: float) -> int | None:
    """How many tasks the agent removed once it left; None when it stopped gracefully
    before seeing the request (its heartbeat marked stopped): the CLI does it then."""
    from kubeless_agent.heartbeat import stopped_at
    from kubeless_agent.leave import read_request

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value, _ = await read_request(rstore.etcd, rstore.keys, node_id)
        if isinstance(value, dict) and value.get("leftAt"):
            return int(value.get("removed") or 0)
        kv, _ = await rstore.etcd.get(rstore.keys.heartbeat(node_id))
        if kv is not None and stopped_at(kv.value) is not None:
            return None
        await asyncio.sleep(POLL)
    raise CliError(f"the agent of node {node_id} did not leave within {timeout:.0f}s: is it "
                   "stuck? Its leave request stays: stop it, then run `kubeless node leave` "
                   "again")


async def _leave_here(rstore: Any, node: NodeState, state: StateDir) -> int:
    """No live agent: the node goes down now, and its containers go with this CLI."""
    from kubeless.store import Compare, Delete
    from kubeless_agent.leave import mark_done, remove_all, remove_mesh_table
    from kubeless_agent.worker import stop_grace

    key = rstore.keys.heartbeat(node.node_id)
    kv, _ = await rstore.etcd.get(key)
    if kv is not None:  # a stopped agent's, left to its TTL
        await rstore.etcd.txn([Compare(key, "mod", "==", kv.mod_revision)], [Delete(key)])
    runtime = _runtime(node, state)
    assigned, _ = await rstore.etcd.list_prefix(rstore.keys.agent(node.node_id) + "assignments/")
    graces = {kv.key.rsplit("/", 1)[-1]: stop_grace(_json(kv.value)) for kv in assigned}
    try:
        removed = await remove_all(runtime, graces)
    finally:
        await runtime.close()
    await remove_mesh_table(node.node_id)
    await mark_done(rstore.etcd, rstore.keys, node.node_id, removed)
    return removed


def _runtime(node: NodeState, state: StateDir) -> Any:
    from kubeless_cli.node_process import node_runtime

    try:
        return node_runtime(node, state)
    except Exception as err:  # noqa: BLE001 - any reason is the user's to read
        raise CliError(f"node {node.node_id} is down, but its {node.runtime} runtime cannot "
                       f"start here to remove its containers: {err}") from None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
