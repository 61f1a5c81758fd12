"""Routes as pure functions: validation, exposed ports, shares, weights, the live split."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeless.api import InvalidResource, validate
from kubeless.api.routes import (exposed_ports, live_shares, live_split, parse_weights,
                                 split_text, weights_text, with_weights)

Resource = dict[str, Any]


def route(*backends: Resource, name: str = "shop", ns: str = "default", port: int = 8080,
          **spec: Any) -> Resource:
    return {"apiVersion": "kubeless.io/v1", "kind": "Route",
            "metadata": {"name": name, "namespace": ns, "uid": "u-1"},
            "spec": {"port": port, "backends": list(backends), **spec}}


A90 = {"service": "shop-a", "port": 80, "weight": 90}
B10 = {"service": "shop-b", "port": 80, "weight": 10}


def svc(name: str, *ports: Resource, ns: str = "default") -> Resource:
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"template": {"image": "x:1"}, "ports": list(ports)}}


# -- validation --------------------------------------------------------------------------

def test_defaults_are_filled() -> None:
    out = validate(route(A90, {"service": "shop-b", "port": 80}))
    assert out["spec"]["protocol"] == "tcp"
    assert out["spec"]["externalTrafficPolicy"] == "Cluster"
    assert out["spec"]["proxyProtocol"] == ""
    assert out["spec"]["backends"][1]["weight"] == 1


INVALID: dict[str, tuple[Resource, list[str]]] = {
    "a service twice": (route(A90, {**B10, "service": "shop-a"}),
                        ["spec.backends[1].service: shop-a is already a backend "
                         "(spec.backends[0])"]),
    "every weight 0": (route({**A90, "weight": 0}, {**B10, "weight": 0}),
                       ["spec.backends: every weight is 0: no backend would get traffic"]),
    "PROXY protocol on udp": (route(A90, protocol="udp", proxyProtocol="v1"),
                              ["spec.proxyProtocol: v1 needs protocol tcp"]),
    "no backend": (route(), ["spec.backends: [] should be non-empty"]),
    "port out of range": (route(A90, port=70000), ["spec.port: 70000 is greater than"]),
    "weight out of range": (route({**A90, "weight": 1001}),
                            ["spec.backends[0].weight: 1001 is greater than"]),
    "bad policy": (route(A90, externalTrafficPolicy="Nearest"),
                   ["spec.externalTrafficPolicy: 'Nearest' is not one of"]),
}


@pytest.mark.parametrize("doc,expected", INVALID.values(), ids=INVALID.keys())
def test_invalid_routes_say_why(doc: Resource, expected: list[str]) -> None:
    with pytest.raises(InvalidResource) as caught:
        validate(doc)
    found = [str(v) for v in caught.value.violations]
    for needle in expected:
        assert any(v.startswith(needle) for v in found), found


def test_a_service_port_may_carry_policies_but_proxy_needs_tcp() -> None:
    doc = svc("web", {"target": 80, "published": 8080, "externalTrafficPolicy": "Local",
                      "proxyProtocol": "v1"})
    out = validate({"apiVersion": "kubeless.io/v1", **doc})
    assert out["spec"]["ports"][0]["externalTrafficPolicy"] == "Local"
    bad = svc("web", {"target": 53, "protocol": "udp", "proxyProtocol": "v1"})
    with pytest.raises(InvalidResource, match=r"spec.ports\[0\].proxyProtocol: v1 needs"):
        validate({"apiVersion": "kubeless.io/v1", **bad})


# -- exposure ----------------------------------------------------------------------------

EXPOSED: dict[str, tuple[Resource, list[Resource], list[Resource]]] = {
    "no route: the service's ports": (svc("shop-a", {"target": 81}), [], [{"target": 81}]),
    "a backend port it lacks is added": (
        svc("shop-a"), [route(A90, B10)],
        [{"target": 80, "protocol": "tcp", "mode": "ingress"}]),
    "a port it declares is not repeated": (
        svc("shop-a", {"target": 80, "published": 30001, "protocol": "tcp"}), [route(A90)],
        [{"target": 80, "published": 30001, "protocol": "tcp"}]),
    "udp is another port": (
        svc("shop-a", {"target": 80, "protocol": "tcp"}), [route(A90, protocol="udp")],
        [{"target": 80, "protocol": "tcp"}, {"target": 80, "protocol": "udp",
                                               "mode": "ingress"}]),
    "two routes to one port: once": (
        svc("shop-a"), [route(A90), route(A90, name="other", port=9090)],
        [{"target": 80, "protocol": "tcp", "mode": "ingress"}]),
    "another namespace's route: nothing": (svc("shop-a"), [route(A90, ns="prod")], []),
    "a route to another service: nothing": (svc("shop-c"), [route(A90, B10)], []),
}


@pytest.mark.parametrize("service,routes,expected", EXPOSED.values(), ids=EXPOSED.keys())
def test_exposed_ports(service: Resource, routes: list[Resource],
                       expected: list[Resource]) -> None:
    assert exposed_ports(service, routes) == expected


# -- shares ------------------------------------------------------------------------------

SHARES: dict[str, tuple[list[tuple[int, bool]], list[float]]] = {
    "by weight": ([(90, True), (10, True)], [0.9, 0.1]),
    "a backend with no healthy endpoint: its share goes to the others": (
        [(90, False), (10, True)], [0.0, 1.0]),
    "weight 0 gets none": ([(0, True), (5, True)], [0.0, 1.0]),
    "none live": ([(1, False), (1, False)], [0.0, 0.0]),
    "no backend": ([], []),
}


@pytest.mark.parametrize("entries,expected", SHARES.values(), ids=SHARES.keys())
def test_live_shares(entries: list[tuple[int, bool]], expected: list[float]) -> None:
    assert live_shares(entries) == pytest.approx(expected)


@given(st.lists(st.tuples(st.integers(0, 1000), st.booleans()), max_size=8))
def test_shares_sum_to_one_when_any_backend_is_live(entries: list[tuple[int, bool]]) -> None:
    found = live_shares(entries)
    live = any(w > 0 and up for w, up in entries)
    assert sum(found) == pytest.approx(1.0 if live else 0.0)
    assert all(f == 0 for f, (w, up) in zip(found, entries) if w == 0 or not up)


# -- weights and the live split -----------------------------------------------------------

def test_weights_are_parsed_and_changed() -> None:
    assert parse_weights(["shop-a=50", "shop-b=0"]) == {"shop-a": 50, "shop-b": 0}
    changed = with_weights(route(A90, B10), {"shop-b": 50})
    assert weights_text(changed) == "shop-a=90,shop-b=50"
    assert weights_text(route(A90, B10)) == "shop-a=90,shop-b=10"  # a copy was changed


@pytest.mark.parametrize("words,message", [
    (["shop-a"], "is not SERVICE=WEIGHT"), (["=5"], "is not SERVICE=WEIGHT"),
    (["shop-a=-1"], "from 0 to 1000"), (["shop-a=1001"], "from 0 to 1000"),
    (["shop-a=1", "shop-a=2"], "given twice"), ([], "at least one")])
def test_bad_weights_are_refused(words: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_weights(words)


def test_unknown_backend_and_all_zero_are_refused() -> None:
    with pytest.raises(ValueError, match="route shop has no backend shop-c"):
        with_weights(route(A90, B10), {"shop-c": 1})
    with pytest.raises(ValueError, match="every weight would be 0"):
        with_weights(route(A90, B10), {"shop-a": 0, "shop-b": 0})


def endpoints(count: int) -> list[Resource]:
    return [{"task": f"t{i}", "node": "n1", "address": "10.0.0.1", "hostPort": 32768 + i}
            for i in range(count)]


def test_the_live_split_reads_the_document() -> None:
    doc = {"kind": "Route", "routeUid": "u-1", "backends": [
        {**A90, "endpoints": endpoints(2)}, {**B10, "endpoints": endpoints(1)}]}
    split = live_split(route(A90, B10), doc)
    assert [(b["service"], b["share"], b["up"]) for b in split] == [
        ("shop-a", 0.9, 2), ("shop-b", 0.1, 1)]
    assert split_text(split) == "shop-a 90% (2 up), shop-b 10% (1 up)"
    doc["backends"][0]["endpoints"] = []
    assert split_text(live_split(route(A90, B10), doc)) == "shop-a 0% (0 up), shop-b 100% (1 up)"


def test_without_a_current_document_nothing_is_up() -> None:
    stale = {"kind": "Route", "routeUid": "an earlier route",
             "backends": [{**A90, "endpoints": endpoints(2)}]}
    for doc in (None, stale, "corrupt"):
        assert split_text(live_split(route(A90, B10), doc)) == \
            "shop-a 0% (0 up), shop-b 0% (0 up)"
