"""TLS to etcd members on different hosts (127.0.0.1, .2, .3 of Linux's loopback).

One gRPC channel verifies one name: kubeless's etcd certificates all hold the
shared name ``etcd.kubeless`` beside their member's addresses, and a channel to
members on different hosts verifies that name (``kubeless.store.tls.server_name``).
A member whose certificate lacks it (made by someone else) is one clear sentence.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeless import store
from kubeless.cluster import pki
from kubeless.store import Put, TlsConfig, TlsError
from tests.support.cli_errors import assert_one_error_line
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def on_hosts(size: int, *, shared_name: bool = True) -> EtcdCluster:
    """``size`` members, member i on HOSTS[i], certificates naming every member's address
    (and the shared name unless ``shared_name`` is off: a certificate made elsewhere)."""
    cluster = EtcdCluster(size, tls=True, tls_hosts=HOSTS[:size],
                          auth=shared_name)  # no client verifies the others: none turns auth on
    for member, host in zip(cluster.members, HOSTS):
        member.host = host
    if not shared_name:
        assert cluster.ca is not None and cluster.root is not None
        key, cert = cluster.ca.issue(pki.Profile("etcd-server", HOSTS[:size], pki.USAGES))
        pki.write_private(cluster.root / "pki" / "server.key", key)
        pki.write_public(cluster.root / "pki" / "server.crt", cert)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise


def config(identity: Path) -> TlsConfig:
    return TlsConfig(identity / "ca.pem", identity / "cert.pem", identity / "key.pem")


@pytest.fixture(scope="module")
def three() -> Iterator[EtcdCluster]:
    cluster = on_hosts(3)
    yield cluster
    cluster.stop()


async def test_one_channel_over_members_on_three_addresses(three: EtcdCluster,
                                                           prefix: str) -> None:
    tls = config(three.admin_identity())
    assert len({m.host for m in three.members}) == 3
    every = store.connect(three.endpoints, prefix, tls=tls)
    try:
        assert (await every.etcd.txn([], [Put(f"{prefix}/k", b"v")])).succeeded
    finally:
        await every.etcd.close()
    for member in three.members:  # each alone: verified for its own address
        one = store.connect(member.client_url, prefix, tls=tls)
        try:
            kv, _ = await one.etcd.get(f"{prefix}/k")
            assert kv is not None and kv.value == b"v"
        finally:
            await one.etcd.close()


def test_the_cli_reaches_members_on_different_hosts(three: EtcdCluster, prefix: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBELESS_CERT_PATH"}
    env.update(KUBELESS_ENDPOINTS=three.endpoints, KUBELESS_PREFIX=prefix,
               KUBELESS_CERT_PATH=str(three.client_identity("admin:cli")))
    res = subprocess.run([sys.executable, "-m", "kubeless_cli.main", "get", "services"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert res.returncode == 0, res.stderr


async def test_certificates_without_the_shared_name_are_one_sentence(prefix: str) -> None:
    cluster = on_hosts(2, shared_name=False)
    try:
        tls = config(cluster.identity("admin:elsewhere"))
        both = store.connect(cluster.endpoints, prefix, retry_for=2.0, tls=tls)
        try:
            with pytest.raises(TlsError, match="does not hold the name etcd.kubeless") as err:
                await both.etcd.get(f"{prefix}/k")
            assert "\n" not in str(err.value)
        finally:
            await both.etcd.close()
        env = {k: v for k, v in os.environ.items() if k != "KUBELESS_CERT_PATH"}
        env.update(KUBELESS_ENDPOINTS=cluster.endpoints, KUBELESS_PREFIX=prefix,
                   KUBELESS_CERT_PATH=str(tls.cacert.parent if tls.cacert else ""))
        res = subprocess.run([sys.executable, "-m", "kubeless_cli.main", "get", "services"],
                             capture_output=True, text=True, env=env, timeout=30)
        assert_one_error_line(res, "does not hold the name etcd.kubeless")
    finally:
        cluster.stop()
