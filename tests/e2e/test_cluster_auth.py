"""etcd's auth on the multi-host cluster, end to end (``make cluster``'s default).

The harness turns etcd's auth on once etcd answers (``lab.cluster.harness``),
as ``init`` does: etcd's user table is then exactly the one
``kubeless.cluster.permissions`` expects for the identities the harness issued.

A worker's credentials (w1's ``node:w1``), used from the root namespace (a
store) or from w1's own (the CLI), reach its own keys and what its agent
reads, and nothing else: writing ``spec/`` or another node's keys, or reading
another node's assignments, is refused in one line naming the certificate;
with them the CLI can neither promote w1 nor rotate a join token. A node
stopped and then removed by the admin (``kubeless node rm``) is refused by
etcd within a second of the removal. An etcd member killed and started again
still holds every user and role.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kubeless import store
from kubeless.cluster import access, permissions
from kubeless.store import Forbidden, Put
from kubeless.store.auth import Auth
from lab.cluster import tls as lab_tls
from lab.cluster import waits
from lab.cluster.harness import Cluster
from tests.e2e.clients import kubeless
from tests.support.cli_errors import assert_one_error_line

Opener = Callable[..., store.ResourceStore]


def node_identity(cluster: Cluster, name: str) -> Path:
    """The directory of host ``name``'s ``node:<name>`` identity (its agent's)."""
    return cluster.hosts[name].dir / lab_tls.NODE_DIR


@pytest.fixture
async def as_node(cluster: Cluster) -> AsyncIterator[Opener]:
    """Stores presenting a host's node identity (every endpoint, or ``endpoints``)."""
    assert cluster.tls is not None, "the e2e cluster runs with TLS"
    tls = cluster.tls
    opened: list[store.ResourceStore] = []

    def open_store(name: str, endpoints: str | None = None) -> store.ResourceStore:
        rstore = store.connect(endpoints or cluster.endpoints, cluster.prefix,
                               tls=tls.client(node_identity(cluster, name)), retry_for=3)
        opened.append(rstore)
        return rstore

    yield open_store
    for rstore in opened:
        await rstore.etcd.close()


async def refused(call: Awaitable[object], certificate: Path) -> str:
    """etcd refuses ``call``: one line, naming the certificate presented."""
    with pytest.raises(Forbidden) as caught:
        await call
    message = str(caught.value)
    assert "\n" not in message and str(certificate) in message, message
    return message


async def expected_table(cluster: Cluster, rs: store.ResourceStore) -> None:
    users, roles = await access.auth_table(rs.etcd)
    want_users, want_roles = permissions.expected(rs.keys,
                                                  lab_tls.identities(cluster.hosts.values()))
    assert users == want_users
    assert roles == want_roles


async def test_the_user_table_after_make_cluster_is_the_expected_one(
        cluster: Cluster, rs: store.ResourceStore) -> None:
    await expected_table(cluster, rs)


async def test_a_workers_credentials_reach_only_its_own_keys(
        cluster: Cluster, rs: store.ResourceStore, as_node: Opener) -> None:
    keys = rs.keys
    await waits.apply(rs, waits.service("on-w2", 1, constraints=["node.id==w2"]))
    theirs = await waits.until(lambda: _assignments(rs, "w2"), 60, "a task assigned to w2")
    heartbeat_w2, _ = await rs.etcd.get(keys.heartbeat("w2"))
    w1, cert = as_node("w1"), node_identity(cluster, "w1") / "cert.pem"

    # what its agent reads and writes: its own prefix, every heartbeat, the record
    await w1.etcd.list_prefix(keys.agent("w1"))
    assert (await w1.etcd.get(keys.heartbeat("w2")))[0] is not None
    assert (await w1.etcd.get(keys.cluster()))[0] is not None

    writes = {"a service's spec": keys.spec("Service", "intruder", "default"),
              "w2's assignment": keys.assignment("w2", "intruder"),
              "w2's heartbeat": keys.heartbeat("w2"),
              "the cluster record": keys.cluster()}
    for what, key in writes.items():
        message = await refused(w1.etcd.txn([], [Put(key, b"injected")]), cert)
        assert "permission denied" in message, (what, message)
    await refused(w1.etcd.get(theirs[0]), cert)
    await refused(w1.etcd.list_prefix(keys.agent("w2")), cert)
    await refused(w1.etcd.list_prefix(keys.kind_prefix("Service")), cert)

    assert await rs.get("Service", "intruder") is None
    assert (await rs.etcd.get(keys.assignment("w2", "intruder")))[0] is None
    now_w2, _ = await rs.etcd.get(keys.heartbeat("w2"))
    assert heartbeat_w2 is not None and now_w2 is not None
    assert now_w2.value != b"injected"
    assert (await rs.etcd.get(keys.cluster()))[0].value != b"injected"  # type: ignore[union-attr]


