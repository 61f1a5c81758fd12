"""Bootstrap against etcd: make a cluster, check and spend join tokens, rotate them.

    new_cluster_ca    a new cluster's id and root CA in the state dir, made before
                      its etcd when that etcd serves certificates from it (``up``,
                      ``kubeless certs ca``)
    held_cluster_ca   the CA a state dir already holds for a cluster not made yet
    create_cluster    init: a root CA in the state dir (or the one made beforehand),
                      a worker and a manager token, the cluster record (with the
                      secrets key derived from the CA key), the plain tokens and the
                      first manager's Node, in ONE transaction that compares the
                      record is absent
    join_cluster      join: check the token against the record, then create the
                      Node with the role it grants, in one transaction that
                      compares the record did not change meanwhile (a token
                      rotated in between is refused, and nothing is written)
    resume_node       a restart from the state dir: same cluster, node still there
    rotate_token      a new token for a role; the old one stops working at once
    current_token     the plain token of a role: from etcd, else (a cluster made
                      before etcd kept them) from a manager's state dir
    saved_token       the plain token a manager's state dir keeps, if still current

The plain tokens live in etcd under ``secrets/join-tokens``, beside the hashes
in the record and written in the same transactions, so any host holding a
manager or admin identity prints them (Swarm keeps them in its raft store,
Kubernetes' bootstrap tokens are Secrets). Only managers and admins (etcd's root
role) may read it: it sits under ``secrets/``, which no node's role reaches
(``kubeless.cluster.permissions``).

Running the node (agent, controllers) is the CLI's business; this module
talks only to the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubeless.store import Compare, Forbidden, Put, ResourceStore, now_rfc3339
from kubeless.store.codec import decode, encode_yaml

from . import tokens
from .ca import KEY_FILE, cert_der, make_root_ca, remove_root_ca
from .errors import (CAError, ClusterError, ClusterExists, NoCluster, NodeNameTaken,
                     StateDirError, TokenRefused)
from .record import DEFAULT_CERT_EXPIRY, ClusterRecord, new_cluster_id
from .state import NodeState, StateDir

if TYPE_CHECKING:
    from .pki import PrivateKey

Resource = dict[str, Any]


@dataclass(frozen=True)
class ClusterCA:
    """A new cluster's id and its root CA's certificate (the key is in the state dir,
    unless given here: the lab harness keeps its CA elsewhere)."""

    cluster_id: str
    cert_pem: str
    key: PrivateKey | None = field(default=None, repr=False)


def held_cluster_ca(state: StateDir) -> ClusterCA | None:
    """The CA the state dir holds (``ca.key``, ``ca.crt``: made by ``kubeless certs ca``
    or ``up`` before etcd's certificates), as ``create_cluster`` takes it with a new
    cluster id; None when it holds none."""
    from .ca import CERT_FILE

    if not state.has_ca_key():
        return None
    path = state.path / CERT_FILE
    try:
        pem = path.read_text()
        cert_der(pem)
    except (OSError, CAError) as err:
        raise CAError(f"the cluster CA in {state} cannot be read ({path}: {err})") from None
    return ClusterCA(new_cluster_id(), pem)


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
        record = ClusterRecord(cluster_id, now, pem, cert_expiry=cert_expiry,
                               secrets_key=_secrets_key(state, ca))
        for role, token in plain.items():
            record = record.with_token(role, token, now)
        txn = rstore.transaction()
        if await rstore.get("Node", node["metadata"]["name"]) is None:
            txn.create(node)  # else: a node of an older, record-less setup; left as it is
        key = rstore.keys.cluster()
        txn.add([Compare(key, "create", "==", 0)], [Put(key, encode_yaml(record.to_value())),
                                                     _tokens_put(rstore, plain)])
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


def _secrets_key(state: StateDir, ca: ClusterCA) -> str:
    """The record's ``secretsKey``: from the CA key given, else the state dir's; "" when
    neither holds one (a test's bare CA certificate: the managers' controllers add it
    once one of them holds the key)."""
    from . import secrets_key  # cryptography, only when a cluster is made
    from .pki import load_key

    key = ca.key
    if key is None and state.has_ca_key():
        path = state.path / KEY_FILE
        try:
            key = load_key(path.read_bytes())
        except OSError as err:
            raise CAError(f"cannot read the cluster CA key {path}: {err.strerror}") from None
    return secrets_key.public_of(key) if key is not None else ""


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
                      where: str) -> tuple[ClusterRecord, Resource | None]:
    """A restart from the state dir: (record, the node's Node resource as stored; None
    when the identity connecting may not read it: a node's own, under etcd's auth)."""
    try:
        return await _resume_node(rstore, state, node, where)
    except Forbidden as err:
        if "cert.pem" in str(err) and await _refused_everything(rstore):
            raise StateDirError(
                f"etcd refuses this node's certificate: node {node.node_id} was removed "
                f"from cluster {node.cluster_id}: remove the state dir {state} and join "
                "again with a token") from None
        raise


async def _refused_everything(rstore: ResourceStore) -> bool:
    """Whether etcd refuses even the cluster record (every role may read it): our user
    is gone."""
    try:
        await read_record(rstore)
    except Forbidden:
        return True
    return False


async def _resume_node(rstore: ResourceStore, state: StateDir, node: NodeState,
                       where: str) -> tuple[ClusterRecord, Resource | None]:
    found = await read_record(rstore)
    if found is None:
        raise NoCluster(f"{where} holds no cluster, but the state dir {state} belongs to "
                        f"cluster {node.cluster_id}: pass that cluster's etcd with --endpoints, "
                        "or remove the state dir to start afresh")
    if found.record.id != node.cluster_id:
        raise StateDirError(f"the state dir {state} belongs to cluster {node.cluster_id}, but "
                            f"{where} holds cluster {found.record.id}: use another --state-dir")
    try:
        stored = await rstore.get("Node", node.node_id)
    except Forbidden:  # a node's role reads no spec/: its etcd user says it is still in
        return found.record, None
    if stored is None:
        raise StateDirError(f"node {node.node_id} was removed from cluster {found.record.id}: "
                            f"remove the state dir {state} and join again with a token")
    return found.record, stored


async def rotate_token(rstore: ResourceStore, role: str,
                       where: str) -> tuple[ClusterRecord, tokens.JoinToken]:
    """A new token for ``role``: its hash in the record in place of the old one's, and
    the plain token beside it, in one transaction comparing both keys as read."""
    key, plain_key = rstore.keys.cluster(), rstore.keys.join_tokens()
    for _ in range(5):
        found = await read_record(rstore)
        if found is None:
            raise NoCluster(f"{where} holds no cluster: run `kubeless init` first")
        kept, kept_revision = await _read_plain(rstore)
        token = tokens.new_token(found.record.ca_digest)
        record = found.record.with_token(role, token, now_rfc3339())
        result = await rstore.etcd.txn(
            [Compare(key, "mod", "==", found.revision),
             Compare(plain_key, "mod", "==", kept_revision)],
            [Put(key, encode_yaml(record.to_value())),
             _tokens_put(rstore, {**kept, role: str(token)})])
        if result.succeeded:
            return record, token
    raise ClusterError("the cluster record kept changing while rotating; try again")


def _tokens_put(rstore: ResourceStore, plain: Mapping[str, object]) -> Put:
    return Put(rstore.keys.join_tokens(),
               encode_yaml({role: str(plain[role]) for role in tokens.ROLES if role in plain}))


async def _read_plain(rstore: ResourceStore) -> tuple[dict[str, str], int]:
    """role -> plain token as etcd keeps them, and the key's mod revision (0: none)."""
    key = rstore.keys.join_tokens()
    kv, _ = await rstore.etcd.get(key)
    if kv is None:
        return {}, 0
    data = decode(key, kv.value)
    kept = {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return kept, kv.mod_revision


async def current_token(rstore: ResourceStore, found: Found, state: StateDir | None,
                        role: str) -> str:
    """The plain ``role`` token: the one etcd keeps when it is current, else the one a
    manager's ``state`` dir keeps (a cluster made before etcd kept them)."""
    kept, _ = await _read_plain(rstore)
    plain = kept.get(role)
    if plain is not None and _grants(found.record, plain) == role:
        return plain
    if state is not None and state.load_tokens().get(role) is not None:
        return saved_token(state, found.record, role)
    raise StateDirError(
        f"cluster {found.record.id} keeps no plain {role} token in etcd (it was made before "
        f"etcd kept them) and {state if state is not None else 'no state dir'} keeps none "
        f"either: run this on the manager that ran `init`, or make a new one with "
        f"`kubeless join-token {role} --rotate`")


def _grants(record: ClusterRecord, plain: str) -> str:
    try:
        return record.role_of(tokens.parse_token(plain))
    except ClusterError:
        return ""


def saved_token(state: StateDir, record: ClusterRecord, role: str) -> str:
    """The plain ``role`` token kept in ``state``, checked against the record."""
    plain = state.load_tokens().get(role)
    if plain is None:
        raise StateDirError(
            f"the state dir {state} keeps no {role} token (a cluster made before etcd kept "
            "them keeps it with the manager that ran `init`): run this there, or make a new "
            f"one with `kubeless join-token {role} --rotate`")
    if _grants(record, plain) != role:
        raise TokenRefused(f"the {role} token kept in {state} is no longer valid (rotated "
                           f"elsewhere): make a new one with `kubeless join-token {role} --rotate`")
    return plain
