"""Published ports as pure functions: allocation, carry-over, conflicts (kubeless.api.ports)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeless.api.ports import (DYNAMIC_RANGE, carry_over, conflicts, holdings, own_duplicates,
                                plan_ports, repeated_ports)

Resource = dict[str, Any]


def svc(name: str, *ports: Resource, ns: str = "default") -> Resource:
    full = [{"protocol": "tcp", "mode": "ingress", **p} for p in ports]
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"template": {"image": "x:1"}, "ports": full}}


def published(doc: Resource) -> list[Any]:
    return [p.get("published") for p in doc["spec"]["ports"]]


# -- conflicts ------------------------------------------------------------------------

CONFLICTS: dict[str, tuple[Resource, list[Resource], list[str]]] = {
    "ingress vs ingress, same number and protocol": (
        svc("web", {"target": 80, "published": 8080}),
        [svc("api", {"target": 81, "published": 8080})],
        ["service default/web: published port 8080/tcp (ingress) is already held by "
         "service default/api (ingress)"]),
    "ingress vs host": (
        svc("web", {"target": 80, "published": 8080}),
        [svc("api", {"target": 81, "published": 8080, "mode": "host"})],
        ["service default/web: published port 8080/tcp (ingress) is already held by "
         "service default/api (host)"]),
    "host vs ingress": (
        svc("web", {"target": 80, "published": 8080, "mode": "host"}),
        [svc("api", {"target": 81, "published": 8080})],
        ["service default/web: published port 8080/tcp (host) is already held by "
         "service default/api (ingress)"]),
    "host vs host on different services: allowed (per node)": (
        svc("web", {"target": 80, "published": 8080, "mode": "host"}),
        [svc("api", {"target": 81, "published": 8080, "mode": "host"})], []),
    "tcp and udp are separate": (
        svc("dns", {"target": 53, "published": 53, "protocol": "udp"}),
        [svc("web", {"target": 80, "published": 53})], []),
    "other namespaces count": (
        svc("web", {"target": 80, "published": 8080}),
        [svc("web", {"target": 80, "published": 8080}, ns="prod")],
        ["service default/web: published port 8080/tcp (ingress) is already held by "
         "service prod/web (ingress)"]),
    "the service itself (its live version) does not count": (
        svc("web", {"target": 80, "published": 8080}),
        [svc("web", {"target": 80, "published": 8080})], []),
    "ports without a number hold nothing": (
        svc("web", {"target": 80, "mode": "host"}),
        [svc("api", {"target": 80, "mode": "host"})], []),
}


@pytest.mark.parametrize("case", CONFLICTS)
def test_conflicts(case: str) -> None:
    service, others, want = CONFLICTS[case]
    assert conflicts(service, others) == want


def test_a_service_may_not_publish_one_number_twice() -> None:
    doc = svc("web", {"target": 80, "published": 8080}, {"target": 81, "published": 8080,
                                                         "mode": "host"})
    assert own_duplicates(doc) == ["service default/web: published port 8080/tcp is declared "
                                   "twice"]
    assert own_duplicates(svc("web", {"target": 80, "published": 8080},
                              {"target": 80, "published": 8080, "protocol": "udp"})) == []


REPEATED: dict[str, tuple[list[Any], list[tuple[int, int, tuple[int, str]]]]] = {
    "none": ([{"target": 80, "published": 80}, {"target": 81, "published": 81}], []),
    "tcp and udp are apart": ([{"target": 53, "published": 53},
                               {"target": 53, "published": 53, "protocol": "udp"}], []),
    "unnumbered ports hold nothing": ([{"target": 80}, {"target": 80}], []),
    "third repeats the first": ([{"target": 80, "published": 80}, {"target": 81},
                                 {"target": 82, "published": 80, "mode": "host"}],
                                [(2, 0, (80, "tcp"))]),
    "not mappings are skipped": (["80", {"target": 80, "published": 80}], []),
}


@pytest.mark.parametrize("case", REPEATED)
def test_repeated_ports(case: str) -> None:
    ports, want = REPEATED[case]
    assert repeated_ports(ports) == want


# -- allocation and carry-over ----------------------------------------------------------

def test_lowest_free_number_of_the_range_per_protocol() -> None:
    live = [svc("a", {"target": 80, "published": 30000}),
            svc("b", {"target": 80, "published": 30001, "mode": "host"})]
    docs, problems = plan_ports([svc("web", {"target": 80}, {"target": 53, "protocol": "udp"},
                                     {"target": 443})], live)
    assert problems == []
    assert published(docs[0]) == [30002, 30000, 30003]


def test_host_ports_without_number_stay_without() -> None:
    docs, problems = plan_ports([svc("web", {"target": 80, "mode": "host"})], [])
    assert problems == [] and published(docs[0]) == [None]


def test_documents_of_one_apply_get_distinct_numbers() -> None:
    docs, problems = plan_ports([svc("a", {"target": 80}), svc("b", {"target": 80}),
                                 svc("c", {"target": 80, "published": 30001})], [])
    assert problems == []
    assert [published(d) for d in docs] == [[30000], [30002], [30001]]


def test_a_reapply_keeps_the_live_number() -> None:
    live = svc("web", {"name": "http", "target": 80, "published": 31000},
               {"name": "admin", "target": 80, "published": 31001})
    again = svc("web", {"name": "admin", "target": 80}, {"name": "http", "target": 80})
    docs, problems = plan_ports([again], [live])
    assert problems == [] and published(docs[0]) == [31001, 31000]
    # a changed target is a new port: a new number, the old one is released
    docs, _ = plan_ports([svc("web", {"target": 81})], [live])
    assert published(docs[0]) == [30000]


def test_carry_over_matches_mode_and_protocol() -> None:
    live = svc("web", {"target": 80, "published": 31000})
    assert published(carry_over(svc("web", {"target": 80, "protocol": "udp"}), live)) == [None]
    assert published(carry_over(svc("web", {"target": 80, "mode": "host"}), live)) == [None]
    assert published(carry_over(svc("web", {"target": 80}), None)) == [None]


def test_clashes_between_documents_reported_once() -> None:
    _, problems = plan_ports([svc("a", {"target": 80, "published": 8080}),
                              svc("b", {"target": 80, "published": 8080})], [])
    assert problems == ["service default/b: published port 8080/tcp (ingress) is already "
                        "held by service default/a (ingress)"]


def test_range_exhausted() -> None:
    docs, problems = plan_ports([svc("web", {"target": 80}, {"target": 81})],
                                [svc("a", {"target": 1, "published": 30000})],
                                span=(30000, 30001))
    assert published(docs[0]) == [30001, None]
    assert problems == ["service default/web: no free tcp port left in 30000-30001 for target 81"]


# -- properties -----------------------------------------------------------------------

PORT = st.fixed_dictionaries(
    {"target": st.integers(1, 5)},
    optional={"published": st.sampled_from([30000, 30001, 30002, 8080]),
              "protocol": st.sampled_from(["tcp", "udp"]),
              "mode": st.sampled_from(["ingress", "host"])})
SERVICES = st.lists(st.lists(PORT, max_size=3), max_size=5)


@settings(max_examples=200, deadline=None)
@given(live_ports=SERVICES, doc_ports=SERVICES)
def test_a_clean_plan_leaves_no_clash_and_numbers_every_ingress_port(
        live_ports: list[list[Resource]], doc_ports: list[list[Resource]]) -> None:
    live = [svc(f"live{i}", *ps) for i, ps in enumerate(live_ports)]
    clean = [s for i, s in enumerate(live) if not conflicts(s, live[:i]) and not own_duplicates(s)]
    docs = [svc(f"doc{i}", *ps) for i, ps in enumerate(doc_ports)]
    out, problems = plan_ports(docs, clean)
    assert len(out) == len(docs)
    for doc in out:
        for p in doc["spec"]["ports"]:
            assert p["mode"] == "host" or p.get("published"), p
    if not problems:
        everyone = clean + out
        for i, s in enumerate(everyone):
            assert conflicts(s, everyone[:i]) == []
            assert own_duplicates(s) == []
        allocated = [h.published for d in out for h in holdings(d)
                     if DYNAMIC_RANGE[0] <= h.published <= DYNAMIC_RANGE[1]]
        assert all(isinstance(n, int) for n in allocated)


@settings(max_examples=100, deadline=None)
@given(doc_ports=SERVICES)
def test_planning_twice_is_stable(doc_ports: list[list[Resource]]) -> None:
    """Applying the same documents again over what the first apply stored changes nothing."""
    docs = [svc(f"doc{i}", *ps) for i, ps in enumerate(doc_ports)]
    first, problems = plan_ports(docs, [])
    if problems:
        return
    second, problems = plan_ports(docs, first)
    assert problems == [] and second == first


# -- routes hold their port on every node ------------------------------------------------

def route(name: str, port: int, protocol: str = "tcp") -> Resource:
    return {"kind": "Route", "metadata": {"name": name, "namespace": "default"},
            "spec": {"port": port, "protocol": protocol,
                     "backends": [{"service": "shop-a", "port": 80, "weight": 1}]}}


ROUTE_CLASHES: dict[str, tuple[Resource, list[Resource], list[str]]] = {
    "a route on a service's ingress port": (
        route("shop", 8080), [svc("web", {"target": 80, "published": 8080})],
        ["route default/shop: published port 8080/tcp (ingress) is already held by "
         "service default/web (ingress)"]),
    "a route on a service's host port": (
        route("shop", 8080), [svc("web", {"target": 80, "published": 8080, "mode": "host"})],
        ["route default/shop: published port 8080/tcp (ingress) is already held by "
         "service default/web (host)"]),
    "a service's host port on a route's": (
        svc("web", {"target": 80, "published": 8080, "mode": "host"}), [route("shop", 8080)],
        ["service default/web: published port 8080/tcp (host) is already held by "
         "route default/shop (ingress)"]),
    "two routes": (
        route("other", 8080), [route("shop", 8080)],
        ["route default/other: published port 8080/tcp (ingress) is already held by "
         "route default/shop (ingress)"]),
    "a route and a service of one name are two holders": (
        route("web", 8080), [svc("web", {"target": 80, "published": 8080})],
        ["route default/web: published port 8080/tcp (ingress) is already held by "
         "service default/web (ingress)"]),
    "udp is another space": (route("dns", 8080, "udp"), [route("shop", 8080)], []),
    "the route itself, again": (route("shop", 8080), [route("shop", 8080)], []),
}


@pytest.mark.parametrize("doc,others,expected", ROUTE_CLASHES.values(),
                         ids=ROUTE_CLASHES.keys())
def test_routes_clash_with_services_and_routes(doc: Resource, others: list[Resource],
                                               expected: list[str]) -> None:
    assert conflicts(doc, others) == expected


def test_plan_ports_takes_routes_as_they_are() -> None:
    docs, problems = plan_ports([route("shop", 8080), svc("web", {"target": 80})],
                                [route("shop", 9090)])
    assert problems == [] and docs[0] == route("shop", 8080)  # replaces its live version
    assert published(docs[1]) == [DYNAMIC_RANGE[0]]
    _, problems = plan_ports([svc("web", {"target": 80, "published": 9090})],
                             [route("shop", 9090)])
    assert problems == ["service default/web: published port 9090/tcp (ingress) is already "
                        "held by route default/shop (ingress)"]
