"""An in-process agent's configuration on a test etcd, as the node it runs for.

``agent_on(cluster, prefix, node_name, **fields)`` is ``AgentConfig`` on the
cluster's endpoints presenting ``node:<node_name>``'s identity when the cluster
serves TLS (none on a plain one), its etcd user admitted with its role under
``prefix`` when the cluster has auth: what ``kubeless join`` gives a node. As the
join endpoint does, whoever admits a node registers its Node: ``register_as_admin``.
"""

from __future__ import annotations

from typing import Any

from kubeless.cluster.etcd_server import EtcdCluster
from kubeless_agent import AgentConfig


def agent_on(cluster: EtcdCluster, prefix: str, node_name: str, **fields: Any) -> AgentConfig:
    return AgentConfig(endpoints=cluster.endpoints, prefix=prefix, node_name=node_name,
                       tls=cluster.client_tls(f"node:{node_name}", prefix), **fields)
