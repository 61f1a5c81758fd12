"""Fixtures of the integration tests: the CLI on the test's etcd and prefix."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.support.cli import Run, run_cli
from tests.support.etcd_server import EtcdCluster, mark_cluster


@pytest.fixture
def kubeless(etcd_cluster: EtcdCluster, prefix: str) -> Run:
    """``kubeless(*args, stdin=, endpoints=, timeout=, namespace=)``: the CLI on the test's
    prefix, which holds a cluster record (no "no cluster at prefix" warning)."""
    mark_cluster(etcd_cluster.endpoints, prefix)

    def run(*args: str, stdin: str | None = None, endpoints: str | None = None,
            timeout: float = 30, namespace: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(endpoints or etcd_cluster.endpoints, prefix, *args, stdin=stdin,
                       timeout=timeout, namespace=namespace)
    return run


@pytest.fixture(scope="module")
def tls_etcd() -> Iterator[EtcdCluster]:
    """One etcd for the module with TLS (a CA in its temp dir, https:// client and peer
    URLs, ``--client-cert-auth``), its certificates naming 127.0.0.1 only."""
    cluster = EtcdCluster(1, tls=True, tls_hosts=("127.0.0.1",)).start()
    yield cluster
    cluster.stop()
