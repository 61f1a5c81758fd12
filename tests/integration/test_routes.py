"""Routes against a real etcd (TLS and etcd auth on): the CLI, published ports, the
endpoints controller's Route documents, and the ports Routes expose on their services.

The CLI runs as a user runs it (subprocesses, the admin identity); the controllers
run beside hollow nodes on the fake runtime (``lab.hollow``), which reports a host
port of its own for each ingress port without a number, as Docker does.
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
from kubeless.api import validate
from lab.hollow import HollowCluster, RolloutCluster, running, service
from lab.waiting import until
from tests.support.cli import Run
from tests.support.cli_errors import assert_one_error_line
from tests.support.etcd_server import EtcdCluster
from tests.support.endpoints_runner import Endpoints
from tests.support.unwritten import keyspace, written


pytestmark = pytest.mark.integration
Resource = dict[str, Any]


def route(name: str = "shop", port: int = 8080, **weights: int) -> Resource:
    backends = [{"service": s.replace("_", "-"), "port": 80, "weight": w}
                for s, w in (weights or {"shop_a": 90, "shop_b": 10}).items()]
    return {"apiVersion": "kubeless.io/v1", "kind": "Route", "metadata": {"name": name},
            "spec": {"port": port, "backends": backends}}


def manifest(*docs: Resource) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def plain_service(name: str, *ports: Resource) -> Resource:
    return {"apiVersion": "kubeless.io/v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"template": {"image": "web:1"}, "ports": list(ports)}}


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture
async def run(kubeless: Run, rstore: store.ResourceStore) -> Run:
    """The CLI, on a prefix with a cluster record (the CLI warns of none otherwise)."""
    await rstore.etcd.txn([], [store.Put(rstore.keys.cluster(), b"{}")])
    return kubeless


# -- the CLI ---------------------------------------------------------------------------

async def test_apply_get_describe_weight_delete(run: Run, tmp_path: Path,
                                                rstore: store.ResourceStore) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(manifest(plain_service("shop-a"), plain_service("shop-b"), route()))
    assert ok(run("apply", "-f", str(path))).split("\n")[2] == "route/shop created"
    assert ok(run("apply", "-f", str(path))).split("\n")[2] == "route/shop unchanged"
    table = ok(run("get", "routes"))
    head, row = table.splitlines()
    assert head.split() == ["NAME", "PORT", "PROTOCOL", "BACKENDS", "AGE"]
    # no document yet (no endpoints controller runs here): nothing up, no share
    assert "shop   8080   tcp        shop-a 0% (0 up), shop-b 0% (0 up)" in row
    assert "shop-a=90,shop-b=10" in ok(run("get", "rt", "-o", "wide"))
    described = ok(run("describe", "route", "shop"))
    assert "Kind:          Route" in described and "weight: 90" in described

    # the live split, from the route's document as the endpoints controller writes it
    stored = await rstore.get("Route", "shop", "default")
    assert stored is not None
    doc = {"kind": "Route", "namespace": "default", "route": "shop",
           "routeUid": stored["metadata"]["uid"], "port": 8080, "protocol": "tcp",
           "externalTrafficPolicy": "Cluster", "proxyProtocol": "",
           "backends": [
               {"service": "shop-a", "port": 80, "weight": 90, "endpoints": []},
               {"service": "shop-b", "port": 80, "weight": 10, "endpoints": [
                   {"task": "t1", "node": "n1", "address": "10.0.0.1", "hostPort": 32768}]}]}
    await rstore.etcd.txn([], [store.Put(rstore.keys.route_endpoints("default", "shop"),
                                         json.dumps(doc).encode())])
    assert "shop-a 0% (0 up), shop-b 100% (1 up)" in ok(run("get", "routes", "shop"))

    assert ok(run("route", "weight", "shop", "shop-a=50", "shop-b=50")).strip() == \
        "route/shop weighted: shop-a=50,shop-b=50"
    after = await rstore.get("Route", "shop", "default")
    assert after is not None and after["metadata"]["generation"] == 2
    assert [b["weight"] for b in after["spec"]["backends"]] == [50, 50]
    assert ok(run("route", "weight", "shop", "shop-a=50")).strip() == \
        "route/shop unchanged: shop-a=50,shop-b=50"

    ok(run("delete", "route", "shop"))
    assert await rstore.get("Route", "shop", "default") is None


async def test_bad_weights_are_refused_with_nothing_written(
        run: Run, tmp_path: Path, etcd_cluster: EtcdCluster) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(manifest(route()))
    ok(run("apply", "-f", str(path)))
    before = keyspace(etcd_cluster)
    for args, needle in [(["shop-c=5"], "route shop has no backend shop-c"),
                         (["shop-a=1001"], "a weight is an integer from 0 to 1000"),
                         (["shop-a=x"], "a weight is an integer"),
                         (["shop-a"], "is not SERVICE=WEIGHT"),
                         (["shop-a=0", "shop-b=0"], "every weight would be 0")]:
        assert_one_error_line(run("route", "weight", "shop", *args), needle,
                              "nothing was written")
    assert_one_error_line(run("route", "weight", "nope", "a=1"), 'route "nope" not found')
    assert written(before, keyspace(etcd_cluster)) == []
    bad = route()
    bad["spec"]["backends"] = [{"service": "a", "port": 80, "weight": 0},
                               {"service": "a", "port": 81, "weight": 0}]
    path.write_text(manifest(bad))
    res = run("apply", "-f", str(path))
    assert res.returncode == 1 and "a is already a backend" in res.stderr
    assert "every weight is 0" in res.stderr
    assert written(before, keyspace(etcd_cluster)) == []


async def test_a_route_and_a_service_cannot_hold_one_port(
        run: Run, tmp_path: Path, etcd_cluster: EtcdCluster) -> None:
    svc_path, route_path = tmp_path / "svc.yaml", tmp_path / "route.yaml"
    svc_path.write_text(manifest(plain_service("web", {"target": 80, "published": 8080})))
    ok(run("apply", "-f", str(svc_path)))
    route_path.write_text(manifest(route()))
    before = keyspace(etcd_cluster)
    assert_one_error_line(run("apply", "-f", str(route_path)),
                          "route default/shop: published port 8080/tcp (ingress) is already "
                          "held by service default/web (ingress); nothing was written")
    assert written(before, keyspace(etcd_cluster)) == []

    # the other way: a Route holds 9090; a service (any mode) or another route may not
    route_path.write_text(manifest(route(port=9090)))
    ok(run("apply", "-f", str(route_path)))
    before = keyspace(etcd_cluster)
    assert_one_error_line(
        run("service", "create", "-d", "--name", "api", "--publish",
            "published=9090,target=80,mode=host", "web:1"),
        "service default/api: published port 9090/tcp (host) is already held by "
        "route default/shop (ingress)")
    assert_one_error_line(run("service", "update", "-d", "--publish-add", "9090:80", "web"),
                          "already held by route default/shop")
    other = tmp_path / "other.yaml"
    other.write_text(manifest(route("other", port=9090)))
    assert_one_error_line(run("apply", "-f", str(other)), "already held by route default/shop")
    assert written(before, keyspace(etcd_cluster)) == []
    # udp is another space
    udp = route("dns", port=9090)
    udp["spec"]["protocol"] = "udp"
    other.write_text(manifest(udp))
    ok(run("apply", "-f", str(other)))


async def test_concurrent_route_and_service_cannot_both_win(
        etcd_cluster: EtcdCluster, prefix: str) -> None:
    from kubeless.api import PortsRefused
    from kubeless.store.services import Attempt, write_services

    docs = [validate(plain_service("web", {"target": 80, "published": 7070})),
            validate(route(port=7070))]
    stores = [etcd_cluster.connect(prefix) for _ in docs]
    both_read = asyncio.Barrier(len(docs))

    async def create(rstore: store.ResourceStore, doc: Resource) -> None:
        async def plan(attempt: Attempt) -> None:
            [numbered] = await attempt.numbered([doc])
            if attempt.number == 0:  # both have read before either commits
                await asyncio.wait_for(both_read.wait(), 10)
            attempt.txn.create(numbered)
        await write_services(rstore, plan, what="creating")

    try:
        results = await asyncio.gather(*(create(s, d) for s, d in zip(stores, docs)),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], PortsRefused), results
        held = [await stores[0].get("Service", "web", "default"),
                await stores[0].get("Route", "shop", "default")]
        assert sum(h is not None for h in held) == 1
    finally:
        for s in stores:
            await s.etcd.close()


# -- the controllers --------------------------------------------------------------------


@pytest.fixture
async def cluster(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[HollowCluster]:
    async with RolloutCluster(etcd_cluster.endpoints, prefix,
                              tls=etcd_cluster.client_tls) as c:
        yield c


@pytest.fixture
async def endpoints(cluster: HollowCluster) -> AsyncIterator[Endpoints]:
    ep = Endpoints(cluster)
    await ep.start()
    yield ep
    await ep.stop()


async def test_route_documents_follow_tasks_and_expose_ports(cluster: HollowCluster,
                                                             endpoints: Endpoints) -> None:
    await cluster.add_group("a", 2)
    fast = {"parallelism": 0, "monitor": "0s"}
    await cluster.apply({**(a := service("shop-a", 2)), "spec": {**a["spec"], "update": fast}})
    await cluster.apply(service("shop-b", 1))
    await cluster.wait_running("shop-a", 2)
    created = await cluster.store.create(validate(route()))
    # the services do not declare port 80: their tasks are rolled to tasks that publish it
    doc = await endpoints.wait_up("shop", {"shop-a": 2, "shop-b": 1}, timeout=30)
    assert {k: doc[k] for k in ("kind", "namespace", "route", "routeUid", "port", "protocol",
                                "externalTrafficPolicy", "proxyProtocol")} == {
        "kind": "Route", "namespace": "default", "route": "shop",
        "routeUid": created["metadata"]["uid"], "port": 8080, "protocol": "tcp",
        "externalTrafficPolicy": "Cluster", "proxyProtocol": ""}
    assert [(b["service"], b["port"], b["weight"]) for b in doc["backends"]] == [
        ("shop-a", 80, 90), ("shop-b", 80, 10)]
    tasks = running(await cluster.tasks("shop-a"))
    assert all(t["spec"]["ports"] == [{"target": 80, "protocol": "tcp", "mode": "ingress"}]
               for t in tasks)
    by_task = {e["task"]: e for e in doc["backends"][0]["endpoints"]}
    assert set(by_task) == {t["metadata"]["name"] for t in tasks}
    assert all(e["hostPort"] >= 32768 and e["address"] for e in by_task.values())
    # the service as stored is untouched: the port is the controllers' view
    stored = await cluster.store.get("Service", "shop-a", "default")
    assert stored is not None and not stored["spec"].get("ports")

    await cluster.scale("shop-b", 0)
    await endpoints.wait_up("shop", {"shop-a": 2, "shop-b": 0})
    await cluster.scale("shop-b", 2)
    await endpoints.wait_up("shop", {"shop-a": 2, "shop-b": 2})

    live = await cluster.store.get("Route", "shop", "default")
    assert live is not None
    await cluster.store.delete("Route", "shop", "default")

    async def gone() -> bool:
        return await endpoints.read_route("shop") is None
    await until(gone, 10, "the route's document deleted with it")
