"""Endpoints and published ports against a real etcd.

The endpoints controller runs in its own ``ControllerRunner`` beside a
``HollowCluster`` (replication, scheduler, health; hollow nodes on the fake
runtime, which reports the published ports of a running task; over TLS, each
part with its own identity), and the
tests wait, with deadlines, for ``endpoints/<ns>/<service>`` to follow
scale, failures, a lost node and a deletion. The published-port tests run
the CLI as a user does (subprocesses, over TLS with the admin identity) and call
its guarded create concurrently in-process to show that two clashing writers
cannot both win.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeless import store
from kubeless.store import Put
from kubeless_agent.runtime.fake import FakeRuntime
from kubeless_cli.context import CliError
from lab.hollow import HollowCluster, running, service
from lab.waiting import until
from tests.support.cli import Run
from tests.support.endpoints_runner import Endpoints
from tests.support.etcd_server import EtcdCluster

from controllers.endpoints.controller import EndpointsController

pytestmark = pytest.mark.integration
Resource = dict[str, Any]
HTTP = {"name": "http", "target": 80, "published": 30080}


@pytest.fixture
async def cluster(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[HollowCluster]:
    async with HollowCluster(etcd_cluster.endpoints, prefix, tls=etcd_cluster.client_tls) as c:
        yield c


@pytest.fixture
async def endpoints(cluster: HollowCluster) -> AsyncIterator[Endpoints]:
    ep = Endpoints(cluster)
    await ep.start()
    yield ep
    await ep.stop()


def web(replicas: int, **kwargs: Any) -> Resource:
    svc = service("web", replicas, **kwargs)
    svc["spec"]["ports"] = [dict(HTTP)]
    return svc


async def node_addresses(c: HollowCluster) -> dict[str, str]:
    from kubeless.store.nodes import list_nodes

    return {n["metadata"]["name"]: n["status"].get("address")
            for n in (await list_nodes(c.store)).items}


# -- the endpoints controller ---------------------------------------------------------------

async def test_endpoints_follow_scale_up_and_down(cluster: HollowCluster,
                                                  endpoints: Endpoints) -> None:
    await cluster.add_group("a", 3)
    created = await cluster.apply(web(2))
    doc = await endpoints.wait("web", 2)
    assert doc["namespace"] == "default" and doc["service"] == "web"
    assert doc["serviceUid"] == created["metadata"]["uid"]
    assert doc["ports"] == [{**HTTP, "protocol": "tcp", "mode": "ingress"}]
    tasks = running(await cluster.tasks("web"))
    addresses = await node_addresses(cluster)
    assert doc["endpoints"] == sorted(
        ({"task": t["metadata"]["name"], "slot": t["spec"]["slot"], "node": t["spec"]["nodeName"],
          "address": addresses[t["spec"]["nodeName"]],
          "ports": [{"target": 80, "published": 30080, "protocol": "tcp"}]} for t in tasks),
        key=lambda e: e["task"])

    await cluster.scale("web", 5)
    doc = await endpoints.wait("web", 5)
    assert sorted(e["slot"] for e in doc["endpoints"]) == [1, 2, 3, 4, 5]
    await cluster.scale("web", 1)
    doc = await endpoints.wait("web", 1)
    wanted = {t["metadata"]["name"] for t in await cluster.tasks("web")
              if t["spec"]["desiredState"] == "running"}
    assert doc["endpoints"][0]["task"] in wanted  # never a task being stopped
    await cluster.scale("web", 0)
    doc = await endpoints.wait("web", 0)
    assert doc["ports"]  # the key stays while the service does, so meshes keep listening


async def test_written_only_when_its_content_changes(cluster: HollowCluster,
                                                    endpoints: Endpoints) -> None:
    await cluster.add_group("a", 2)
    await cluster.apply(web(2))
    await endpoints.wait("web", 2)
    _, version = await endpoints.read("web")
    # events that change nothing the document says: node labels, an annotation
    before = endpoints.reconciles()
    await cluster.update_node("a-0", labels={"zone": "eu"})
    await endpoints.idle(before)
    svc = await cluster.store.get("Service", "web", "default")
    assert svc is not None
    svc.pop("status", None)
    svc["metadata"]["annotations"] = {"note": "hello"}
    before = endpoints.reconciles()
    await cluster.store.update(svc)
    await endpoints.idle(before)
    assert (await endpoints.read("web"))[1] == version


async def test_a_failed_task_leaves_and_its_replacement_joins(cluster: HollowCluster,
                                                             endpoints: Endpoints) -> None:
    group = await cluster.add_group("a", 2)
    svc = web(2, restart={"condition": "any", "delay": "0s"})
    await cluster.apply(svc)
    doc = await endpoints.wait("web", 2)
    victim = doc["endpoints"][0]
    assert group.agent is not None
    runtime = group.agent.runtimes[victim["node"]]
    assert isinstance(runtime, FakeRuntime)
    runtime.fail(victim["task"])

    async def replaced() -> bool:
        d, _ = await endpoints.read("web")
        return d is not None and victim["task"] not in {e["task"] for e in d["endpoints"]}
    await until(replaced, 10, "the failed task gone from the endpoints")
    doc = await endpoints.wait("web", 2)
    assert victim["task"] not in {e["task"] for e in doc["endpoints"]}
    assert victim["slot"] in {e["slot"] for e in doc["endpoints"]}


async def test_a_killed_node_leaves_the_endpoints(cluster: HollowCluster,
                                                  endpoints: Endpoints) -> None:
    await cluster.add_group("a", 2)
    await cluster.add_group("b", 2)
    await cluster.apply(web(4, placement={"maxReplicasPerNode": 1}))
    doc = await endpoints.wait("web", 4)
    assert {e["node"] for e in doc["endpoints"]} == {"a-0", "a-1", "b-0", "b-1"}
    await cluster.kill_group("b")

    async def only_a() -> Resource | None:
        d, _ = await endpoints.read("web")
        return d if d is not None and {e["node"] for e in d["endpoints"]} == {"a-0", "a-1"} \
            else None
    doc = await until(only_a, 15, "endpoints on the surviving nodes only")
    assert len(doc["endpoints"]) == 2


async def test_deleted_with_its_service_and_stale_keys_converge(cluster: HollowCluster,
                                                                endpoints: Endpoints) -> None:
    await cluster.add_group("a", 1)
    await cluster.apply(web(1))
    await endpoints.wait("web", 1)
    keys = cluster.store.keys
    # a key of a service that never existed, and a key someone overwrote
    await cluster.store.etcd.txn([], [Put(keys.endpoints("default", "ghost"), b"{}")])
    await cluster.store.etcd.txn([], [Put(keys.endpoints("default", "web"), b"not json")])
    await until(lambda: _absent(cluster, "ghost"), 10, "the stale key deleted")
    doc = await endpoints.wait("web", 1)
    assert doc["service"] == "web"

    await cluster.store.delete("Service", "web", "default")
    await until(lambda: _absent(cluster, "web"), 10, "the deleted service's key deleted")


async def _absent(c: HollowCluster, name: str) -> bool:
    kv, _ = await c.store.etcd.get(c.store.keys.endpoints("default", name))
    return kv is None


async def test_a_new_leader_converges_from_stale_keys(cluster: HollowCluster) -> None:
    """Keys left by an earlier leader (a service deleted while no controller ran) go away."""
    await cluster.add_group("a", 1)
    await cluster.apply(web(1))
    keys = cluster.store.keys
    await cluster.store.etcd.txn([], [Put(keys.endpoints("default", "gone"), b'{"x": 1}')])
    ep = Endpoints(cluster)
    await ep.start()
    try:
        await ep.wait("web", 1)
        await until(lambda: _absent(cluster, "gone"), 10, "the stale key deleted")
    finally:
        await ep.stop()


# -- published ports (CLI) ------------------------------------------------------------------

def manifest(name: str, *ports: Resource) -> str:
    return yaml.safe_dump({"apiVersion": "kubeless.io/v1", "kind": "Service",
                           "metadata": {"name": name},
                           "spec": {"template": {"image": "web:1"}, "ports": list(ports)}})


@pytest.fixture
def run(kubeless: Run) -> Run:
    """The CLI on the session's TLS etcd (conftest's ``kubeless``)."""
    return kubeless


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, res.stderr
    return res.stdout


def refused(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode != 0, res.stdout
    assert res.stderr.startswith("error: ") and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr


def inspect_ports(run: Any, name: str) -> list[Resource]:
    ports: list[Resource] = json.loads(ok(run("service", "inspect", name)))[0]["spec"]["ports"]
    return ports


async def test_allocated_port_is_stable_and_shown(run: Any, tmp_path: Path,
                                                  rstore: store.ResourceStore) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(manifest("web", {"name": "http", "target": 80},
                             {"target": 53, "protocol": "udp"}))
    assert ok(run("apply", "-f", str(path))).strip() == "service/web created"
    ports = inspect_ports(run, "web")
    assert [(p["target"], p["published"], p["protocol"]) for p in ports] == [
        (80, 30000, "tcp"), (53, 30000, "udp")]
    before = await rstore.get("Service", "web", "default")
    assert ok(run("apply", "-f", str(path))).strip() == "service/web unchanged"
    assert run("diff", "-f", str(path)).returncode == 0
    after = await rstore.get("Service", "web", "default")
    assert after is not None and before is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    shown = yaml.safe_load(ok(run("get", "service", "web", "-o", "yaml")))
    assert shown["spec"]["ports"][0]["published"] == 30000
    # the next service gets the next number; a changed spec keeps the number
    ok(run("service", "create", "-d", "--name", "api", "--publish", "80", "web:1"))
    assert inspect_ports(run, "api")[0]["published"] == 30001
    path.write_text(manifest("web", {"name": "http", "target": 80}).replace("web:1", "web:2"))
    assert ok(run("apply", "-f", str(path))).strip() == "service/web configured"
    assert [p["published"] for p in inspect_ports(run, "web")] == [30000]
    ok(run("service", "update", "-d", "--image", "web:3", "api"))
    assert inspect_ports(run, "api")[0]["published"] == 30001


async def test_a_port_held_by_another_service_is_refused(run: Any, tmp_path: Path,
                                                         rstore: store.ResourceStore) -> None:
    ok(run("service", "create", "-d", "--name", "holder", "--publish", "8080:80", "web:1"))
    ok(run("service", "create", "-d", "--name", "hosted", "--publish",
           "published=9090,target=80,mode=host", "web:1"))
    path = tmp_path / "clash.yaml"
    path.write_text(manifest("clash", {"target": 80, "published": 8080}))
    refused(run("apply", "-f", str(path)),
            "published port 8080/tcp (ingress) is already held by service default/holder",
            "nothing was written")
    assert await rstore.get("Service", "clash", "default") is None
    refused(run("service", "create", "-d", "--name", "clash", "--publish", "9090:80", "web:1"),
            "already held by service default/hosted (host)")
    assert await rstore.get("Service", "clash", "default") is None
    # host mode on another service may share a host-mode number; udp is another space
    ok(run("service", "create", "-d", "--name", "hosted2", "--publish",
           "published=9090,target=80,mode=host", "--publish", "8080:80/udp", "web:1"))
    live = await rstore.get("Service", "hosted2", "default")
    refused(run("service", "update", "-d", "--publish-add", "8080:81", "hosted2"),
            "already held by service default/holder")
    unchanged = await rstore.get("Service", "hosted2", "default")
    assert live is not None and unchanged is not None
    assert unchanged["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    assert run("diff", "-f", str(path)).returncode == 2


async def test_concurrent_clashing_writers_cannot_both_win(etcd_cluster: EtcdCluster, run: Run,
                                                           prefix: str, tmp_path: Path) -> None:
    from kubeless.api import validate
    from kubeless_cli.service_cmds import _create

    docs = [validate(yaml.safe_load(manifest(n, {"target": 80, "published": 8080})))
            for n in ("one", "two")]
    stores = [etcd_cluster.connect(prefix) for _ in docs]
    try:
        # a cluster record: the CLI below warns of none otherwise (refused() wants one line)
        await stores[0].etcd.txn([], [store.Put(stores[0].keys.cluster(), b"{}")])
        # both read the same revision before either writes: the guard sends one back
        results = await asyncio.gather(*(_create(s, d) for s, d in zip(stores, docs)),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], CliError), results
        assert "is already held by service default/" in errors[0].message
        listed = (await stores[0].list("Service")).items
        assert len(listed) == 1
        # two allocations at once never take the same number
        third, fourth = (validate(yaml.safe_load(manifest(n, {"target": 80})))
                         for n in ("three", "four"))
        await asyncio.gather(_create(stores[0], third), _create(stores[1], fourth))
        numbers = sorted(s["spec"]["ports"][0]["published"]
                         for s in (await stores[0].list("Service")).items
                         if s["metadata"]["name"] in ("three", "four"))
        assert numbers == [30000, 30001]
    finally:
        for s in stores:
            await s.etcd.close()

    # and as users run it: two applies at once, exactly one wins
    paths = []
    for name in ("five", "six"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(manifest(name, {"target": 80, "published": 7070}))
        paths.append(path)
    outcomes = await asyncio.gather(*(asyncio.to_thread(run, "apply", "-f", str(p))
                                      for p in paths))
    assert sorted(o.returncode for o in outcomes) == [0, 1], [o.stderr for o in outcomes]
    loser = next(o for o in outcomes if o.returncode)
    refused(loser, "published port 7070/tcp (ingress) is already held by service default/")


def test_registered_and_run_by_default() -> None:
    from controllers.main import CONTROLLERS, parse_args

    assert CONTROLLERS["endpoints"] is EndpointsController
    assert "endpoints" in parse_args([]).controller_names
    assert parse_args(["--controllers", "endpoints"]).controller_names == ["endpoints"]
