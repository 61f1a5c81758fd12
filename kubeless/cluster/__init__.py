"""Cluster bootstrap: what ``kubeless init``, ``join`` and ``join-token`` rest on.

    tokens     join tokens in Swarm's SWMTKN-1 format, and the hashes etcd keeps
    ca         the root CA on disk (ca.key, ca.crt) and its digest's input
    pki        keys, requests and certificates (the cryptography package): the CA
               signs; etcd's own certificates; identities in DOCKER_CERT_PATH layout
    identities the namespaced common names: node:<id>, manager:<id>, admin:<name>
    node_tls   TLS to a node's own servers (logs): the server requiring client
               certificates from the cluster CA, the client verifying the node
    record     the cluster record at ``<prefix>/v1/cluster`` and token checks
    state      the node's state dir (identity, plain tokens, CA key)
    bootstrap  create, join, resume and rotate, against etcd; the plain tokens
               etcd keeps for managers and admins
    join_server  the join endpoint a manager serves (Swarm's 2377): GET /ca, POST /join
               (token -> Node registered with ``bootstrap``, certificates signed);
               its address kept in etcd while it serves
    join_client  ``kubeless join --token T HOST:PORT``: pin the CA by the token's
               digest, send requests for keys made here, keep what comes back
    etcd_server  a local etcd: start Debian's etcd on loopback ports, wait, stop
               (``kubeless up``, the tests' fixtures, the benchmarks)
    errors     what a user can get wrong

Layer: above ``kubeless.store``, below ``kubeless_cli``; it never imports the
agent or the controllers (the CLI runs those).

Not here yet (the rest of issue 14): nodes that join through a manager's
join endpoint receive their identities (``tls/``, and ``manager-tls/`` and the
CA key for a manager), but nothing uses them yet: etcd is still reached as
before, and certificates are not renewed.
"""

from .errors import (CAError, ClusterError, ClusterExists, EtcdError, NoCluster, NodeNameTaken,
                     StateDirError, TokenMalformed, TokenRefused)
from .record import ClusterRecord
from .state import DEFAULT_STATE_DIR, NodeState, StateDir
from .tokens import JoinToken, parse_token

__all__ = ["CAError", "ClusterError", "ClusterExists", "ClusterRecord", "DEFAULT_STATE_DIR",
           "EtcdError", "JoinToken", "NoCluster", "NodeNameTaken", "NodeState", "StateDir",
           "StateDirError", "TokenMalformed", "TokenRefused", "parse_token"]
