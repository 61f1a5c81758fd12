"""The autoscaler on Docker, end to end: real load from real containers.

The plane (``tests.support.docker_plane``) runs the controllers (the autoscaler every
1 s) and two docker agents reporting load every 0.5 s. A service of the kubeless-demo
image busy-loops until a file appears in a directory the test binds into its tasks,
then sleeps; it reserves 0.1 CPU and targets 100% of it, so one busy task is several
times its target: the autoscaler scales it to its max, 3, at once. The test then
creates the file: the load stops, and after ``scaleDownDelay`` (2 s) of low load the
service is back at 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeless import store
from lab.waiting import until
from tests.support.docker_plane import Plane, running_plane
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration

# Busy until /ctl/stop exists (checked every 20,000 iterations of shell arithmetic), then idle.
LOOP = ("trap 'exit 0' TERM; while [ ! -e /ctl/stop ]; do i=0; "
        "while [ $i -lt 20000 ]; do i=$((i+1)); done; done; while :; do sleep 1; done")


@pytest.fixture(scope="module")
def plane(etcd_cluster: EtcdCluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Plane]:
    with running_plane(etcd_cluster, "autoscale", tmp_path_factory.mktemp("autoscale-docker"),
                       agent_extras=lambda node, addr, index: ["--dns-addr", "none",
                                                               "--load-period", "0.5s"],
                       controller_extras=("--autoscale-period", "1")) as p:
        yield p


async def autoscale_of(rs: store.ResourceStore) -> tuple[int, dict[str, Any]]:
    svc = await rs.get("Service", "hot", "default")
    assert svc is not None
    return svc["spec"]["replicas"], (svc.get("status") or {}).get("autoscale") or {}


async def test_scales_up_under_load_and_back_down_after_it(plane: Plane, rs: store.ResourceStore,
                                                           tmp_path: Path) -> None:
    control = tmp_path / "ctl"
    control.mkdir()
    plane.apply("hot", 1, {"command": ["sh", "-c", LOOP],
                           "mounts": [{"type": "bind", "source": str(control),
                                       "target": "/ctl", "readOnly": True}],
                           "resources": {"reservations": {"cpus": 0.1}}},
                ports=[], autoscale={"min": 1, "max": 3, "targetCPU": 100,
                                     "scaleDownDelay": "2s"})

    async def replicas(count: int) -> dict[str, Any] | None:
        plane.check()
        held, status = await autoscale_of(rs)
        return status if held == count and status.get("desired") == count else None

    status = await until(lambda: replicas(3), 120, "hot scaled up to 3")
    assert status["lastScaleTime"], status
    (control / "stop").touch()
    status = await until(lambda: replicas(1), 120, "hot back at 1 once idle")
    assert status["lastDecision"]["to"] == 1, json.dumps(status)
    svc = await rs.get("Service", "hot", "default")
    assert svc is not None and svc["metadata"]["generation"] == 1  # no rollout, no new spec
    shown = plane.cli("describe", "service", "hot")
    assert "Autoscale:\n  Replicas:    1 (min 1, max 3)" in shown, shown
