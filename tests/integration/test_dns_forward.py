"""The agent's DNS forwarding names outside ``kubeless.``, over real loopback sockets.

A ``DnsServer`` on a free loopback port forwards to upstream resolvers the
test starts itself (``tests.support.dns_upstream``), named in a resolv.conf
the test writes: over UDP and TCP, a truncated UDP answer passed back so the
client retries over TCP, upstreams tried in order past one that never
answers or is not there, SERVFAIL when none answers, REFUSED (logged once)
with no upstream, a changed resolv.conf followed. No query leaves loopback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from prometheus_client import REGISTRY

from kubeless_agent.dns import DnsServer, Forwarder
from lab.waiting import until
from tests.support.dns_upstream import Upstream, free_loopback

pytestmark = pytest.mark.integration

RECORDS = {"outside.example.test": ["A 192.0.2.7"],
           "big.example.test": [f"TXT {'x' * 200}"] * 5}


async def ask(server: tuple[str, int], name: str, qtype: str = "A", tcp: bool = False,
              timeout: float = 5.0) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    raw = await asyncio.to_thread(query.send, server[0], server[1], tcp=tcp, timeout=timeout)
    reply = DNSRecord.parse(raw)
    assert reply.header.id == query.header.id  # the client's id, whatever went upstream
    return reply


def a_records(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


@pytest.fixture
def run_server(tmp_path: Path) -> object:
    """``async with run_server(resolv_conf_text, timeout=...) as addr``: a running server."""
    import contextlib

    @contextlib.asynccontextmanager
    async def start(text: str, timeout: float = 2.0) -> AsyncIterator[tuple[str, int]]:
        conf = tmp_path / "resolv.conf"
        conf.write_text(text)
        addr = free_loopback()
        server = DnsServer([addr], forwarder=Forwarder(str(conf), timeout=timeout,
                                                       reload_interval=0.1))
        task = asyncio.create_task(server.run())
        try:
            await asyncio.wait_for(server.settled.wait(), 10)
            assert server.serving() == [addr]
            yield addr
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return start


def conf(*upstreams: tuple[str, int]) -> str:
    return "".join(f"nameserver [{h}]:{p}\n" for h, p in upstreams)


def forwarded(result: str, transport: str) -> float:
    return REGISTRY.get_sample_value("kubeless_agent_dns_forwarded_total",
                                     {"result": result, "transport": transport}) or 0.0


async def test_outside_names_are_forwarded_over_the_clients_transport(run_server) -> None:
    with Upstream(RECORDS) as up:
        async with run_server(conf(up.addr)) as server:
            before = forwarded("answered", "udp")
            assert a_records(await ask(server, "outside.example.test")) == ["192.0.2.7"]
            assert a_records(await ask(server, "outside.example.test", tcp=True)) == ["192.0.2.7"]
            nx = await ask(server, "nothing.example.test")
            assert nx.header.rcode == RCODE.NXDOMAIN  # the upstream's answer, passed on
            assert up.asked == [("outside.example.test.", "A", "udp"),
                                ("outside.example.test.", "A", "tcp"),
                                ("nothing.example.test.", "A", "udp")]
            assert forwarded("answered", "udp") == before + 2
            # the zone itself is answered here, never asked upstream
            soa = await ask(server, "kubeless", "SOA")
            assert soa.header.rcode == RCODE.NOERROR and soa.header.aa == 1
            assert len(up.asked) == 3


async def test_a_truncated_udp_answer_is_passed_back_and_tcp_gets_it_all(run_server) -> None:
    with Upstream(RECORDS, udp_limit=512) as up:
        async with run_server(conf(up.addr)) as server:
            udp = await ask(server, "big.example.test", "TXT")
            assert udp.header.tc == 1 and not udp.rr
            full = await ask(server, "big.example.test", "TXT", tcp=True)
            assert full.header.tc == 0 and len(full.rr) == 5
            assert [t for *_, t in up.asked] == ["udp", "tcp"]


async def test_upstreams_are_tried_in_order_past_silent_and_absent_ones(run_server) -> None:
    absent = free_loopback()  # nothing listens there: refused at once
    with Upstream(silent=True) as silent, Upstream(RECORDS) as good:
        async with run_server(conf(absent, silent.addr, good.addr), timeout=0.5) as server:
            for tcp in (False, True):
                began = time.monotonic()
                reply = await ask(server, "outside.example.test", tcp=tcp)
                assert a_records(reply) == ["192.0.2.7"]
                assert time.monotonic() - began >= 0.5  # the silent one had its timeout


async def test_servfail_when_no_upstream_answers_in_time(run_server) -> None:
    with Upstream(silent=True) as silent:
        async with run_server(conf(silent.addr), timeout=0.3) as server:
            before = forwarded("timeout", "udp"), forwarded("timeout", "tcp")
            seconds = REGISTRY.get_sample_value("kubeless_agent_dns_forward_seconds_count",
                                                {"transport": "udp"}) or 0.0
            for tcp in (False, True):
                reply = await ask(server, "outside.example.test", tcp=tcp)
                assert reply.header.rcode == RCODE.SERVFAIL
            assert (forwarded("timeout", "udp"), forwarded("timeout", "tcp")) == \
                (before[0] + 1, before[1] + 1)
            assert REGISTRY.get_sample_value("kubeless_agent_dns_forward_seconds_count",
                                             {"transport": "udp"}) == seconds + 1


async def test_without_upstream_outside_names_are_refused_and_logged_once(
        run_server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kubeless_agent.dns.forward")
    async with run_server("# nothing here\nsearch example.test\n") as server:
        for _ in range(3):
            reply = await ask(server, "outside.example.test")
            assert reply.header.rcode == RCODE.REFUSED
    warnings = [r.getMessage() for r in caplog.records if "no upstream nameserver" in
                r.getMessage()]
    assert len(warnings) == 1, warnings


async def test_a_changed_resolv_conf_is_followed(run_server, tmp_path: Path) -> None:
    with Upstream({"outside.example.test": ["A 192.0.2.1"]}) as first, \
            Upstream({"outside.example.test": ["A 192.0.2.2"]}) as second:
        async with run_server(conf(first.addr)) as server:
            assert a_records(await ask(server, "outside.example.test")) == ["192.0.2.1"]
            (tmp_path / "resolv.conf").write_text(conf(second.addr) + "# changed\n")
            await until(lambda: _answers(server, "192.0.2.2"), 10, "the new upstream answers")


async def _answers(server: tuple[str, int], want: str) -> bool:
    return a_records(await ask(server, "outside.example.test")) == [want]


async def test_the_server_never_forwards_to_itself(run_server, tmp_path: Path) -> None:
    # a resolv.conf naming the agent's own address: forwarding there would loop
    addr = free_loopback()
    conf_path = tmp_path / "own.conf"
    conf_path.write_text(conf(addr))
    server = DnsServer([addr], forwarder=Forwarder(str(conf_path), timeout=0.3))
    task = asyncio.create_task(server.run())
    try:
        await asyncio.wait_for(server.settled.wait(), 10)
        assert server.forwarder is not None and server.forwarder.upstreams == []
        reply = await ask(addr, "outside.example.test")
        assert reply.header.rcode == RCODE.REFUSED
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
