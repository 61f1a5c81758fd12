"""The agent's DNS server over UDP and TCP (dnslib's client), fed from a real etcd.

Two agents (fake runtime) on 127.0.0.2 and 127.0.0.3 each serve DNS on a
free port of their address; endpoints documents are written by hand, as
the endpoints controller writes them. Node readiness comes from the
heartbeats: the A records of a service with an ingress port are every
ready node's address, and a node whose agent stopped leaves them. Names
outside the zone go to the test's own upstream (``--resolv-conf``). An
address the agent cannot listen on is in its log and in its node's
``dns`` status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from prometheus_client import REGISTRY

from kubeless import store
from kubeless.store import Put
from kubeless.store.codec import encode_json
from kubeless_agent import running_agent
from lab.waiting import until
from tests.support.dns_upstream import Upstream, free_udp_tcp_port
from tests.support.agents import agent_on
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration

A, B = "127.0.0.2", "127.0.0.3"
TASK = "t" * 25


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """The test's own resolver on loopback, which the agents forward outside names to."""
    with Upstream({"example.test": ["A 192.0.2.9"]}) as up:
        yield up


def doc(ingress: bool = True) -> dict[str, Any]:
    return {"namespace": "default", "service": "web", "serviceUid": "u",
            "ports": [{"name": "http", "target": 80, "published": 30080, "protocol": "tcp",
                       "mode": "ingress" if ingress else "host"}],
            "endpoints": [{"task": TASK, "slot": 1, "node": "dns-0", "address": A,
                           "ports": [{"target": 80, "published": 32999, "protocol": "tcp"}]}]}


async def query(server: tuple[str, int], name: str, qtype: str = "A",
                tcp: bool = False) -> DNSRecord:
    raw = await asyncio.to_thread(DNSRecord.question(name, qtype).send, server[0], server[1],
                                  tcp=tcp, timeout=5)
    return DNSRecord.parse(raw)


def addresses(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


async def test_dns_over_udp_and_tcp(etcd_cluster: EtcdCluster, prefix: str,
                                    rstore: store.ResourceStore, tmp_path: Path,
                                    upstream: Upstream) -> None:
    servers = [(A, free_udp_tcp_port(A)), (B, free_udp_tcp_port(B))]
    configs = [agent_on(etcd_cluster, prefix, f"dns-{i}", advertise_addr=addr, heartbeat_ttl=2,
                        mesh=False, dns_addrs=(f"{addr}:{port}",), logs_port=None,
                        resolv_conf=str(upstream.resolv_conf(tmp_path)))
               for i, (addr, port) in enumerate(servers)]
    await rstore.etcd.txn([], [Put(rstore.keys.endpoints("default", "web"), encode_json(doc()))])
    async with running_agent(configs[0]) as first:
        async with running_agent(configs[1]):
            for server in servers:
                for tcp in (False, True):
                    await until(lambda: _a_is(server, [A, B], tcp), 15,
                                f"{server} A over {'tcp' if tcp else 'udp'}")
            srv = await query(servers[1], "_http._tcp.web.default.kubeless", "SRV", tcp=True)
            assert [(rr.rdata.port, str(rr.rdata.target)) for rr in srv.rr] == \
                [(32999, f"{TASK}.tasks.web.default.kubeless.")]
            assert [str(rr.rdata) for rr in srv.ar] == [A]
            nx = await query(servers[0], "nope.default.kubeless")
            assert nx.header.rcode == RCODE.NXDOMAIN
            outside = await query(servers[0], "example.test")  # forwarded upstream
            assert addresses(outside) == ["192.0.2.9"]
            assert upstream.asked == [("example.test.", "A", "udp")]
            status = await until(lambda: _dns_status(rstore, "dns-0"), 15, "dns status")
            assert status == {"serving": [f"{A}:{servers[0][1]}"], "nameserver": "",
                              "upstreams": [f"{upstream.host}:{upstream.port}"], "error": ""}
        # the second agent stopped: its lease is revoked, its node leaves the answers
        await until(lambda: _a_is(servers[0], [A]), 15, "the stopped node leaves")
        assert first.dns is not None and not first.dns.unbound
    total = REGISTRY.get_sample_value("kubeless_agent_dns_queries_total",
                                      {"type": "A", "result": "nxdomain", "transport": "udp"})
    assert total and total >= 1


async def test_a_service_without_ingress_resolves_to_its_endpoints(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore) -> None:
    server = (A, free_udp_tcp_port(A))
    config = agent_on(etcd_cluster, prefix, "dns-x", advertise_addr=B, heartbeat_ttl=2,
                      mesh=False, dns_addrs=(f"{server[0]}:{server[1]}",), logs_port=None)
    await rstore.etcd.txn([], [Put(rstore.keys.endpoints("default", "web"),
                                   encode_json(doc(ingress=False)))])
    async with running_agent(config):
        await until(lambda: _a_is(server, [A]), 15, "endpoint addresses")


async def _a_is(server: tuple[str, int], want: list[str], tcp: bool = False) -> bool:
    try:
        reply = await query(server, "web.default.kubeless", tcp=tcp)
    except OSError:
        return False
    return addresses(reply) == want


async def test_an_address_it_cannot_serve_is_in_the_log_and_the_node_status(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kubeless_agent.dns.server")
    port = free_udp_tcp_port(A)
    held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # another resolver holds it
    held.bind((A, port))
    empty = tmp_path / "resolv.conf"
    empty.write_text("search example.test\n")
    config = agent_on(etcd_cluster, prefix, "dns-held", advertise_addr=A, heartbeat_ttl=2,
                      mesh=False, dns_addrs=(f"{A}:{port}",), logs_port=None,
                      resolv_conf=str(empty))
    try:
        async with running_agent(config):
            status = await until(lambda: _dns_status(rstore, "dns-held"), 15, "dns status")
            assert status["serving"] == []
            assert status["error"] == (f"cannot serve on {A}:{port}: Address already in use; "
                                       f"no upstream nameserver in {empty}"), status
            shown = await asyncio.to_thread(_cli, etcd_cluster, prefix, "node", "inspect",
                                            "dns-held")
            assert json.loads(shown)[0]["status"]["dns"] == status  # what users see
    finally:
        held.close()
    assert any(f"{A}:{port}: Address already in use" in r.getMessage()
               for r in caplog.records), caplog.text


async def _dns_status(rstore: store.ResourceStore, node: str) -> dict[str, Any] | None:
    kv, _ = await rstore.etcd.get(rstore.keys.heartbeat(node))
    return None if kv is None else json.loads(kv.value).get("dns")


def _cli(etcd_cluster: EtcdCluster, prefix: str, *args: str) -> str:
    env = {**os.environ, **etcd_cluster.client_env(), "KUBELESS_PREFIX": prefix}
    res = subprocess.run([sys.executable, "-m", "kubeless_cli.main", *args], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout
