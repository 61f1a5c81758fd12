"""A replicated job on Docker: 6 completions of ``sh -c 'sleep 1'`` (the kubeless-demo image),
at most 2 at once, counted from every agent report (an etcd watch), on the shared docker
test plane (``tests.support.docker_plane``: real controllers and agents, TLS etcd with auth).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kubeless import store
from lab.waiting import until
from tests.support.docker_plane import Plane, running_plane
from tests.support.etcd_server import EtcdCluster
from tests.support.reports import ReportCounter
from tests.support.workloads import IMAGE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plane(etcd_cluster: EtcdCluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Plane]:
    with running_plane(etcd_cluster, "jobs", tmp_path_factory.mktemp("jobs-docker")) as p:
        yield p


async def test_replicated_job_of_6_never_runs_3_at_once(plane: Plane,
                                                         rs: store.ResourceStore) -> None:
    counter = await ReportCounter(rs).start()
    job = {"apiVersion": "kubeless.io/v1", "kind": "Service",
           "metadata": {"name": "batch", "namespace": "default"},
           "spec": {"mode": "replicated-job", "replicas": 6, "maxConcurrent": 2,
                    "template": {"image": IMAGE, "command": ["sh", "-c", "sleep 1"]},
                    "placement": {"constraints": [f"node.id=={plane.nodes[0]}"]}}}
    plane.cli("apply", "-f", "-", stdin=yaml.safe_dump(job))

    async def complete() -> Any:
        plane.check()
        svc = await rs.get("Service", "batch", "default")
        found = ((svc or {}).get("status") or {}).get("job") or {}
        return found if found.get("state") == "complete" else None
    found = await until(complete, 90, "6 completions")
    await counter.stop()
    assert (found["succeeded"], found["failed"]) == (6, 0)
    assert counter.max_going <= 2, counter.max_going
    assert counter.complete == 6
    assert "6/6 (completed)" in plane.cli("service", "ls")
    plane.cli("delete", "service", "batch")
