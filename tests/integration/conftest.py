"""Fixtures of the integration tests: the CLI on the test's etcd and prefix."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest

from kubeless import store
from tests.support.cli import Run, run_cli
from tests.support.docker_plane import Plane, connected
from tests.support.etcd_server import EtcdCluster, mark_cluster


def cli_on(cluster: EtcdCluster, prefix: str) -> Run:
    """``run(*args, stdin=, endpoints=, timeout=, namespace=)``: the CLI on ``cluster``
    (its admin identity when TLS) and ``prefix``, which gets a cluster record (no "no
    cluster at prefix" warning); ``endpoints`` replaces the cluster's own."""
    mark_cluster(cluster, prefix)

    def run(*args: str, stdin: str | None = None, endpoints: str | None = None,
            timeout: float = 30, namespace: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(endpoints or cluster.endpoints, prefix, *args, stdin=stdin,
                       timeout=timeout, namespace=namespace, env=cluster.client_env())
    return run


@pytest.fixture
def kubeless(etcd_cluster: EtcdCluster, prefix: str) -> Run:
    """The CLI on the session's TLS etcd and the test's prefix (see ``cli_on``)."""
    return cli_on(etcd_cluster, prefix)


@pytest.fixture
def plain_kubeless(plain_etcd: EtcdCluster, prefix: str) -> Run:
    """The CLI on the session's plain http:// etcd and the test's prefix."""
    return cli_on(plain_etcd, prefix)


@pytest.fixture
async def rs(plane: Plane) -> AsyncIterator[store.ResourceStore]:
    """A store on the module's docker plane (its ``plane`` fixture), closed after the test."""
    s = await connected(plane)
    yield s
    await s.etcd.close()


@pytest.fixture(scope="module")
def tls_etcd() -> Iterator[EtcdCluster]:
    """One etcd for the module with TLS (a CA in its temp dir, https:// client and peer
    URLs, ``--client-cert-auth``), its certificates naming 127.0.0.1 only (so
    ``https://localhost:PORT`` is a wrong host), and etcd's auth off, asked for by
    name: TLS's own behaviours (certificates, hosts, refusals, renewal, logs over TLS)
    and an external etcd as a user has it before ``init`` turns auth on. What each
    identity may do under auth is the session etcd's and test_etcd_auth's."""
    cluster = EtcdCluster(1, tls=True, auth=False, tls_hosts=("127.0.0.1",)).start()
    yield cluster
    cluster.stop()
