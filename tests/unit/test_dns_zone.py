"""Building the ``kubeless.`` zone and answering queries, as pure functions (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from kubeless_agent.dns.nodes import ready_nodes
from kubeless_agent.dns.server import parse_dns_addr
from kubeless_agent.dns.zone import answer, build_zone, result_of, service_addresses

T1, T2 = "a" * 25, "b" * 25


def doc(service: str = "web", ns: str = "default", ingress: bool = True,
        endpoints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    mode = "ingress" if ingress else "host"
    return {"namespace": ns, "service": service, "serviceUid": "u",
            "ports": [{"name": "http", "target": 80, "published": 30001, "protocol": "tcp",
                       "mode": mode}],
            "endpoints": endpoints if endpoints is not None else [
                {"task": T1, "slot": 1, "node": "n2", "address": "127.0.0.2",
                 "ports": [{"target": 80, "published": 32768, "protocol": "tcp"}]},
                {"task": T2, "slot": 2, "node": "n2", "address": "127.0.0.2",
                 "ports": [{"target": 80, "published": 32769, "protocol": "tcp"}]}]}


READY = {"n2": "127.0.0.2", "n3": "127.0.0.3"}


def ask(name: str, qtype: str = "A", docs: list[Any] | None = None,
        ready: dict[str, str] | None = None) -> DNSRecord:
    zone = build_zone([doc()] if docs is None else docs, READY if ready is None else ready)
    return answer(DNSRecord.question(name, qtype), zone)


def rdatas(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr)


def test_a_of_a_service_with_an_ingress_port_is_every_ready_node() -> None:
    reply = ask("web.default.kubeless")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1
    assert rdatas(reply) == ["127.0.0.2", "127.0.0.3"]
    assert all(rr.ttl == 5 for rr in reply.rr)


def test_a_of_a_service_without_ingress_is_its_endpoints() -> None:
    assert rdatas(ask("web.default.kubeless", docs=[doc(ingress=False)])) == ["127.0.0.2"]


def test_before_any_node_is_known_the_endpoints_answer() -> None:
    assert rdatas(ask("web.default.kubeless", ready={})) == ["127.0.0.2"]


def test_names_are_case_insensitive_and_may_end_with_a_dot() -> None:
    assert rdatas(ask("WEB.Default.Kubeless.")) == ["127.0.0.2", "127.0.0.3"]


@pytest.mark.parametrize("label", ["http", "80"])
def test_srv_per_endpoint_by_port_name_or_number(label: str) -> None:
    reply = ask(f"_{label}._tcp.web.default.kubeless", "SRV")
    got = sorted((rr.rdata.port, str(rr.rdata.target)) for rr in reply.rr)
    assert got == [(32768, f"{T1}.tasks.web.default.kubeless."),
                   (32769, f"{T2}.tasks.web.default.kubeless.")]
    assert sorted(str(rr.rdata) for rr in reply.ar) == ["127.0.0.2", "127.0.0.2"]


def test_task_names_resolve_to_their_node() -> None:
    assert rdatas(ask(f"{T1}.tasks.web.default.kubeless")) == ["127.0.0.2"]
    assert rdatas(ask("tasks.web.default.kubeless")) == ["127.0.0.2"]


@pytest.mark.parametrize("name,qtype,result", [
    ("nope.default.kubeless", "A", "nxdomain"),
    ("web.other.kubeless", "A", "nxdomain"),
    ("_grpc._tcp.web.default.kubeless", "SRV", "nxdomain"),
    ("web.default.kubeless", "AAAA", "nodata"),
    ("_http._tcp.web.default.kubeless", "A", "nodata"),
    ("default.kubeless", "A", "nodata"),  # an empty non-terminal exists
    ("kubeless", "SOA", "noerror"),
    ("example.com", "A", "refused"),
    ("kubeless.example.com", "A", "refused"),
])
def test_negative_and_other_answers(name: str, qtype: str, result: str) -> None:
    reply = ask(name, qtype)
    assert result_of(reply) == result
    if result in ("nxdomain", "nodata"):
        assert [QTYPE.get(rr.rtype) for rr in reply.auth] == ["SOA"]


def test_a_service_with_no_endpoints_exists_but_has_no_srv() -> None:
    docs = [doc(endpoints=[])]
    assert rdatas(ask("web.default.kubeless", docs=docs)) == ["127.0.0.2", "127.0.0.3"]
    assert result_of(ask("_http._tcp.web.default.kubeless", "SRV", docs=docs)) == "nodata"
    assert result_of(ask("web.default.kubeless", docs=[doc(ingress=False, endpoints=[])])) \
        == "nodata"


def test_malformed_documents_and_endpoints_are_left_out() -> None:
    bad = doc(endpoints=[{"task": "x/y", "address": "127.0.0.9", "ports": []},
                         {"task": T1, "address": "not-an-ip", "ports": []}])
    zone = build_zone([bad, "text", {"service": "x"}], {})
    assert service_addresses(bad, {}) == []
    assert "web.default.kubeless" in zone.names and len(zone.names) >= 3


def test_any_query_returns_what_the_name_has() -> None:
    assert rdatas(ask("web.default.kubeless", "ANY")) == ["127.0.0.2", "127.0.0.3"]


READY_NODES: dict[str, tuple[dict[str, object], dict[str, str]]] = {
    "a heartbeat with its address": ({"n1": {"address": "127.0.0.5"}}, {"n1": "127.0.0.5"}),
    "a stopped agent's heartbeat: ready until its lease expires":
        ({"n1": {"address": "10.0.0.1", "stoppedAt": "2026-01-01T00:00:00Z"}},
         {"n1": "10.0.0.1"}),
    "no address": ({"n2": {}}, {}),
    "an empty address": ({"n2": {"address": ""}}, {}),
    "not a mapping": ({"n3": "text"}, {}),
    "no heartbeat, no node": ({}, {}),
}


@pytest.mark.parametrize("case", list(READY_NODES))
def test_ready_nodes_come_from_heartbeats_alone(case: str) -> None:
    beats, want = READY_NODES[case]
    assert ready_nodes(beats) == want


@pytest.mark.parametrize("text,want", [("127.0.0.2", ("127.0.0.2", 53)),
                                       ("0.0.0.0:5353", ("0.0.0.0", 5353))])
def test_parse_dns_addr(text: str, want: tuple[str, int]) -> None:
    assert parse_dns_addr(text) == want


@pytest.mark.parametrize("text", ["", ":53", "1.2.3.4:x", "1.2.3.4:70000"])
def test_parse_dns_addr_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_dns_addr(text)


def route_doc(name: str = "shop", ns: str = "default") -> dict[str, Any]:
    return {"kind": "Route", "namespace": ns, "route": name, "routeUid": "r", "port": 8080,
            "protocol": "tcp", "backends": [{"service": "web", "port": 80, "weight": 1,
                                             "endpoints": []}]}


def test_a_route_answers_with_every_ready_node() -> None:
    reply = ask("shop.default.kubeless", docs=[doc(), route_doc()])
    assert rdatas(reply) == ["127.0.0.2", "127.0.0.3"]
    # the service documents answer as before
    assert rdatas(ask("web.default.kubeless", docs=[route_doc(), doc()])) == \
        ["127.0.0.2", "127.0.0.3"]
    assert len(ask("_http._tcp.web.default.kubeless", "SRV", docs=[route_doc(), doc()]).rr) == 2


def test_a_route_and_a_service_of_one_name_share_it_once() -> None:
    docs = [doc(service="shop", ingress=False), route_doc()]
    assert rdatas(ask("shop.default.kubeless", docs=docs)) == ["127.0.0.2", "127.0.0.3"]


def test_a_route_with_no_ready_node_has_no_address() -> None:
    reply = ask("shop.default.kubeless", docs=[route_doc()], ready={})
    assert reply.header.rcode == RCODE.NOERROR and not reply.rr
    assert ask("shop.other.kubeless", docs=[route_doc()]).header.rcode == RCODE.NXDOMAIN
