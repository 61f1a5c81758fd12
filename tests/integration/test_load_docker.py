"""Load reports on Docker, as a user sees them: the agents measure, publish, ``top`` prints.

The plane (``tests.support.docker_plane``): the controllers and two docker agents,
each confined by etcd's auth to its own keys (``node:<id>``: its report is written
under that identity), TLS everywhere, reports every 0.5 s. A service busy-looping in
the kubeless-demo image and an idle one are pinned to node a; a web service's
requests go through node b's mesh.

What is checked: node a's report shows the busy task busy (above 0.3 cores: the host
is shared) and the idle one near zero, both with their memory; the report is bound to the node's heartbeat
lease; node b's report counts the connections its mesh sent to the web task; the
task metrics follow; ``kubeless top tasks|services|nodes`` print them (over TLS, as
every read command).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kubeless import store
from kubeless.api.load import LoadReport, is_fresh, parse_report
from lab.waiting import until
from tests.support.docker_plane import Plane, get, published, running_plane
from tests.support.etcd_server import EtcdCluster, free_port

pytestmark = pytest.mark.integration

BUSY = ["sh", "-c", "trap 'exit 0' TERM; while :; do :; done"]
IDLE = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
METRICS_PORT = free_port()
# A busy loop uses a whole core on an idle host; on this 2-core machine shared by other
# suites it was measured at 0.53 with the host 100% busy: 0.3 still tells it from idle.
BUSY_CORES = 0.3


@pytest.fixture(scope="module")
def plane(etcd_cluster: EtcdCluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Plane]:
    def extras(node: str, addr: str, index: int) -> list[str]:
        metrics = ["--metrics-port", str(METRICS_PORT)] if index == 0 else []
        return ["--dns-addr", "none", "--load-period", "0.5s", *metrics]

    with running_plane(etcd_cluster, "load", tmp_path_factory.mktemp("load-docker"),
                       agent_extras=extras) as p:
        yield p


async def load_of(rs: store.ResourceStore, node: str) -> LoadReport | None:
    kv, _ = await rs.etcd.get(rs.keys.load(node))
    return parse_report(json.loads(kv.value)) if kv is not None else None


def tasks_of(report: LoadReport, service: str) -> list[Any]:
    return [t for t in report.tasks.values() if t.service == service]


def scrape() -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as r:
        return str(r.read().decode())


async def test_busy_and_idle_tasks_in_the_report_and_top(plane: Plane,
                                                         rs: store.ResourceStore) -> None:
    plane.apply("busy", 1, {"command": BUSY}, ports=[])
    plane.apply("idle", 1, {"command": IDLE}, ports=[])
    a = plane.nodes[0]

    async def busy_and_idle() -> LoadReport | None:
        plane.check()
        report = await load_of(rs, a)
        if report is None:
            return None
        busy, idle = tasks_of(report, "busy"), tasks_of(report, "idle")
        ok = busy and idle and busy[0].cpu > BUSY_CORES and idle[0].cpu < 0.1
        return report if ok else None

    report = await until(busy_and_idle, 90, "the busy task busy, the idle one near 0")
    assert tasks_of(report, "busy")[0].memory > 0 and tasks_of(report, "idle")[0].memory > 0
    assert report.host.cpus >= 1 and report.host.memory_total > report.host.memory > 0
    assert is_fresh(report, report.timestamp) and report.period == 0.5

    kv, _ = await rs.etcd.get(rs.keys.load(a))  # bound to the heartbeat's lease
    beat, _ = await rs.etcd.get(rs.keys.heartbeat(a))
    assert kv is not None and beat is not None and kv.lease == beat.lease != 0

    metrics = scrape()
    busy_id = next(tid for tid, t in report.tasks.items() if t.service == "busy")
    assert f'kubeless_agent_task_cpu_cores{{namespace="default",service="busy",' \
           f'task="{busy_id}"}}' in metrics
    assert "kubeless_agent_host_cpus" in metrics

    out = plane.cli("top", "tasks", "--sort-by", "cpu")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TASK", "ID", "NODE"]
    assert lines[1].startswith("busy.1") and a in lines[1], out
    assert any(line.startswith("idle.1") for line in lines[2:]), out
    services = json.loads(plane.cli("top", "services", "-o", "json"))
    assert {s["service"] for s in services} >= {"busy", "idle"}
    nodes = plane.cli("top", "nodes")
    assert a in nodes and plane.nodes[1] in nodes, nodes
    assert "no running tasks measured in namespace elsewhere" in \
        plane.cli("top", "tasks", "-n", "elsewhere")


async def test_a_mesh_counts_the_connections_it_sends(plane: Plane,
                                                      rs: store.ResourceStore) -> None:
    plane.apply("web", 1)
    port = await published(rs, "web")
    b = plane.nodes[1]

    async def counted() -> float | None:
        for _ in range(5):
            await get(plane.b, port)  # node b's mesh, to the task on node a
        report = await load_of(rs, b)
        rates = report.connections if report is not None else {}
        return sum(rates.values()) or None

    assert await until(counted, 60, "node b's report counting connections") > 0