async def _assignments(rs: store.ResourceStore, node: str) -> list[str]:
    kvs, _ = await rs.etcd.list_prefix(rs.keys.agent(node) + "assignments/")
    return [kv.key for kv in kvs]


async def test_a_worker_cannot_promote_itself_nor_rotate_a_token_nor_write_spec(
        cluster: Cluster, rs: store.ResourceStore) -> None:
    """The CLI on w1, with w1's own node identity: each refused in one line."""
    identity = node_identity(cluster, "w1")
    record_before, _ = await rs.etcd.get(rs.keys.cluster())

    def on_w1(*args: str) -> Awaitable[subprocess.CompletedProcess[str]]:
        return asyncio.to_thread(kubeless, cluster, "w1", *args, cert_path=identity)

    assert_one_error_line(await on_w1("node", "promote", "w1"), "permission denied")
    assert_one_error_line(await on_w1("join-token", "worker", "--rotate", "-q"),
                          "permission denied")
    assert_one_error_line(await on_w1("service", "create", "-d", "--name", "intruder",
                                      "kubeless-demo:latest"), "permission denied")

    node = await rs.get("Node", "w1")
    assert node is not None and node["spec"]["role"] == "worker"
    assert await Auth(rs.etcd).user_roles("manager:w1") is None
    assert await Auth(rs.etcd).user_roles("node:w1") == ["node:w1"]
    record_after, _ = await rs.etcd.get(rs.keys.cluster())
    assert record_before is not None and record_after is not None
    assert record_after.mod_revision == record_before.mod_revision  # no token rotated
    assert await rs.get("Service", "intruder") is None


async def test_a_removed_nodes_certificate_is_refused_within_a_second(
        cluster: Cluster, rs: store.ResourceStore, as_node: Opener) -> None:
    """w2 stopped first, then ``node rm w2`` as the admin: a client holding w2's
    certificate, asking all along, is refused less than a second after the rm returns."""
    assert cluster.tls is not None
    w2, cert = as_node("w2"), node_identity(cluster, "w2") / "cert.pem"
    await w2.etcd.get(rs.keys.heartbeat("w2"))  # connected and allowed
    cluster.terminate("w2", "agent")
    try:
        await waits.until(lambda: _not_ready(rs, "w2"), 60, "w2 down after its agent stopped")
        asking = asyncio.create_task(_first_refusal(w2, rs.keys.agent("w2"), timeout=30))
        removed = await asyncio.to_thread(kubeless, cluster, None, "node", "rm", "w2",
                                          cert_path=cluster.tls.admin)
        rm_done = time.monotonic()
        assert removed.returncode == 0, removed.stderr
        refused_at, message = await asking
        assert refused_at - rm_done < 1.0, (
            f"refused {refused_at - rm_done:.2f}s after node rm returned")
        assert str(cert) in message and "\n" not in message, message
        assert "node:w2" not in await Auth(rs.etcd).users()
        assert_one_error_line(await asyncio.to_thread(
            kubeless, cluster, "w2", "get", "nodes", cert_path=cert.parent), "refused")
    finally:  # w2 admitted again as the harness did; `healthy` starts its agent
        await access.admit_node(rs.etcd, rs.keys, "w2", "worker")
        with contextlib.suppress(store.AlreadyExists):
            await rs.create(cluster.node_resource(cluster.hosts["w2"]))
    await expected_table(cluster, rs)


async def _not_ready(rs: store.ResourceStore, node: str) -> bool:
    return node not in await waits.ready_nodes(rs)


async def _first_refusal(rstore: store.ResourceStore, key: str,
                         timeout: float) -> tuple[float, str]:
    """Ask for ``key`` every 10 ms until etcd refuses: (when, what it said)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await rstore.etcd.list_prefix(key)
        except Forbidden as err:
            return time.monotonic(), str(err)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} still readable {timeout:.0f}s later")


async def test_an_etcd_member_restarted_keeps_every_user(
        cluster: Cluster, as_node: Opener) -> None:
    m3 = cluster.hosts["m3"]
    cluster.kill(m3, ["etcd"])
    cluster.start_part(m3, "etcd")
    await asyncio.to_thread(cluster.wait_etcd, 60, [m3])
    assert cluster.tls is not None
    admin = store.connect(m3.etcd_url, cluster.prefix, tls=cluster.client_tls, retry_for=10)
    try:
        await expected_table(cluster, admin)  # m3 alone answers
    finally:
        await admin.etcd.close()
    w1 = as_node("w1", m3.etcd_url)
    await w1.etcd.list_prefix(w1.keys.agent("w1"))
    await refused(w1.etcd.list_prefix(w1.keys.kind_prefix("Service")),
                  node_identity(cluster, "w1") / "cert.pem")
