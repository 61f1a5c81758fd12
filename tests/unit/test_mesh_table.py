"""The mesh's routing table and round robin, as pure functions (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless_agent.mesh.table import (Backend, Route, attempt_order, backends_for,
                                       listener_changes, routes_of, wanted_routes)


def doc(service: str = "web", ns: str = "default", ports: list[dict[str, Any]] | None = None,
        endpoints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"namespace": ns, "service": service, "serviceUid": "u",
            "ports": ports if ports is not None else
            [{"name": "http", "target": 80, "published": 30001, "protocol": "tcp",
              "mode": "ingress"}],
            "endpoints": endpoints or []}


def ep(task: str, address: str, host_port: int, target: int = 80,
       protocol: str = "tcp") -> dict[str, Any]:
    return {"task": task, "slot": 1, "node": "n-" + address, "address": address,
            "ports": [{"target": target, "published": host_port, "protocol": protocol}]}


A, B, C = Backend("10.0.0.1", 32768), Backend("10.0.0.2", 32769), Backend("10.0.0.3", 32770)


def test_routes_of_a_document() -> None:
    d = doc(endpoints=[ep("t1", "127.0.0.2", 32768), ep("t2", "127.0.0.3", 32800)])
    [route] = routes_of(d)
    assert (route.namespace, route.service, route.published, route.target, route.name) == \
        ("default", "web", 30001, 80, "http")
    assert [(b.address, b.port, b.task) for b in route.backends] == \
        [("127.0.0.2", 32768, "t1"), ("127.0.0.3", 32800, "t2")]
    assert route.label == "http"


@pytest.mark.parametrize("port,routed", [
    ({"target": 80, "published": 30001, "protocol": "tcp", "mode": "ingress"}, True),
    ({"target": 80, "published": 30001}, True),  # defaults: tcp, ingress
    ({"target": 80, "published": 30001, "protocol": "udp", "mode": "ingress"}, False),
    ({"target": 80, "published": 30001, "protocol": "tcp", "mode": "host"}, False),
    ({"target": 80, "protocol": "tcp", "mode": "ingress"}, False),  # no number yet
    ({"target": "x", "published": 30001}, False),
    ({"target": 80, "published": 70000}, False),
])
def test_which_ports_are_routed(port: dict[str, Any], routed: bool) -> None:
    assert bool(routes_of(doc(ports=[port]))) is routed


def test_label_is_the_target_without_a_name() -> None:
    [route] = routes_of(doc(ports=[{"target": 8080, "published": 30002}]))
    assert route.label == "8080"


def test_malformed_documents_route_nothing() -> None:
    assert routes_of(None) == [] and routes_of("text") == [] and routes_of({}) == []
    assert routes_of({"namespace": "d", "service": "s", "ports": ["x"]}) == []


def test_backends_skip_endpoints_without_that_target_or_address() -> None:
    d = doc(endpoints=[ep("t1", "127.0.0.2", 32768, target=81), {"task": "t2", "ports": []},
                       ep("t3", "", 1), ep("t4", "127.0.0.4", 32771, protocol="udp"),
                       ep("t5", "127.0.0.5", 32772)])
    assert [b.task for b in backends_for(d, 80)] == ["t5"]


def test_two_services_on_one_port_the_first_by_name_wins() -> None:
    wanted, conflicts = wanted_routes([doc("zeta"), doc("alpha")])
    assert wanted[30001].service == "alpha"
    assert [r.service for r in conflicts] == ["zeta"]


def route(service: str = "web", published: int = 30001, target: int = 80,
          backends: tuple[Backend, ...] = ()) -> Route:
    return Route("default", service, published, target, "http", backends)


@pytest.mark.parametrize("current,wanted,close,open_", [
    ({}, {30001: route()}, [], [30001]),
    ({30001: route()}, {}, [30001], []),
    ({30001: route()}, {30001: route(backends=(A,))}, [], []),  # backends only: kept
    ({30001: route()}, {30001: route("api")}, [30001], [30001]),  # another service: moved
    ({30001: route()}, {30001: route(target=81)}, [30001], [30001]),
    ({30001: route()}, {30002: route(published=30002)}, [30001], [30002]),
])
def test_listener_changes(current: dict[int, Route], wanted: dict[int, Route],
                          close: list[int], open_: list[int]) -> None:
    assert listener_changes(current, wanted) == (close, open_)


def test_round_robin_rotates() -> None:
    backends = (A, B, C)
    firsts = [attempt_order(backends, cursor, {}, 0.0)[0] for cursor in range(6)]
    assert firsts == [A, B, C, A, B, C]
    assert attempt_order(backends, 1, {}, 0.0) == [B, C, A]


def test_a_backend_that_just_failed_goes_last_until_its_memory_ends() -> None:
    failed = {B: 10.0}
    assert attempt_order((A, B, C), 1, failed, now=5.0) == [C, A, B]
    assert attempt_order((A, B, C), 1, failed, now=10.0) == [B, C, A]


def test_all_failed_still_tried_in_order() -> None:
    failed = {A: 9.0, B: 9.0}
    assert attempt_order((A, B), 0, failed, now=1.0) == [A, B]


def test_no_backends_no_attempts() -> None:
    assert attempt_order((), 3, {}, 0.0) == []
