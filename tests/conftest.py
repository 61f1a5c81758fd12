"""Fixtures shared by every test: real etcd members started on free loopback ports."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from kubeless import store
from tests.support.etcd_server import EtcdCluster

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def etcd_cluster() -> Iterator[EtcdCluster]:
    """One single-member etcd shared by the session; tests isolate by prefix."""
    cluster = EtcdCluster(1).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def own_etcd() -> Iterator[EtcdCluster]:
    """A single-member etcd of the test's own, for tests that stop or compact it."""
    cluster = EtcdCluster(1).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def prefix() -> str:
    return f"/kubeless-test-{next(_prefixes)}"


@pytest.fixture
async def rstore(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[store.ResourceStore]:
    s = store.connect(etcd_cluster.endpoints, prefix)
    yield s
    await s.etcd.close()
