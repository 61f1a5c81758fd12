"""Task logs over TLS: a joined node's agent serves them to cluster identities only.

A TLS etcd (conftest's ``tls_etcd``) and an in-process agent (process runtime)
whose state dir holds a node identity in ``tls/`` as ``join`` writes it (client
and server usage, the node's address as SAN): the agent picks it up
(``AgentConfig.from_node_state``), serves logs over TLS only and says
``logsTLS`` in its heartbeat. The real ``kubeless`` reads them with the user's
identity; a client without a certificate, plain HTTP, and a certificate from
another CA get no byte of HTTP; the CLI names each failure in one line.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubeless import store
from kubeless.cluster import pki
from kubeless.store import TlsConfig
from kubeless_agent import running_agent
from kubeless_agent.main import AgentProcess
from kubeless_cli.context import CliError
from kubeless_cli.logs_cmd import stream_tasks
from tests.support.agents import joined_agent_config
from tests.support.logs_probe import exchange
from tests.support.cli import run_cli, tls_flags
from tests.support.cli_errors import assert_one_error_line
from tests.support.etcd_server import EtcdCluster
from tests.support.workloads import assign, reaches, task, unique_node

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def admin(tls_etcd: EtcdCluster) -> Path:
    return tls_etcd.identity("admin:logs-reader")


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An admin identity from another CA (its own ca.pem is that CA)."""
    return pki.issue_identity(pki.CA.make("stranger"), tmp_path_factory.mktemp("stranger"),
                              pki.Profile("admin:stranger"))


def tls_of(d: Path) -> TlsConfig:
    return TlsConfig(d / "ca.pem", d / "cert.pem", d / "key.pem")


@pytest.fixture
async def tls_store(tls_etcd: EtcdCluster, admin: Path,
                    prefix: str) -> AsyncIterator[store.ResourceStore]:
    s = store.connect(tls_etcd.endpoints, prefix, tls=tls_of(admin))
    yield s
    await s.etcd.close()


@pytest.fixture
async def agent(tls_etcd: EtcdCluster, prefix: str, tmp_path: Path) -> AsyncIterator[AgentProcess]:
    """A joined node's agent: its identity in ``<state-dir>/tls/``, picked up from there."""
    config = joined_agent_config(tls_etcd, prefix, unique_node("lt"), tmp_path / "state")
    async with running_agent(config) as a:
        yield a


async def printed(rstore: store.ResourceStore, node: str, n: int = 3) -> dict[str, Any]:
    """A task of service printer on ``node`` that printed ``line 1`` .. ``line n``."""
    t = task("printer", 1, node, command=["sh", "-c", " ".join(
        f"echo line {i};" for i in range(1, n + 1))])
    await assign(rstore, t)
    await reaches(rstore, t, "complete")
    return t


async def test_logs_over_tls_with_the_users_identity(agent: AgentProcess, tls_etcd: EtcdCluster,
                                                     prefix: str, admin: Path,
                                                     tls_store: store.ResourceStore,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    node = agent.node_ids[0]
    t = await printed(tls_store, node)
    kv, _ = await tls_store.etcd.get(tls_store.keys.heartbeat(node))
    assert kv is not None and json.loads(kv.value)["logsTLS"] is True
    tid = t["metadata"]["name"]
    res = await asyncio.to_thread(run_cli, tls_etcd.endpoints, prefix, *tls_flags(admin),
                                  "logs", tid, "--tail", "2")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"printer.1.{tid}@{node} | line 2",
                                       f"printer.1.{tid}@{node} | line 3"]
    monkeypatch.setenv("KUBELESS_CERT_PATH", str(admin))
    res = await asyncio.to_thread(run_cli, tls_etcd.endpoints, prefix, "service", "logs",
                                  "printer", "--no-prefix")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["line 1", "line 2", "line 3"]


async def test_clients_without_a_cluster_certificate_get_nothing(
        agent: AgentProcess, admin: Path, stranger: Path) -> None:
    assert agent.log_server is not None and agent.log_server.tls
    port = agent.log_server.port

    def context(ca: Path, identity: Path | None) -> ssl.SSLContext:
        c = ssl.create_default_context(cafile=str(ca))
        if identity is not None:
            c.load_cert_chain(str(identity / "cert.pem"), str(identity / "key.pem"))
        return c

    anonymous = await asyncio.to_thread(exchange, "127.0.0.1", port, context(admin / "ca.pem", None))
    plain = await asyncio.to_thread(exchange, "127.0.0.1", port, None)
    foreign = await asyncio.to_thread(exchange, "127.0.0.1", port, context(admin / "ca.pem", stranger))
    assert (anonymous, foreign) == (b"", b"")
    assert b"HTTP" not in plain
    member = await asyncio.to_thread(exchange, "127.0.0.1", port, context(admin / "ca.pem", admin))
    assert member.startswith(b"HTTP/1.1 404 ")  # the same client with a cluster identity


@pytest.mark.parametrize("case, identity, needle", [
    ("no identity", lambda admin, stranger: None,
     "the logs of node {node} are served over TLS: give --cert/--key or KUBELESS_CERT_PATH"),
    ("a certificate from another CA", lambda admin, stranger: TlsConfig(
        admin / "ca.pem", stranger / "cert.pem", stranger / "key.pem"),
     "TLS: node {node} at 127.0.0.1:{port} refused the client certificate"),
    ("the node's CA is not the one given", lambda admin, stranger: TlsConfig(
        stranger / "ca.pem", admin / "cert.pem", admin / "key.pem"),
     "TLS: node {node}'s certificate at 127.0.0.1:{port} is not signed by the CA in"),
])
async def test_the_cli_says_why_it_cannot_read(agent: AgentProcess, admin: Path,
                                               stranger: Path, tls_store: store.ResourceStore,
                                               case: str, identity: Any, needle: str) -> None:
    node = agent.node_ids[0]
    t = await printed(tls_store, node, 1)
    assert agent.log_server is not None
    with pytest.raises(CliError) as caught:
        await stream_tasks(tls_store, [t], False, None, True, strict=True,
                           tls=identity(admin, stranger))
    assert needle.format(node=node, port=agent.log_server.port) in caught.value.message, case


async def test_a_cluster_certificate_that_names_no_identity_is_forbidden(
        agent: AgentProcess, tls_etcd: EtcdCluster, prefix: str,
        tls_store: store.ResourceStore) -> None:
    """etcd takes any certificate of the cluster CA (auth off); the node only identities."""
    t = await printed(tls_store, agent.node_ids[0], 1)
    intruder = tls_etcd.identity("etcd-intruder")
    res = await asyncio.to_thread(run_cli, tls_etcd.endpoints, prefix, *tls_flags(intruder),
                                  "logs", t["metadata"]["name"])
    assert_one_error_line(res, "the client certificate names no kubeless identity")
