"""The endpoints decision as a pure function: which tasks are endpoints, and what to write."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.endpoints.decide import (CORRUPT, DeleteEndpoints, PutEndpoints, declared_ports,
                                          desired_endpoints, desired_route, endpoints_op)
from kubeless.api.tasks import Task

Resource = dict[str, Any]
UID = "uid-web"


def service(*ports: Resource, name: str = "web", uid: str = UID) -> Resource:
    return {"kind": "Service", "metadata": {"name": name, "namespace": "default", "uid": uid},
            "spec": {"template": {"image": "x:1"}, "ports": list(ports)}}


def task(tid: str, *, slot: int | None = 1, node: str | None = "n1", state: str = "running",
         desired: str = "running", ports: list[Resource] | None = None, svc: str = "web",
         uid: str = UID) -> Task:
    """A task whose agent reported ``state`` (and ``ports``) over its own status."""
    reported = ports if ports is not None else [
        {"target": 80, "published": 32768, "protocol": "tcp", "mode": "ingress"}]
    spec: Resource = {"serviceName": svc, "serviceUid": uid, "desiredState": desired,
                      "nodeName": node}
    if slot is not None:
        spec["slot"] = slot
    return Task({"kind": "Task", "metadata": {"name": tid, "namespace": "default"}, "spec": spec,
                 "status": {"state": "assigned"}},
                {"state": state, "ports": reported})


def node(name: str, *, state: str = "ready", address: str | None = "10.0.0.1") -> Resource:
    status: Resource = {"state": state}
    if address:
        status["address"] = address
    return {"kind": "Node", "metadata": {"name": name}, "spec": {}, "status": status}


NODES = {"n1": node("n1"), "n2": node("n2", address="10.0.0.2"),
         "down": node("down", state="down"), "mute": node("mute", address=None)}
PORT = {"name": "http", "target": 80, "published": 30001, "protocol": "tcp", "mode": "ingress"}


def ids(doc: Resource) -> list[str]:
    return [e["task"] for e in doc["endpoints"]]


CASES: dict[str, tuple[list[Task], list[str]]] = {
    "running on a ready node": ([task("a")], ["a"]),
    "sorted by task id": ([task("c", slot=3), task("a"), task("b", slot=2, node="n2")],
                          ["a", "b", "c"]),
    "desired shutdown (scale-down, update, drain) leaves at once": (
        [task("a", desired="shutdown"), task("b", slot=2, desired="remove")], []),
    "not observed running yet (starting, or waiting for its healthcheck)": (
        [task("a", state="starting"), task("b", state="assigned")], []),
    "failed, orphaned, complete": (
        [task("a", state="failed"), task("b", state="orphaned"), task("c", state="complete")], []),
    "node down": ([task("a", node="down")], []),
    "node unknown or without an address": ([task("a", node="gone"), task("b", node="mute"),
                                            task("c", node=None)], []),
    "another service's task, or an earlier service of the same name": (
        [task("a", svc="api"), task("b", uid="older")], []),
}


@pytest.mark.parametrize("case", CASES)
def test_which_tasks_are_endpoints(case: str) -> None:
    tasks, want = CASES[case]
    assert ids(desired_endpoints(service(PORT), tasks, NODES)) == want


def test_document_shape() -> None:
    doc = desired_endpoints(service(PORT, {"target": 53, "published": 5353, "protocol": "udp",
                                           "mode": "host"}, {"target": 9000, "mode": "host"}),
                            [task("a", slot=None, node="n2")], NODES)
    assert doc == {
        "namespace": "default", "service": "web", "serviceUid": UID,
        "ports": [PORT, {"target": 53, "published": 5353, "protocol": "udp", "mode": "host"}],
        "endpoints": [{"task": "a", "slot": None, "node": "n2", "address": "10.0.0.2",
                       "ports": [{"target": 80, "published": 32768, "protocol": "tcp"}]}]}


def test_declared_ports_fill_defaults() -> None:
    assert declared_ports(service({"target": 80, "published": 30000})) == [
        {"target": 80, "published": 30000, "protocol": "tcp", "mode": "ingress"}]


def test_reported_ports_sorted_and_cleaned() -> None:
    t = task("a", ports=[{"target": 443, "published": 32770, "protocol": "tcp"},
                         {"target": 80, "published": 32769}, {"target": 81}])
    assert desired_endpoints(service(PORT), [t], NODES)["endpoints"][0]["ports"] == [
        {"target": 80, "published": 32769, "protocol": "tcp"},
        {"target": 443, "published": 32770, "protocol": "tcp"}]


# -- what to write ------------------------------------------------------------------------

def test_written_only_when_content_changes() -> None:
    doc = desired_endpoints(service(PORT), [task("a")], NODES)
    assert endpoints_op("default", "web", doc, None, 0) == PutEndpoints("default", "web", doc, 0)
    assert endpoints_op("default", "web", doc, dict(doc), 7) is None
    changed = {**doc, "endpoints": []}
    assert endpoints_op("default", "web", changed, doc, 7) == PutEndpoints("default", "web",
                                                                           changed, 7)
    assert endpoints_op("default", "web", doc, CORRUPT, 7) == PutEndpoints("default", "web",
                                                                          doc, 7)


def test_deleted_with_its_service_and_never_written_for_none() -> None:
    assert endpoints_op("default", "web", None, {"x": 1}, 9) == DeleteEndpoints("default",
                                                                               "web", 9)
    assert endpoints_op("default", "web", None, None, 0) is None


def test_zero_endpoints_still_a_document() -> None:
    doc = desired_endpoints(service(PORT), [], NODES)
    assert doc["endpoints"] == [] and doc["ports"] == [PORT]


# -- properties --------------------------------------------------------------------------

TASK = st.builds(lambda i, n, s, d: task(f"t{i:03d}", slot=i, node=n, state=s, desired=d),
                 st.integers(1, 999), st.sampled_from(["n1", "n2", "down", "mute", None]),
                 st.sampled_from(["running", "starting", "failed", "orphaned", "shutdown"]),
                 st.sampled_from(["running", "shutdown", "remove"]))


@settings(max_examples=200, deadline=None)
@given(tasks=st.lists(TASK, max_size=12, unique_by=lambda t: t.id))
def test_every_endpoint_is_wanted_running_observed_running_on_a_ready_node(
        tasks: list[Task]) -> None:
    doc = desired_endpoints(service(PORT), tasks, NODES)
    by_id = {t.id: t for t in tasks}
    assert ids(doc) == sorted(ids(doc))
    for e in doc["endpoints"]:
        t = by_id[e["task"]]
        assert t.spec["desiredState"] == "running" and t.state == "running"
        assert NODES[e["node"]]["status"]["state"] == "ready"
        assert e["address"] == NODES[e["node"]]["status"]["address"]
    qualifying = [t for t in tasks if t.spec["desiredState"] == "running"
                  and t.state == "running" and t.spec["nodeName"] in ("n1", "n2")]
    assert len(doc["endpoints"]) == len(qualifying)
    # the decision does not depend on the order tasks arrive in
    assert desired_endpoints(service(PORT), list(reversed(tasks)), NODES) == doc


# -- a Route's document ------------------------------------------------------------------

def shop_route(**spec: Any) -> Resource:
    return {"kind": "Route", "metadata": {"name": "shop", "namespace": "default", "uid": "r-1"},
            "spec": {"port": 8080, "protocol": "tcp", "externalTrafficPolicy": "Cluster",
                     "proxyProtocol": "", **spec,
                     "backends": [{"service": "shop-a", "port": 80, "weight": 90},
                                  {"service": "shop-b", "port": 80, "weight": 10}]}}


def shop_task(tid: str, svc: str, host: int, *, node: str = "n1", state: str = "running",
              target: int = 80) -> Task:
    return task(tid, svc=svc, uid=f"uid-{svc}", node=node, state=state,
                ports=[{"target": target, "published": host, "protocol": "tcp"}])


def test_a_route_document_lists_each_backends_endpoints_on_its_port() -> None:
    services = {"shop-a": service(name="shop-a", uid="uid-shop-a"),
                "shop-b": service(name="shop-b", uid="uid-shop-b")}
    tasks = {"shop-a": [shop_task("a2", "shop-a", 32769, node="n2"),
                        shop_task("a1", "shop-a", 32768),
                        shop_task("a3", "shop-a", 32770, state="starting"),  # not up
                        shop_task("a4", "shop-a", 32771, target=81)],  # not on port 80
             "shop-b": [shop_task("b1", "shop-b", 32772, node="down")]}  # its node is down
    doc = desired_route(shop_route(externalTrafficPolicy="Local"), services, tasks, NODES)
    assert doc == {
        "kind": "Route", "namespace": "default", "route": "shop", "routeUid": "r-1",
        "port": 8080, "protocol": "tcp", "externalTrafficPolicy": "Local", "proxyProtocol": "",
        "backends": [
            {"service": "shop-a", "port": 80, "weight": 90, "endpoints": [
                {"task": "a1", "node": "n1", "address": "10.0.0.1", "hostPort": 32768},
                {"task": "a2", "node": "n2", "address": "10.0.0.2", "hostPort": 32769}]},
            {"service": "shop-b", "port": 80, "weight": 10, "endpoints": []}]}


def test_a_backend_service_that_does_not_exist_has_no_endpoints() -> None:
    tasks = {"shop-a": [shop_task("a1", "shop-a", 32768)]}  # left by a deleted service
    doc = desired_route(shop_route(), {}, tasks, NODES)
    assert [b["endpoints"] for b in doc["backends"]] == [[], []]


def test_a_route_document_is_put_only_when_it_changes() -> None:
    doc = desired_route(shop_route(), {}, {}, NODES)
    assert endpoints_op("default", "shop", doc, dict(doc), 7) is None
    assert endpoints_op("default", "shop", None, doc, 7) == DeleteEndpoints("default", "shop", 7)


def test_service_documents_carry_a_ports_policies_when_set() -> None:
    ports = declared_ports(service({**PORT, "externalTrafficPolicy": "Local",
                                    "proxyProtocol": "v1"}, {**PORT, "published": 30002}))
    assert ports == [{**PORT, "externalTrafficPolicy": "Local", "proxyProtocol": "v1"},
                     {**PORT, "published": 30002}]
