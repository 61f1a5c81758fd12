"""Fixtures of the end-to-end tests: one real multi-host cluster for them all.

``cluster`` starts ``lab.cluster.Cluster`` (3 managers, 2 workers, each with
its own dockerd) once for the package and purges it at the end (each start
costs 20-40 s; ``healthy`` gives every test a whole cluster anyway). Where the machine
cannot host it (no root, no network namespaces, no dockerd, no etcd), the
module is skipped, and under ``CI=true`` it fails instead.

``healthy`` runs after every test: it undoes whatever faults the test left
(heal, resume, start what was killed) and waits until every node is ready
and the controllers lead again, then deletes every service, so each scenario
starts from a whole, empty cluster.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from kubeless import store
from lab.cluster import waits
from lab.cluster.harness import Cluster, preflight, run_sync
from lab.cluster.system import SetupError

HEARTBEAT_TTL = 6
LEASE_TTL = 3


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    try:
        preflight()
    except SetupError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the e2e cluster cannot run here: {err}")
        pytest.skip(f"the e2e cluster cannot run here: {err}")
    c = Cluster(3, 2, heartbeat_ttl=HEARTBEAT_TTL, lease_ttl=LEASE_TTL)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(autouse=True)
def healthy(cluster: Cluster) -> Iterator[None]:
    yield
    cluster.restore()
    cluster.wait_etcd(60)
    run_sync(waits.cluster_ready(cluster, 60))
    run_sync(waits.delete_all(cluster))


@pytest.fixture
async def rs(cluster: Cluster) -> AsyncIterator[store.ResourceStore]:
    s = waits.connect(cluster)
    yield s
    await s.etcd.close()
