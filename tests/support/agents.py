"""An agent on a test etcd, as the node it runs for: what ``kubeless join`` gives it.

``agent_on(cluster, prefix, node_name, **fields)`` is ``AgentConfig`` on the
cluster's endpoints presenting ``node:<node_name>``'s identity when the cluster
serves TLS (none on a plain one). With etcd's auth on, it does what the join
endpoint does before it returns a node's certificate: the node's etcd user with
its role under ``prefix`` (a hollow group's with ``hollow_nodes``), and its
Nodes written by an admin (a node's role may not write ``spec/``). On an etcd
without auth the agent registers its Node itself, as it does there.
``agent_flags`` is the same for an agent run as a process: its etcd flags.
``joined_agent_config`` is a joined node's: its identity (server usage, its address
as SAN) in ``<state-dir>/tls/``, so it serves logs and exec over TLS only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from kubeless.cluster import NodeState, StateDir, pki
from kubeless.cluster.etcd_server import EtcdCluster
from kubeless.store import Etcd, Keyspace, ResourceStore
from kubeless_agent import AgentConfig
from kubeless_agent.registration import register_nodes


def agent_on(cluster: EtcdCluster, prefix: str, node_name: str, **fields: Any) -> AgentConfig:
    config = AgentConfig(endpoints=cluster.endpoints, prefix=prefix, node_name=node_name,
                         tls=cluster.client_tls(f"node:{node_name}", prefix,
                                                hollow=_hollow(fields)), **fields)
    if cluster.auth:
        async def register(etcd: Etcd) -> None:
            await register_nodes(ResourceStore(etcd, Keyspace(prefix)), config.identities())
        cluster.as_admin(register)
    return config


def agent_flags(cluster: EtcdCluster, prefix: str, node_name: str, **fields: Any) -> list[str]:
    """``--endpoints`` and the identity's ``--cacert/--cert/--key`` of a ``kubeless_agent``
    process for ``node_name`` (``fields``: its AgentConfig's, hollow_nodes, labels,
    advertise_addr...), joined as ``agent_on`` joins it."""
    agent_on(cluster, prefix, node_name, **fields)
    return cluster.client_flags(f"node:{node_name}", prefix, hollow=_hollow(fields))


def _hollow(fields: dict[str, Any]) -> bool:
    return int(fields.get("hollow_nodes") or 0) > 0


def joined_agent_config(cluster: EtcdCluster, prefix: str, node: str, state_dir: Path,
                        runtime: str = "process", **fields: Any) -> AgentConfig:
    """A joined node's agent (no mesh, no DNS): its identity in ``<state_dir>/tls/`` as
    ``join`` writes it, picked up from there (``AgentConfig.from_node_state``)."""
    assert cluster.ca is not None
    state = StateDir(state_dir)
    pki.issue_identity(cluster.ca, state.path / "tls",
                       pki.Profile(f"node:{node}", ("127.0.0.1",), pki.USAGES))
    stored = NodeState(cluster_id="c1", node_id=node, role="worker",
                       endpoints=cluster.endpoints, prefix=prefix, runtime=runtime,
                       advertise_addr="127.0.0.1")
    config = replace(AgentConfig.from_node_state(stored, state), heartbeat_ttl=3, mesh=False,
                     dns_addrs=(), **fields)
    assert config.server_tls is not None and config.tls is not None
    return config
