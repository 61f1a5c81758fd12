"""Bootstrap against etcd: make a cluster, check and spend join tokens, rotate them.

    new_cluster_ca    a new cluster's id and root CA in the state dir, made before
                      its etcd when that etcd serves certificates from it (``up``)
    create_cluster    init: a root CA in the state dir (or the one new_cluster_ca
                      made), a worker and a manager token, the cluster record and
                      the first manager's Node, in ONE transaction that compares
                      the record is absent
    join_cluster      join: check the token against the record, then create the
                      Node with the role it grants, in one transaction that
                      compares the record did not change meanwhile (a token
                      rotated in between is refused, and nothing is written)
    resume_node       a restart from the state dir: same cluster, node still there
    rotate_token      a new token for a role; the old one stops working at once
    saved_token       the plain token a manager's state dir keeps, if still current

Running the node (agent, controllers) is the CLI's business; this module
talks only to the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubeless.store import Compare, Put, ResourceStore, now_rfc3339
from kubeless.store.codec import decode, encode_yaml

from . import tokens
from .ca import cert_der, make_root_ca, remove_root_ca
from .errors import (ClusterError, ClusterExists, NoCluster, NodeNameTaken, StateDirError,
                     TokenRefused)
from .record import DEFAULT_CERT_EXPIRY, ClusterRecord, new_cluster_id
from .state import NodeState, StateDir

Resource = dict[str, Any]


@dataclass(frozen=True)
class ClusterCA:
    """A new cluster's id and its root CA's certificate (the key is in the state dir)."""

    cluster_id: str
    cert_pem: str


def new_cluster_ca(state: StateDir) -> ClusterCA:
    """A new cluster id and a root CA for it, written in the state dir (``ca.key``,
    ``ca.crt``): the CA ``create_cluster`` then uses instead of making one."""
    cluster_id = new_cluster_id()
    state.ensure()
    return ClusterCA(cluster_id, make_root_ca(state.path, f"kubeless root CA {cluster_id}"))


@dataclass(frozen=True)
class Found:
    record: ClusterRecord
    revision: int  # the record key's mod_revision


async def read_record(rstore: ResourceStore) -> Found | None:
    key = rstore.keys.cluster()
    kv, _ = await rstore.etcd.get(key)
    if kv is None:
        return None
    return Found(ClusterRecord.from_value(key, decode(key, kv.value)), kv.mod_revision)


async def create_cluster(rstore: ResourceStore, state: StateDir, node: Resource,
                         where: str, ca: ClusterCA | None = None,
                         cert_expiry: float = DEFAULT_CERT_EXPIRY
                         ) -> tuple[ClusterRecord, dict[str, str]]:
    """Make a new cluster with ``node`` its first manager; (record, role -> plain token).
    ``ca``: the cluster's id and CA made beforehand (``new_cluster_ca``), kept when the
    cluster cannot be made (its etcd serves certificates from it); else a CA is made
    here, and forgotten again on failure. ``cert_expiry``: the lifetime, in seconds, of
    the certificates the managers sign (the record keeps it)."""
    await _refuse_existing(rstore, where)
    made = ca is None
    if ca is None:
        ca = new_cluster_ca(state)
    cluster_id, pem = ca.cluster_id, ca.cert_pem
    try:
        digest = tokens.ca_digest(cert_der(pem))
        now = now_rfc3339()
        plain = {role: tokens.new_token(digest) for role in tokens.ROLES}
        record = ClusterRecord(cluster_id, now, pem, cert_expiry=cert_expiry)
        for role, token in plain.items():
            record = record.with_token(role, token, now)
        txn = rstore.transaction()
        if await rstore.get("Node", node["metadata"]["name"]) is None:
            txn.create(node)  # else: a node of an older, record-less setup; left as it is
        key = rstore.keys.cluster()
        txn.add([Compare(key, "create", "==", 0)], [Put(key, encode_yaml(record.to_value()))])
        result = await rstore.etcd.txn(txn.compares, txn.ops)
        if not result.succeeded:
            await _refuse_existing(rstore, where)
            raise ClusterError(f"node {node['metadata']['name']} was registered by someone "
                               "else meanwhile; run init again")
    except BaseException:
        if made:
            remove_root_ca(state.path)
        raise
    return record, {role: str(token) for role, token in plain.items()}


async def _refuse_existing(rstore: ResourceStore, where: str) -> None:
    found = await read_record(rstore)
    if found is not None:
        raise ClusterExists(
            f"{where} already holds cluster {found.record.id} (created "
            f"{found.record.created_at}): join it with `kubeless join --token ...` (a manager "
            "prints the command with `kubeless join-token worker`), or use another --prefix")


async def join_cluster(rstore: ResourceStore, token_text: str,
                       make_node: Callable[[str], Resource],
                       where: str) -> tuple[ClusterRecord, str]:
    """Check the token and register ``make_node(role)``; (record, role). Nothing is
    written when the token is refused or the node name is taken."""
    token = tokens.parse_token(token_text)
    for _ in range(5):
        found = await read_record(rstore)
        if found is None:
            raise NoCluster(f"{where} holds no cluster: run `kubeless init` there first")
        role = found.record.role_of(token)
        node = make_node(role)
        name = node["metadata"]["name"]
        txn = rstore.transaction()
        txn.create(node)
        txn.add([Compare(rstore.keys.cluster(), "mod", "==", found.revision)])
        result = await rstore.etcd.txn(txn.compares, txn.ops)
        if result.succeeded:
            return found.record, role
        if await rstore.get("Node", name) is not None:
            raise NodeNameTaken(
                f"a node named {name} is already registered in cluster {found.record.id}: "
                f"choose another --node-name, or remove the old one with `kubeless node rm "
                f"{name}` (a node that already joined restarts with `kubeless join "
                "--state-dir DIR` and no token)")
        # the record changed (a rotation?): check the token again
    raise ClusterError("the cluster record kept changing while joining; try again")


async def resume_node(rstore: ResourceStore, state: StateDir, node: NodeState,
                      where: str) -> tuple[ClusterRecord, Resource]:
    """A restart from the state dir: (record, the node's Node resource as stored)."""
    found = await read_record(rstore)
    if found is None:
        raise NoCluster(f"{where} holds no cluster, but the state dir {state} belongs to "
                        f"cluster {node.cluster_id}: pass that cluster's etcd with --endpoints, "
                        "or remove the state dir to start afresh")
    if found.record.id != node.cluster_id:
        raise StateDirError(f"the state dir {state} belongs to cluster {node.cluster_id}, but "
                            f"{where} holds cluster {found.record.id}: use another --state-dir")
    stored = await rstore.get("Node", node.node_id)
    if stored is None:
        raise StateDirError(f"node {node.node_id} was removed from cluster {found.record.id}: "
                            f"remove the state dir {state} and join again with a token")
    return found.record, stored


async def rotate_token(rstore: ResourceStore, role: str,
                       where: str) -> tuple[ClusterRecord, tokens.JoinToken]:
    """A new token for ``role``, stored (as a hash) in place of the old one."""
    key = rstore.keys.cluster()
    for _ in range(5):
        found = await read_record(rstore)
        if found is None:
            raise NoCluster(f"{where} holds no cluster: run `kubeless init` first")
        token = tokens.new_token(found.record.ca_digest)
        record = found.record.with_token(role, token, now_rfc3339())
        result = await rstore.etcd.txn([Compare(key, "mod", "==", found.revision)],
                                       [Put(key, encode_yaml(record.to_value()))])
        if result.succeeded:
            return record, token
    raise ClusterError("the cluster record kept changing while rotating; try again")


def saved_token(state: StateDir, record: ClusterRecord, role: str) -> str:
    """The plain ``role`` token kept in ``state``, checked against the record."""
    plain = state.load_tokens().get(role)
    if plain is None:
        raise StateDirError(
            f"the state dir {state} keeps no {role} token (etcd keeps only hashes; the plain "
            "tokens stay with the manager that ran `init` or the last `join-token --rotate`): "
            f"run this there, or make a new one with `kubeless join-token {role} --rotate`")
    try:
        granted = record.role_of(tokens.parse_token(plain))
    except ClusterError:
        granted = ""
    if granted != role:
        raise TokenRefused(f"the {role} token kept in {state} is no longer valid (rotated "
                           f"elsewhere): make a new one with `kubeless join-token {role} --rotate`")
    return plain
