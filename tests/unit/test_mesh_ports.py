"""What the userspace mesh forwards, fed endpoints documents by hand (its informer
handler is synchronous: no sockets, no etcd): tcp ports from services and routes,
``local_only`` keeping the node's own endpoints, UDP refused with one line, a new
weight or owner applied in place."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from kubeless_agent.mesh.mesh import Port, RoutingMesh
from kubeless_agent.mesh.published import Published
from kubeless_agent.mesh.table import Backend


def route_doc(name: str = "shop", port: int = 8080, protocol: str = "tcp", *,
              weights: tuple[int, int] = (90, 10), policy: str = "Cluster",
              proxy: str = "") -> dict[str, Any]:
    return {"kind": "Route", "namespace": "default", "route": name, "routeUid": "u",
            "port": port, "protocol": protocol, "externalTrafficPolicy": policy,
            "proxyProtocol": proxy,
            "backends": [{"service": svc, "port": 80, "weight": w,
                          "endpoints": [{"task": f"{svc}-{n}", "node": n,
                                         "address": f"10.0.0.{i}", "hostPort": 32768 + i}
                                        for i, n in enumerate(("n1", "n2"), start=1)]}
                         for svc, w in zip(("shop-a", "shop-b"), weights)]}


def service_doc(port: int = 8080) -> dict[str, Any]:
    return {"namespace": "default", "service": "web", "serviceUid": "u",
            "ports": [{"name": "http", "target": 80, "published": port, "protocol": "tcp",
                       "mode": "ingress"}],
            "endpoints": [{"task": "t1", "node": "n1", "address": "10.0.0.9",
                           "ports": [{"target": 80, "published": 32000, "protocol": "tcp"}]}]}


def mesh_with(*docs: dict[str, Any], node: str = "n1") -> RoutingMesh:
    mesh = RoutingMesh("127.0.0.1", node=node)
    for i, doc in enumerate(docs):
        mesh.on_endpoints(f"k{i}", None, doc)
    return mesh


def hosts(pub: Published) -> dict[str, list[str]]:
    return {g.service: [b.address for b in g.backends] for g in pub.groups}


def test_a_route_is_one_tcp_port_with_its_groups() -> None:
    mesh = mesh_with(route_doc())
    pub = mesh.wanted[8080]
    assert (pub.owner, pub.label, pub.proxy_protocol) == ("route default/shop", "shop", False)
    assert [(g.service, g.weight) for g in pub.groups] == \
        [("default/shop-a", 90), ("default/shop-b", 10)]
    assert hosts(pub) == {"default/shop-a": ["10.0.0.1", "10.0.0.2"],
                          "default/shop-b": ["10.0.0.1", "10.0.0.2"]}


@pytest.mark.parametrize("node,kept", [("n1", ["10.0.0.1"]), ("n2", ["10.0.0.2"]),
                                       ("elsewhere", [])])
def test_local_only_keeps_the_nodes_own_endpoints(node: str, kept: list[str]) -> None:
    pub = mesh_with(route_doc(policy="Local"), node=node).wanted[8080]
    assert hosts(pub) == {"default/shop-a": kept, "default/shop-b": kept}


def test_cluster_policy_keeps_every_endpoint() -> None:
    pub = mesh_with(route_doc(), node="elsewhere").wanted[8080]
    assert hosts(pub)["default/shop-a"] == ["10.0.0.1", "10.0.0.2"]


def test_udp_is_refused_with_one_line_per_port_and_the_rest_served(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "kubeless_agent.mesh.mesh")
    mesh = mesh_with(route_doc("dns", 5353, "udp"), service_doc(8080))
    mesh.on_endpoints("k0", None, route_doc("dns", 5353, "udp", weights=(50, 50)))  # again
    assert list(mesh.wanted) == [8080] and mesh.refused == {5353: "route default/dns"}
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["UDP port 5353 of route default/dns needs the kernel path "
                     "(--mesh-mode kernel)"]
    mesh.on_endpoints("k0", None, None)
    assert mesh.refused == {}


def test_two_owners_of_one_port_the_service_wins_and_the_route_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "kubeless_agent.mesh.mesh")
    mesh = mesh_with(route_doc(port=8080), service_doc(8080))
    assert mesh.wanted[8080].owner == "service default/web"
    assert [p.owner for p in mesh.conflicts] == ["route default/shop"]
    assert "port 8080/tcp of route default/shop is also service default/web's" in caplog.text


def port_of(mesh: RoutingMesh, number: int) -> Port:
    port = mesh._port(mesh.wanted[number])
    mesh.ports[number] = port
    return port


def test_a_new_weight_applies_to_the_next_connection_on_the_same_port() -> None:
    draws = iter([0.5, 0.5])
    mesh = mesh_with(route_doc(policy="Local"))
    mesh.draw = lambda: next(draws)
    port = port_of(mesh, 8080)
    assert port.candidates()[0] == Backend("10.0.0.1", 32769, "shop-a-n1", "n1")
    mesh.on_endpoints("k0", None, route_doc(policy="Local", weights=(10, 90)))
    assert mesh.ports[8080] is port  # updated in place: connections open go on
    assert port.candidates()[0] == Backend("10.0.0.1", 32769, "shop-b-n1", "n1")


def test_proxy_protocol_is_per_port_and_follows_the_document() -> None:
    mesh = mesh_with(route_doc(proxy="v1"))
    port = port_of(mesh, 8080)
    assert port.proxy_protocol is True
    mesh.on_endpoints("k0", None, route_doc(proxy=""))
    assert port.proxy_protocol is False


def test_another_owner_gets_a_new_port_state() -> None:
    mesh = mesh_with(route_doc())
    port = port_of(mesh, 8080)
    mesh.on_endpoints("k0", None, None)
    mesh.on_endpoints("k1", None, service_doc(8080))
    assert mesh.ports[8080] is not port and mesh.ports[8080].identity == \
        ("service default/web", "http")
