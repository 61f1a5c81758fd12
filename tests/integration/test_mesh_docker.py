"""The routing mesh and DNS end to end: real etcd, real processes, the real Docker Engine.

One ``python -m controllers`` (every controller, endpoints included) and two
``python -m kubeless_agent --runtime docker`` processes sharing the engine,
one on ``plane.a`` (node ``<id>-a``) and one on ``plane.b`` (``<id>-b``), serve
the module on a key prefix of its own. Services are applied with the CLI
(so ingress ports get their number from 30000-32767) and pinned to node a
by a constraint, so node b runs none of their tasks and answers through
its mesh only. Both agents relay in userspace: the two "nodes" share this host's
network namespace, where a kernel path would reach node a's tasks through Docker's
userland proxy on a loopback host port, which real nodes never do; the kernel path's
rolling update under load is the e2e cluster's (tests/e2e/test_cluster_routes.py),
whose hosts each have a namespace of their own.

What is checked: a published port answers on the node that runs no task;
the endpoints document follows scale and a killed container; a name
resolves from inside a container (busybox nslookup; node addresses here are
host loopback addresses, so a container can resolve but not reach them);
a rolling update (start-first, healthcheck, 4 replicas) under a steady
stream of requests through node b's mesh loses no request.

Containers are removed by node label after the module, even when a test
fails. Under CI=true a missing engine fails these tests.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from dnslib import DNSRecord

from kubeless import store
from lab.waiting import until
from tests.support.dns_upstream import Upstream
from tests.support.docker_plane import (Plane, endpoint_count, endpoints_of, get,
                                        published, running_plane)
from tests.support.etcd_server import EtcdCluster, free_port
from tests.support.workloads import FAST_HEALTHCHECK as HEALTHCHECK

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bridge_dns_addresses() -> Iterator[tuple[str, str]]:
    """Two addresses of this module's own on docker0, one per agent, for the containers'
    nameserver: an agent gives its containers its DNS only where it listens itself, and
    the gateway's port 53 may be held by another cluster's agent on this shared host."""
    added: list[str] = []
    for _ in range(40):
        addr = f"172.17.255.{100 + int(uuid.uuid4().hex[:2], 16) % 150}"
        if subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", "docker0"],
                          capture_output=True).returncode == 0:
            added.append(addr)
        if len(added) == 2:
            break
    try:
        assert len(added) == 2, "no free address on docker0 for this module's DNS"
        yield added[0], added[1]
    finally:
        for addr in added:
            subprocess.run(["ip", "addr", "del", f"{addr}/32", "dev", "docker0"],
                           capture_output=True)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream({"outside.example.test": ["A 192.0.2.77"]}) as up:
        yield up


@pytest.fixture(scope="module")
def plane(bridge_dns_addresses: tuple[str, str], upstream: Upstream, etcd_cluster: EtcdCluster,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    logs = tmp_path_factory.mktemp("mesh-docker")
    resolv_conf = str(upstream.resolv_conf(logs))
    dns_port = free_port()
    with running_plane(etcd_cluster, "mesh", logs, lambda node, addr, i: [
            "--dns-addr", f"{addr}:{dns_port},{bridge_dns_addresses[i]}:53",
            "--resolv-conf", resolv_conf]) as p:
        p.dns_port, p.dns_bridge, p.upstream = dns_port, bridge_dns_addresses[0], upstream
        yield p


async def test_the_published_port_answers_on_the_node_without_tasks(
        plane: Plane, rs: store.ResourceStore) -> None:
    plane.apply("web", 2)
    port = await published(rs, "web")
    assert 30000 <= port <= 32767
    await until(lambda: endpoint_count(rs, "web", 2), 60, "2 endpoints")
    doc = await endpoints_of(rs, "web")
    assert doc is not None and {e["node"] for e in doc["endpoints"]} == {plane.nodes[0]}
    # the mesh of b sees what etcd says a moment later: round robin over both tasks
    bodies = await until(lambda: _distinct(plane.b, port, 6, 2), 20, "both tasks answer through b")
    assert all(b and b.startswith("version 1 from web.") for b in bodies), bodies
    await until(lambda: get(plane.a, port), 20, "the node running the tasks answers too")


async def test_endpoints_follow_scale_and_failures(plane: Plane,
                                                   rs: store.ResourceStore) -> None:
    plane.apply("web", 3)
    port = await published(rs, "web")
    await until(lambda: endpoint_count(rs, "web", 3), 60, "3 endpoints after scale up")
    doc = await endpoints_of(rs, "web")
    assert doc is not None
    victim = doc["endpoints"][0]
    container = plane.engine.containers.get(
        next(c.id for c in plane.engine.containers.list(
            filters={"label": f"kubeless.task.id={victim['task']}"})))
    await asyncio.to_thread(container.kill)
    await until(lambda: _without(rs, victim["task"]), 30, "the killed task leaves")
    await until(lambda: endpoint_count(rs, "web", 3), 60, "replaced")
    assert await get(plane.b, port) is not None
    plane.apply("web", 1)
    await until(lambda: endpoint_count(rs, "web", 1), 60, "1 endpoint after scale down")
    await until(lambda: _distinct(plane.b, port, 4, 1), 10, "one task answers through b")


async def _distinct(host: str, port: int, tries: int, want: int) -> list[str] | None:
    """``tries`` answers with exactly ``want`` distinct bodies (None: not yet, or a failure)."""
    bodies = [await get(host, port) for _ in range(tries)]
    ok = None not in bodies and len(set(bodies)) == want
    return [b for b in bodies if b is not None] if ok else None


async def _without(s: store.ResourceStore, task: str) -> bool:
    doc = await endpoints_of(s, "web")
    return doc is not None and task not in {e["task"] for e in doc["endpoints"]}


async def test_a_name_resolves_inside_a_container(plane: Plane, rs: store.ResourceStore) -> None:
    plane.apply("web", 1)
    await until(lambda: endpoint_count(rs, "web", 1), 60, "web runs")
    await until(lambda: _bridge_answers(plane), 30,
                f"{plane.dns_bridge}:53 serves this cluster")
    plane.apply("probe", 1, ports=[])
    await until(lambda: _running_container(plane, "probe"), 60, "probe runs")
    cid = await _running_container(plane, "probe")
    out = await asyncio.to_thread(plane.engine.containers.get(cid).exec_run,
                                  ["nslookup", "web.default.kubeless"])
    text = out.output.decode()
    assert out.exit_code == 0 and plane.a in text and plane.b in text, text
    out = await asyncio.to_thread(plane.engine.containers.get(cid).exec_run,
                                  ["cat", "/etc/resolv.conf"])
    resolv = out.output.decode()
    assert "search default.kubeless kubeless" in resolv
    # the agent's DNS only: musl (busybox, Alpine) asks every nameserver at once
    assert [line.split()[1] for line in resolv.splitlines()
            if line.startswith("nameserver")] == [plane.dns_bridge], resolv
    out = await asyncio.to_thread(plane.engine.containers.get(cid).exec_run,
                                  ["nslookup", "outside.example.test"])
    assert out.exit_code == 0 and "192.0.2.77" in out.output.decode(), out.output.decode()
    assert ("outside.example.test.", "A") in {q[:2] for q in plane.upstream.asked}
    out = await asyncio.to_thread(plane.engine.containers.get(cid).exec_run,
                                  ["nslookup", "web"])
    assert plane.a in out.output.decode(), out.output.decode()  # the search domain
    out = await asyncio.to_thread(plane.engine.containers.get(cid).exec_run,
                                  ["wget", "-q", "-T", "2", "-O", "-", "http://web/"])
    assert "bad address" not in out.output.decode()  # resolved (127.x.y.z is the container's)


async def _bridge_answers(plane: Plane) -> bool:
    try:
        raw = await asyncio.to_thread(DNSRecord.question("web.default.kubeless").send,
                                      plane.dns_bridge, 53, timeout=2)
    except OSError:
        return False
    return sorted(str(rr.rdata) for rr in DNSRecord.parse(raw).rr) == sorted([plane.a, plane.b])


async def _running_container(plane: Plane, service: str) -> str | None:
    found = await asyncio.to_thread(plane.engine.containers.list, filters={
        "label": [f"kubeless.service.name={service}", f"kubeless.node.id={plane.nodes[0]}"]})
    return found[0].id if found else None


async def test_a_start_first_rolling_update_under_load_loses_no_request(
        plane: Plane, rs: store.ResourceStore) -> None:
    update = {"parallelism": 1, "delay": "0s", "order": "start-first", "monitor": "1s",
              "failureAction": "pause"}
    plane.apply("roll", 4, template={"healthcheck": HEALTHCHECK}, update=update)
    port = await published(rs, "roll")
    await until(lambda: endpoint_count(rs, "roll", 4), 90, "4 endpoints")
    stop = asyncio.Event()
    results: list[str | None] = []

    async def load() -> None:
        while not stop.is_set():
            results.append(await get(plane.b, port))

    loaders = [asyncio.create_task(load()) for _ in range(4)]
    try:
        await until(lambda: len(results) > 50, 30, "load flows")
        plane.cli("service", "update", "-d", "roll", "--env-add", "VERSION=2")
        await until(lambda: _rolled(rs, plane), 180, "rollout completed")
        await until(lambda: sum(1 for r in results[-40:] if r and "version 2" in r) == 40,
                    30, "only version 2 answers")
    finally:
        stop.set()
        await asyncio.gather(*loaders)
    failed = sum(1 for r in results if r is None)
    versions = {r.split(" from ")[0] for r in results if r}
    assert versions == {"version 1", "version 2"}
    assert failed == 0, f"{failed} of {len(results)} requests failed"
    print(f"rolling update: {len(results)} requests through the mesh, {failed} failed")


async def _rolled(s: store.ResourceStore, plane: Plane) -> bool:
    plane.check()
    svc = await s.get("Service", "roll", "default")
    state = (((svc or {}).get("status") or {}).get("updateStatus") or {}).get("state")
    if state == "paused":
        raise AssertionError(f"the rollout paused: {svc['status']['updateStatus']}")
    return state == "completed" and await endpoint_count(s, "roll", 4)
