"""Rebalancing end to end on Docker: a node joining an uneven cluster gets its share with
zero failed requests through the mesh.

The shared docker plane (tests/support/docker_plane.py: controllers and two docker
agents, a and b, on loopback addresses of its own, meshes in userspace, agents
draining 2 s before a task behind the mesh stops) runs a start-first service of 4
replicas with ``placement.rebalance: true`` and no constraint, so 2 run on a and 2 on
b. While four loaders send requests through b's mesh, a third agent (c) joins; within
a deadline c runs its share (the spread over a, b, c even: max - min <= 1), answers
through the mesh, and no request failed. Containers of c are removed and its agent
stopped (by PID) with the plane's.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest

from kubeless import store
from lab.waiting import until
from tests.support.docker_plane import (COMMAND, Plane, endpoints_of, endpoint_count, get,
                                        published, running_plane, spawn_agent)
from tests.support.etcd_server import EtcdCluster
from tests.support.workloads import FAST_HEALTHCHECK, remove_node_containers

pytestmark = pytest.mark.integration
DRAIN = ["--dns-addr", "none", "--drain-period", "2s"]
# The plane's web server, answering with its task's id (a moved task keeps its slot's name).
BY_ID = [COMMAND[0], COMMAND[1], COMMAND[2].replace("KUBELESS_TASK_NAME", "KUBELESS_TASK_ID")]


@pytest.fixture(scope="module")
def plane(etcd_cluster: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    logs = tmp_path_factory.mktemp("rebalance-docker")
    with running_plane(etcd_cluster, "rebal", logs, lambda node, addr, i: DRAIN) as p:
        yield p


async def test_a_joining_node_gets_its_share_with_no_failed_request(
        plane: Plane, rs: store.ResourceStore) -> None:
    from kubeless_agent.task_files import DEFAULT_FILES_DIR, remove_node_files

    update = {"parallelism": 1, "delay": "0s", "order": "start-first", "monitor": "1s",
              "failureAction": "pause"}
    plane.apply("web", 4, template={"healthcheck": FAST_HEALTHCHECK, "command": BY_ID}, update=update,
                placement={"rebalance": True})
    port = await published(rs, "web")
    await until(lambda: endpoint_count(rs, "web", 4), 90, "4 endpoints")
    assert sorted((await _spread(rs)).values()) == [2, 2]

    stop = asyncio.Event()
    results: list[str | None] = []

    async def load() -> None:
        while not stop.is_set():
            results.append(await get(plane.b, port))

    joined = f"{plane.nodes[0][:-2]}-c"
    addr = plane.a.rsplit(".", 1)[0] + ".4"
    loaders = [asyncio.create_task(load()) for _ in range(4)]
    try:
        await until(lambda: len(results) > 50, 30, "load flows")
        plane.procs.append(spawn_agent(plane, joined, addr, DRAIN))
        spread = await until(lambda: _shared(rs, plane, joined), 120, f"{joined} gets its share")
        before = len(results)
        await until(lambda: len(results) > before + 50, 30, "load flows after the move")
    finally:
        stop.set()
        await asyncio.gather(*loaders)
        remove_node_containers(plane.engine, joined)
        remove_node_files(DEFAULT_FILES_DIR, joined)
    failed = sum(1 for r in results if r is None)
    assert failed == 0, f"{failed} of {len(results)} requests failed"
    assert max(spread.values()) - min(spread.values()) <= 1 and spread[joined] >= 1, spread
    doc = await endpoints_of(rs, "web")
    assert doc is not None
    on_joined = {e["task"] for e in doc["endpoints"] if e["node"] == joined}
    assert any(any(task in r for task in on_joined) for r in results if r), \
        "the moved task answered through the mesh"
    print(f"rebalance: {len(results)} requests through the mesh, {failed} failed, "
          f"spread {dict(spread)}")


async def _spread(s: store.ResourceStore) -> Counter[str]:
    doc = await endpoints_of(s, "web")
    return Counter(e["node"] for e in (doc or {}).get("endpoints") or [])


async def _shared(s: store.ResourceStore, plane: Plane, joined: str) -> Counter[str] | None:
    """The endpoints per node once the rebalance is done, every node holding one or more."""
    plane.check()
    svc = await s.get("Service", "web", "default")
    balance = ((svc or {}).get("status") or {}).get("rebalance") or {}
    spread = await _spread(s)
    if balance.get("state") != "balanced" or not balance.get("moved") or \
            sum(spread.values()) != 4 or joined not in spread:
        return None
    return spread
