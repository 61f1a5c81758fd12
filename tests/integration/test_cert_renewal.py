"""Certificates of seconds renewed while everything runs, against a real TLS etcd.

A cluster whose record says ``certExpiry: 10s`` on conftest's ``tls_etcd``, its
CA the one etcd trusts. A manager's agent (fake runtime, the CA key in its
state dir: it signs its own renewals) serves nothing but says the port of a
real join endpoint (``JoinServer``, in this process) in its heartbeat. A
worker's agent (process runtime, a running task) holds ``node:<id>`` in
``tls/``: it renews through that join endpoint with mutual TLS, several
times, while the test watches that the node stays Ready on one lease, the
task keeps its id, the logs server presents the new certificate, the serials
differ and the first certificate is refused by etcd once expired. Then the
``/renew`` route's refusals: no certificate, an expired one, one from another
CA, a request for another identity, a manager's identity, a node not in the
cluster.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import json
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from kubeless import store
from kubeless.cluster import NodeState, StateDir, bootstrap, pki
from kubeless.cluster.bootstrap import ClusterCA
from kubeless.cluster.errors import JoinFailed
from kubeless.cluster.join_client import post_renew
from kubeless.cluster.join_server import JoinServer
from kubeless.cluster.record import new_cluster_id
from kubeless.store import TlsConfig, TlsError
from kubeless_agent import AgentConfig, running_agent
from kubeless_agent.main import AgentProcess
from lab.waiting import until
from tests.support.etcd_server import EtcdCluster
from tests.support.workloads import assign, reaches, task, unique_node

pytestmark = pytest.mark.integration

LIFETIME = 10.0  # the least --cert-expiry allows


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def serial(directory: Path) -> int:
    return pki.cert_info((directory / "cert.pem").read_bytes()).serial


@dataclass
class Cluster:
    rstore: store.ResourceStore  # an admin's
    manager: StateDir
    join: JoinServer
    prefix: str


@pytest.fixture
async def cluster(tls_etcd: EtcdCluster, prefix: str,
                  tmp_path: Path) -> AsyncIterator[Cluster]:
    assert tls_etcd.ca is not None
    admin = tls_etcd.identity("admin:renewal")
    rstore = store.connect(tls_etcd.endpoints, prefix, tls=TlsConfig(
        admin / "ca.pem", admin / "cert.pem", admin / "key.pem"))
    manager = StateDir(tmp_path / "manager")
    tls_etcd.ca.save(manager.path)
    name = unique_node("rm")
    node = {"apiVersion": "kubeless.io/v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"role": "manager", "availability": "active"}}
    await bootstrap.create_cluster(rstore, manager, node, "etcd",
                                   ca=ClusterCA(new_cluster_id(), tls_etcd.ca.cert_pem),
                                   cert_expiry=LIFETIME)
    join = JoinServer(rstore, tls_etcd.ca, lambda r, role: node, tls_etcd.endpoints, prefix,
                      ("127.0.0.1",), 0)
    await join.start()
    try:
        yield Cluster(rstore, manager, join, prefix)
    finally:
        await join.close()
        await rstore.etcd.close()


def node_config(tls_etcd: EtcdCluster, state: StateDir, node: str, role: str,
                runtime: str, prefix: str) -> AgentConfig:
    """The agent of a node whose ``tls/`` the cluster CA signed for ``LIFETIME``."""
    assert tls_etcd.ca is not None
    pki.issue_identity(tls_etcd.ca, state.tls_dir,
                       pki.Profile(f"node:{node}", ("127.0.0.1",), pki.USAGES, LIFETIME))
    stored = NodeState(cluster_id="c1", node_id=node, role=role, endpoints=tls_etcd.endpoints,
                       prefix=prefix, runtime=runtime, advertise_addr="127.0.0.1")
    return replace(AgentConfig.from_node_state(stored, state), heartbeat_ttl=3, mesh=False,
                   dns_addrs=())


async def ready(rstore: store.ResourceStore, node: str, lease: int) -> bool:
    kv, _ = await rstore.etcd.get(rstore.keys.heartbeat(node))
    return kv is not None and kv.lease == lease


def served_serial(port: int, identity: Path) -> int:
    """The serial of the certificate the logs server at ``port`` presents now."""
    context = ssl.create_default_context(cafile=str(identity / "ca.pem"))
    context.load_cert_chain(str(identity / "cert.pem"), str(identity / "key.pem"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.connect()
        assert conn.sock is not None
        der = conn.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
    finally:
        conn.close()
    return pki.cert_info(ssl.DER_cert_to_PEM_cert(der)).serial


async def test_a_node_stays_ready_across_renewals_of_a_certificate_of_seconds(
        cluster: Cluster, tls_etcd: EtcdCluster, tmp_path: Path) -> None:
    manager_id = (await cluster.rstore.list("Node")).items[0]["metadata"]["name"]
    manager = node_config(tls_etcd, cluster.manager, manager_id, "manager", "fake",
                          cluster.prefix)
    assert manager.ca_dir == cluster.manager.path  # it signs its own renewals
    worker_id = unique_node("rw")
    worker_state = StateDir(tmp_path / "worker")
    worker = node_config(tls_etcd, worker_state, worker_id, "worker", "process",
                         cluster.prefix)
    assert worker.ca_dir is None and worker.renew_dir == worker_state.tls_dir
    first = tmp_path / "first"
    shutil.copytree(worker_state.tls_dir, first)
    async with running_agent(manager) as m, running_agent(worker) as w:
        m.advertise({"joinPort": cluster.join.port})
        t = task("sleeper", 1, worker_id, command=["sleep", "300"])
        await assign(cluster.rstore, t)
        running = await reaches(cluster.rstore, t, "running")
        lease = w.lease_id
        serials = {serial(first)}

        async def renewed_again() -> bool:
            assert await ready(cluster.rstore, worker_id, lease), "the heartbeat lapsed"
            serials.add(serial(worker_state.tls_dir))
            return len(serials) >= 4
        await until(renewed_again, 6 * LIFETIME, "three renewals of the worker's certificate",
                    interval=0.2)
        assert w.renewal is not None and w.renewal.renewals >= 3
        assert m.renewal is not None and m.renewal.renewals >= 1  # signed locally
        assert w.lease_losses == 0 and w.lease_id == lease
        assert w.etcd is not None and w.etcd.tls_reloads >= 3
        again = await reaches(cluster.rstore, t, "running")
        assert again["containerId"] == running["containerId"]
        assert w.log_server is not None
        port = w.log_server.port

        async def presents_the_renewed() -> bool:
            return await asyncio.to_thread(served_serial, port, worker_state.tls_dir) \
                == serial(worker_state.tls_dir)
        await until(presents_the_renewed, 10, "the logs server presents the renewed "
                    "certificate")
        assert cluster.join.renewals >= 1  # its own server certificate

    expiry = pki.cert_info((first / "cert.pem").read_bytes()).not_after
    await until(lambda: now() >= expiry, 2 * LIFETIME, "the first certificate expires")
    old = store.connect(tls_etcd.endpoints, cluster.prefix, tls=TlsConfig(
        first / "ca.pem", first / "cert.pem", first / "key.pem"), retry_for=1)
    try:
        with pytest.raises(TlsError, match="refused the client certificate.*expired"):
            await old.etcd.get(old.keys.cluster())
    finally:
        await old.etcd.close()


def renew(port: int, identity: Path | None, csr: str, ca: Path) -> tuple[int, dict[str, Any]]:
    """POST /renew presenting ``identity`` (None: no certificate); status and body."""
    context = ssl.create_default_context(cafile=str(ca))
    if identity is not None:
        context.load_cert_chain(str(identity / "cert.pem"), str(identity / "key.pem"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("POST", "/renew", body=json.dumps({"csr": csr}),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


async def test_the_renew_route_refuses_whoever_is_not_the_identity_renewed(
        cluster: Cluster, tls_etcd: EtcdCluster, tmp_path: Path) -> None:
    assert tls_etcd.ca is not None
    ca, port = tls_etcd.ca, cluster.join.port
    member = unique_node("rv")
    await cluster.rstore.create({"apiVersion": "kubeless.io/v1", "kind": "Node",
                                 "metadata": {"name": member},
                                 "spec": {"role": "worker", "availability": "active"}})

    def identity(name: str, lifetime: float = 3600.0, signer: pki.CA = ca) -> Path:
        return pki.issue_identity(signer, Path(tempfile.mkdtemp(dir=tmp_path)),
                                  pki.Profile(name, ("127.0.0.1",), pki.USAGES, lifetime))

    def csr(name: str) -> str:
        return pki.make_csr(pki.new_key(), name)

    ours = identity(f"node:{member}")
    ca_file = ours / "ca.pem"
    status, body = await asyncio.to_thread(renew, port, ours, csr(f"node:{member}"), ca_file)
    assert status == 200 and pki.cert_info(body["certificate"]).common_name == f"node:{member}"
    assert pki.cert_info(body["certificate"]).hosts == ("127.0.0.1",)

    refusals = {
        "anonymous": (None, f"node:{member}", 401),
        "another identity": (ours, "node:someone-else", 403),
        "a manager": (identity(f"manager:{member}"), f"manager:{member}", 403),
        "not in the cluster": (identity("node:stranger-node"), "node:stranger-node", 403),
    }
    for case, (who, name, expected) in refusals.items():
        status, body = await asyncio.to_thread(renew, port, who, csr(name), ca_file)
        assert (status, "certificate" in body) == (expected, False), case

    expired = identity(f"node:{member}", lifetime=1.0)
    foreign = identity(f"node:{member}", signer=pki.CA.make("another cluster"))
    await until(lambda: now() >= pki.cert_info((expired / "cert.pem").read_bytes()).not_after,
                10, "the short certificate expires")
    for case, who in (("expired", expired), ("another CA", foreign)):
        with pytest.raises(JoinFailed):  # the handshake refuses it: no reply at all
            await asyncio.to_thread(post_renew, "127.0.0.1", port,
                                    _with_ca(who, ca_file, tmp_path / case), csr(f"node:{member}"))


def _with_ca(identity: Path, ca_file: Path, directory: Path) -> Path:
    """``identity``'s certificate and key beside the cluster CA (to verify the manager)."""
    shutil.copytree(identity, directory)
    shutil.copy(ca_file, directory / "ca.pem")
    return directory
