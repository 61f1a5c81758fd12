"""An in-process agent's configuration on a test etcd, as the node it runs for.

``agent_on(cluster, prefix, node_name, **fields)`` is ``AgentConfig`` on the
cluster's endpoints presenting ``node:<node_name>``'s identity when the cluster
serves TLS (none on a plain one), its etcd user admitted under ``prefix`` when
the cluster has auth (a node's role; a hollow group's with ``hollow_nodes``):
what ``kubeless join`` gives a node. Under auth a node's role may not write
``spec/``: ``register_as_admin`` writes an agent's Nodes as an admin first, as
the join endpoint does before it returns a node's certificate.
"""

from __future__ import annotations

from typing import Any

from kubeless.cluster.etcd_server import EtcdCluster
from kubeless.store import ResourceStore
from kubeless_agent import AgentConfig
from kubeless_agent.registration import register_nodes


def agent_on(cluster: EtcdCluster, prefix: str, node_name: str, **fields: Any) -> AgentConfig:
    hollow = int(fields.get("hollow_nodes") or 0) > 0
    return AgentConfig(endpoints=cluster.endpoints, prefix=prefix, node_name=node_name,
                       tls=cluster.client_tls(f"node:{node_name}", prefix, hollow=hollow),
                       **fields)


async def register_as_admin(admin: ResourceStore, config: AgentConfig) -> None:
    """The Nodes of ``config``'s nodes (one, or its hollow nodes), written through
    ``admin``'s store as the join endpoint writes a joining node's."""
    await register_nodes(admin, config.identities())
