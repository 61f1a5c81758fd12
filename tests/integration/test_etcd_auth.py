"""etcd's auth on, for real: what each identity may do (a TLS etcd with auth on, one per
module; ``EtcdCluster(tls=True, auth=True)``: root and admin:tests hold the root role).

A node's certificate reaches only its own keys and what its agent reads; it cannot
manage users or rotate a token; a deleted user is refused at its next request; the
users and roles etcd holds are exactly the table's; each refusal is one line.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kubeless.cluster import access, bootstrap, identities, permissions
from kubeless.cluster.state import StateDir
from kubeless.store import Forbidden, Keyspace, Put, ResourceStore, TlsConfig, connect
from kubeless.store.auth import Auth
from tests.support.builders import node as node_resource
from tests.support.cli_errors import assert_one_error_line
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def auth_etcd() -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(1, tls=True, auth=True).start()
    yield cluster
    cluster.stop()


class Stores:
    """A store per common name on the auth etcd, closed after the test."""

    def __init__(self, cluster: EtcdCluster, prefix: str) -> None:
        self.cluster, self.prefix = cluster, prefix
        self.opened: list[ResourceStore] = []
        self.dirs: dict[str, Path] = {cluster.admin_name: cluster.admin_identity()}

    def identity(self, common_name: str) -> Path:
        """An identity given to the test (``dirs``), else a certificate from the cluster's
        CA, with no etcd user (each test admits its users itself, through ``access``)."""
        if common_name not in self.dirs:
            self.dirs[common_name] = self.cluster.identity(common_name)
        return self.dirs[common_name]

    def __call__(self, common_name: str, retry_for: float = 3.0) -> ResourceStore:
        tls = TlsConfig.from_options(cert_path=str(self.identity(common_name)))
        rstore = connect(self.cluster.endpoints, self.prefix, tls=tls, retry_for=retry_for)
        self.opened.append(rstore)
        return rstore


@pytest.fixture
async def stores(auth_etcd: EtcdCluster, prefix: str) -> AsyncIterator[Stores]:
    s = Stores(auth_etcd, prefix)
    yield s
    for rstore in s.opened:
        await rstore.etcd.close()


async def nodes_admitted(stores: Stores, *members: tuple[str, str]) -> ResourceStore:
    admin = stores(stores.cluster.admin_name)
    for node_id, role in members:
        await access.admit_node(admin.etcd, admin.keys, node_id, role)
    return admin


async def refused(coro: object) -> str:
    with pytest.raises(Forbidden) as caught:
        await coro  # type: ignore[misc]
    message = str(caught.value)
    assert "\n" not in message and "permission denied" in message, message
    return message


async def test_a_node_reaches_its_own_keys_and_what_its_agent_reads(stores: Stores) -> None:
    admin = await nodes_admitted(stores, ("n1", "worker"), ("n2", "worker"))
    keys = admin.keys
    await admin.etcd.txn([], [Put(keys.assignment("n1", "t1"), b"mine"),
                              Put(keys.assignment("n2", "t2"), b"theirs"),
                              Put(keys.endpoints("default", "web"), b"ep"),
                              Put(keys.cluster(), b"record"),
                              Put(keys.heartbeat("n2"), b"hb2")])
    n1 = stores("node:n1")
    hb = keys.heartbeat("n1")
    lease = await n1.etcd.lease_grant(5)
    await n1.etcd.txn([], [Put(hb, b"hb1", lease), Put(keys.observed("n1", "t1"), b"running")])
    assert await n1.etcd.lease_keepalive_once(lease) > 0
    kv, _ = await n1.etcd.get(keys.assignment("n1", "t1"))
    assert kv is not None and kv.value == b"mine"
    others, _ = await n1.etcd.list_prefix(keys.heartbeats_prefix())
    assert {kv.key for kv in others} == {hb, keys.heartbeat("n2")}
    assert (await n1.etcd.get(keys.cluster()))[0] is not None
    assert len((await n1.etcd.list_prefix(keys.endpoints_prefix()))[0]) == 1
    await n1.etcd.lease_revoke(lease)  # needs write on the attached keys: its heartbeat
    assert (await admin.etcd.get(hb))[0] is None


WRITES = {
    "a service spec": lambda k: k.spec("Service", "web", "default"),
    "its own Node (a role)": lambda k: k.spec("Node", "n1"),
    "another node's assignment": lambda k: k.assignment("n2", "t9"),
    "another node's heartbeat": lambda k: k.heartbeat("n2"),
    "the cluster record": lambda k: k.cluster(),
    "an endpoint": lambda k: k.endpoints("default", "web"),
}


@pytest.mark.parametrize("where", WRITES.values(), ids=WRITES.keys())
async def test_a_node_cannot_write_outside_its_own_keys(stores: Stores, where: object) -> None:
    admin = await nodes_admitted(stores, ("n1", "worker"))
    n1 = stores("node:n1")
    key = where(admin.keys)  # type: ignore[operator]
    await refused(n1.etcd.txn([], [Put(key, b"injected")]))
    assert (await admin.etcd.get(key))[0] is None


async def test_a_node_cannot_read_spec_secrets_or_another_nodes_assignments(
        stores: Stores) -> None:
    admin = await nodes_admitted(stores, ("n1", "worker"), ("n2", "worker"))
    keys = admin.keys
    await admin.etcd.txn([], [Put(keys.assignment("n2", "t2"), b"env: DB_PASSWORD=x")])
    n1 = stores("node:n1")
    await refused(n1.etcd.get(keys.assignment("n2", "t2")))
    await refused(n1.etcd.list_prefix(keys.agent("n2")))
    await refused(n1.etcd.list_prefix(keys.kind_prefix("Service")))
    await refused(n1.etcd.get(keys.join_tokens()))
    await refused(n1.etcd.list_prefix(keys.root))
    with pytest.raises(Forbidden, match="permission denied"):
        async for _ in n1.etcd.watch(keys.kind_prefix("Service"), 1):
            pass


async def test_a_node_cannot_grant_itself_roles_nor_rotate_a_token(stores: Stores,
                                                                   tmp_path: Path) -> None:
    admin = await nodes_admitted(stores, ("n1", "worker"))
    await bootstrap.create_cluster(admin, StateDir(str(tmp_path / "m1")),
                                   node_resource("m1"), "here")
    n1 = stores("node:n1")
    await refused(access.admit_node(n1.etcd, n1.keys, "n1", "manager"))
    await refused(Auth(n1.etcd).ensure_user_roles("node:n1", ["root"]))
    await refused(access.admit(n1.etcd, n1.keys, identities.admin("me")))
    await refused(bootstrap.rotate_token(n1, "manager", "here"))
    assert await Auth(admin.etcd).user_roles("node:n1") == ["node:n1"]
    assert await Auth(admin.etcd).user_roles("admin:me") is None


async def test_a_deleted_node_is_refused_at_its_next_request(stores: Stores) -> None:
    admin = await nodes_admitted(stores, ("gone", "manager"))
    node, manager = stores("node:gone", retry_for=1), stores("manager:gone", retry_for=1)
    hb = admin.keys.heartbeat("gone")
    await node.etcd.txn([], [Put(hb, b"up")])  # connected and working
    await manager.etcd.get(admin.keys.kind_prefix("Service"))
    started = time.monotonic()
    await access.remove_node(admin.etcd, "gone")
    message = await refused(node.etcd.txn([], [Put(hb, b"still?")]))
    await refused(manager.etcd.get(admin.keys.kind_prefix("Service")))
    assert time.monotonic() - started < 1.0
    assert "node:gone" not in await Auth(admin.etcd).users()
    assert "cert.pem" in message  # names the certificate refused


async def test_demote_takes_root_away_and_promote_gives_it(stores: Stores) -> None:
    admin = await nodes_admitted(stores, ("p1", "worker"))
    auth = Auth(admin.etcd)
    assert await auth.user_roles("manager:p1") is None
    await access.admit_node(admin.etcd, admin.keys, "p1", "manager")
    assert await auth.user_roles("manager:p1") == ["root"]
    manager = stores("manager:p1")
    await manager.etcd.get(admin.keys.kind_prefix("Service"))
    await access.admit_node(admin.etcd, admin.keys, "p1", "worker")
    assert await auth.user_roles("manager:p1") is None
    await refused(manager.etcd.get(admin.keys.kind_prefix("Service")))
    assert await auth.user_roles("node:p1") == ["node:p1"]


async def test_the_user_table_is_exactly_the_expected_one_and_converges(
        own_auth_etcd: EtcdCluster) -> None:
    """A fresh auth etcd of the test's own: after init's enable (twice) and two joins,
    etcd holds exactly the table's users and roles, nothing more."""
    tls = TlsConfig.from_options(cert_path=str(own_auth_etcd.admin_identity()))
    rstore = connect(own_auth_etcd.endpoints, "/table", tls=tls)
    try:
        for _ in range(2):  # init run again, up restarted: no failure, nothing new
            await access.enable_for_node(rstore.etcd, rstore.keys, "m1")
            await access.admit_node(rstore.etcd, rstore.keys, "w1", "worker")
            await access.admit_node(rstore.etcd, rstore.keys, "m2", "manager")
        users, roles = await access.auth_table(rstore.etcd)
        want_users, want_roles = permissions.expected(rstore.keys, [
            identities.node("m1"), identities.manager("m1"), identities.admin("tests"),
            identities.node("w1"), identities.node("m2"), identities.manager("m2")])
        assert users == want_users
        assert roles == want_roles
    finally:
        await rstore.etcd.close()


@pytest.fixture
def own_auth_etcd() -> Iterator[EtcdCluster]:
    """A TLS etcd with auth OFF (enable_for_node turns it on, as init does)."""
    cluster = EtcdCluster(1, tls=True, auth=False).start()
    yield cluster
    cluster.stop()


def test_the_cli_says_forbidden_in_one_line(stores: Stores) -> None:
    asyncio.run(nodes_admitted_sync(stores.cluster, "n1"))
    env = {**os.environ, "KUBELESS_ENDPOINTS": stores.cluster.endpoints,
           "KUBELESS_PREFIX": stores.prefix, "KUBELESS_CERT_PATH": str(stores.identity("node:n1"))}
    res = subprocess.run([sys.executable, "-m", "kubeless_cli.main", "service", "ls"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert_one_error_line(res, "permission denied")
    res = subprocess.run([sys.executable, "-m", "kubeless_cli.main", "join-token", "worker",
                          "--rotate"], capture_output=True, text=True, env=env, timeout=30)
    assert_one_error_line(res, "permission denied")


async def nodes_admitted_sync(cluster: EtcdCluster, node_id: str) -> None:
    tls = TlsConfig.from_options(cert_path=str(cluster.admin_identity()))
    rstore = connect(cluster.endpoints, "/", tls=tls)
    try:
        await access.admit_node(rstore.etcd, Keyspace(), node_id, "worker")
    finally:
        await rstore.etcd.close()


async def test_the_join_endpoint_lets_a_node_in_before_returning_its_certificate(
        stores: Stores, tmp_path: Path) -> None:
    """A join endpoint run with a root identity (as a manager's is): the certificate it
    returns works at once, as a node's (its own keys only) or a manager's (root)."""
    from kubeless.cluster import join_client
    from kubeless.cluster.bootstrap import ClusterCA
    from kubeless.cluster.join_server import JoinServer
    from kubeless.cluster.pki import write_cert_dir
    from kubeless.cluster.record import new_cluster_id

    cluster = stores.cluster
    assert cluster.ca is not None
    admin = stores(cluster.admin_name)
    first = {**node_resource("m1"), "status": {}}
    _, tokens = await bootstrap.create_cluster(
        admin, StateDir(str(tmp_path / "m1")), first, "here",
        ca=ClusterCA(new_cluster_id(), cluster.ca.cert_pem))

    def make_node(request: object, role: str) -> dict[str, object]:
        return {**first, "metadata": {"name": request.node_name},  # type: ignore[attr-defined]
                "spec": {"role": role, "availability": "active"}}

    server = JoinServer(admin, cluster.ca, make_node, cluster.endpoints, stores.prefix,
                        ("127.0.0.1",), 0)
    port = await server.start()
    try:
        for name, role in (("jw", "worker"), ("jm", "manager")):
            joined = await asyncio.to_thread(
                join_client.join_through, f"127.0.0.1:{port}", tokens[role],
                join_client.NodeRequest(name, "127.0.0.1", "fake", {}))
            assert joined.role == role
            write_cert_dir(tmp_path / name, joined.ca, joined.certificate, joined.key)
            stores.dirs[f"node:{name}"] = tmp_path / name
            own = stores(f"node:{name}")
            await own.etcd.txn([], [Put(own.keys.heartbeat(name), b"up")])
            await refused(own.etcd.get(own.keys.spec("Node", name)))
            if role == "manager":
                write_cert_dir(tmp_path / "mgr", joined.ca, joined.manager_certificate,
                               joined.manager_key)
                stores.dirs[f"manager:{name}"] = tmp_path / "mgr"
                assert await stores(f"manager:{name}").get("Node", name) is not None
        users = await Auth(admin.etcd).users()
        assert {"node:jw", "node:jm", "manager:jm"} <= set(users)
        assert "manager:jw" not in users

        # promotion: the worker trades its node certificate for a manager identity
        state = StateDir(str(tmp_path / "jw-state"))
        write_cert_dir(state.tls_dir, cluster.ca.cert_pem,
                       (tmp_path / "jw" / "cert.pem").read_text(),
                       (tmp_path / "jw" / "key.pem").read_text())
        promote = join_client.post_promote
        assert await asyncio.to_thread(promote, "127.0.0.1", port, state, "jw") is False
        assert not (state.manager_tls_dir / "cert.pem").exists()
        with pytest.raises(join_client.JoinFailed, match="can only ask for manager:jw"):
            await asyncio.to_thread(promote, "127.0.0.1", port, state, "jm")
        live = await admin.get("Node", "jw")
        assert live is not None
        await admin.update({**live, "spec": {**live["spec"], "role": "manager"}})
        assert await asyncio.to_thread(promote, "127.0.0.1", port, state, "jw") is True
        assert state.has_ca_key()
        stores.dirs["manager:jw"] = state.manager_tls_dir
        assert await stores("manager:jw").get("Node", "jw") is not None  # root at once
    finally:
        await server.close()


async def test_node_promote_demote_rm_and_user_add_keep_etcds_users(stores: Stores) -> None:
    admin = await nodes_admitted(stores, ("c1", "worker"))
    await admin.create(node_resource("c1"))
    auth = Auth(admin.etcd)
    env = {**os.environ, "KUBELESS_ENDPOINTS": stores.cluster.endpoints,
           "KUBELESS_PREFIX": stores.prefix,
           "KUBELESS_CERT_PATH": str(stores.identity(stores.cluster.admin_name))}

    def kubeless(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubeless_cli.main", *args],
                              capture_output=True, text=True, env=env, timeout=30)

    assert (await asyncio.to_thread(kubeless, "node", "promote", "c1")).returncode == 0
    assert await auth.user_roles("manager:c1") == ["root"]
    assert (await asyncio.to_thread(kubeless, "node", "demote", "c1")).returncode == 0
    assert await auth.user_roles("manager:c1") is None
    added = await asyncio.to_thread(kubeless, "user", "add", "admin:ops")
    assert added.returncode == 0, added.stderr
    assert await auth.user_roles("admin:ops") == ["root"]
    assert_one_error_line(await asyncio.to_thread(kubeless, "user", "add", "node:c1"),
                          "node identity")
    listed = (await asyncio.to_thread(kubeless, "user", "ls")).stdout
    assert "admin:ops" in listed and "node:c1" in listed and "heartbeats/c1" in listed
    removed = await asyncio.to_thread(kubeless, "node", "rm", "c1")
    assert removed.returncode == 0, removed.stderr
    assert await auth.user_roles("node:c1") is None
    assert await auth.role("node:c1") is None


async def test_a_node_restarting_from_its_state_dir_under_auth(stores: Stores,
                                                              tmp_path: Path) -> None:
    """``resume_node`` with the node's own identity: it may not read its Node (None: it
    runs as a worker); once ``node rm`` deleted its user, one sentence says so."""
    from kubeless.cluster.errors import StateDirError
    from kubeless.cluster.state import NodeState

    admin = await nodes_admitted(stores, ("r1", "worker"))
    record, _ = await bootstrap.create_cluster(admin, StateDir(str(tmp_path / "m1")),
                                               node_resource("m1"), "here")
    await admin.create(node_resource("r1"))
    state = StateDir(str(tmp_path / "r1"))
    me = NodeState(record.id, "r1", "worker", stores.cluster.endpoints, stores.prefix, "fake",
                   "127.0.0.1")
    own = stores("node:r1", retry_for=1)
    found, resource = await bootstrap.resume_node(own, state, me, "here")
    assert found.id == record.id and resource is None
    await access.remove_node(admin.etcd, "r1")
    with pytest.raises(StateDirError, match="r1 was removed") as caught:
        await bootstrap.resume_node(own, state, me, "here")
    assert "\n" not in str(caught.value)
