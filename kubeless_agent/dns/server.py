"""The agent's DNS server for ``kubeless.``: UDP and TCP on one or more addresses.

``DnsServer`` keeps the endpoints documents (it is an informer handler on
``endpoints/``) and the ready nodes (``set_ready``, from ``nodes.ReadyNodes``),
rebuilds the zone lazily after a change (``zone.build_zone``), and answers
each query with ``zone.answer``. Over UDP an answer larger than the
client's size (512 bytes, or its EDNS0 size) is truncated (TC) so the
client retries over TCP.

An address it cannot bind (port 53 held by another agent of this host, no
permission) is logged and tried again every ``retry_interval`` seconds:
DNS is a service of the agent, never a reason for it to stop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from dnslib import QTYPE, DNSError, DNSRecord
from prometheus_client import Counter, Gauge

from kubeless_agent.dns.zone import TTL, Zone, answer, build_zone, result_of

log = logging.getLogger(__name__)

QUERIES = Counter("kubeless_agent_dns_queries", "DNS queries answered, by query type, "
                  "result (noerror, nodata, nxdomain, refused, formerr...) and transport",
                  ["type", "result", "transport"])
BOUND = Gauge("kubeless_agent_dns_sockets", "DNS sockets (UDP and TCP) the agent listens on")
UNBOUND = Gauge("kubeless_agent_dns_unbound_addresses",
                "DNS addresses the agent should listen on but cannot bind")

MAX_TCP = 65535


def parse_dns_addr(text: str, default_port: int = 53) -> tuple[str, int]:
    """``ADDR[:PORT]`` -> (addr, port); ValueError with a sentence when malformed."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = text.strip(), str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--dns-addr {text!r}: expected ADDR or ADDR:PORT")
    return host, int(port)


def container_nameserver(addrs: Iterable[tuple[str, int]], gateway: str,
                         subnet: str) -> str | None:
    """The address containers of the bridge (``gateway``, ``subnet``) reach our DNS at:
    the first port-53 address inside the subnet, or the gateway when we listen on every
    address; None when they cannot reach it (resolv.conf has no port)."""
    try:
        network = ipaddress.ip_network(subnet, strict=False) if subnet else None
    except ValueError:
        network = None
    for host, port in addrs:
        if port != 53:
            continue
        if host == "0.0.0.0" or host == gateway:
            return gateway
        try:
            if network is not None and ipaddress.ip_address(host) in network:
                return host
        except ValueError:
            continue
    return None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.handle(data, "udp")
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class DnsServer:
    """Answers for the zone on every address of ``addrs``: [(addr, port)]."""

    def __init__(self, addrs: Iterable[tuple[str, int]], *, ttl: int = TTL,
                 retry_interval: float = 5.0) -> None:
        self.addrs = list(dict.fromkeys(addrs))
        self.ttl = ttl
        self.retry_interval = retry_interval
        self.docs: dict[str, Any] = {}
        self.ready: dict[str, str] = {}
        self._zone: Zone | None = None
        self._serial = 0
        self.sockets: dict[tuple[str, int], list[Any]] = {}  # addr -> [udp transport, tcp server]
        self.unbound: dict[tuple[str, int], str] = {}
        self._clients: set[asyncio.Task[None]] = set()

    # -- data ---------------------------------------------------------------------

    def on_endpoints(self, key: str, old: Any, new: Any) -> None:
        if new is None:
            self.docs.pop(key, None)
        else:
            self.docs[key] = new
        self._zone = None

    def set_ready(self, ready: Mapping[str, str]) -> None:
        if dict(ready) != self.ready:
            self.ready = dict(ready)
            self._zone = None

    def zone(self) -> Zone:
        if self._zone is None:
            self._serial += 1
            self._zone = build_zone(self.docs.values(), self.ready, serial=self._serial,
                                    ttl=self.ttl)
        return self._zone

    def handle(self, data: bytes, transport: str) -> bytes | None:
        """One query's wire bytes -> the reply's (None: not even a header to answer)."""
        try:
            query = DNSRecord.parse(data)
        except (DNSError, Exception):
            QUERIES.labels("unknown", "formerr", transport).inc()
            return None
        reply = answer(query, self.zone())
        qtype = QTYPE.get(query.q.qtype) if query.questions else "none"
        QUERIES.labels(str(qtype), result_of(reply), transport).inc()
        packed: bytes = reply.pack()
        if transport == "udp" and len(packed) > _udp_limit(query):
            packed = reply.truncate().pack()
        return packed

    # -- sockets --------------------------------------------------------------------

    async def run(self) -> None:
        """Bind every address, retrying those that fail; returns only when cancelled."""
        try:
            while True:
                for addr in self.addrs:
                    if addr not in self.sockets:
                        await self._bind(addr)
                BOUND.set(sum(len(s) for s in self.sockets.values()))
                UNBOUND.set(len(self.unbound))
                await asyncio.sleep(self.retry_interval if self.unbound else 3600)
        finally:
            await asyncio.shield(self.close())

    async def _bind(self, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        udp = None
        try:
            udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=addr)
            tcp = await asyncio.start_server(self._serve_tcp, addr[0], addr[1],
                                             reuse_address=True)
        except OSError as err:
            if udp is not None:
                udp.close()
            first = addr not in self.unbound
            self.unbound[addr] = err.strerror or str(err)
            if first:
                log.warning("dns: cannot listen on %s:%d: %s; retrying every %.0fs", addr[0],
                            addr[1], self.unbound[addr], self.retry_interval)
            return
        self.unbound.pop(addr, None)
        self.sockets[addr] = [udp, tcp]
        log.info("dns: serving %s. on %s:%d (udp, tcp)", "kubeless", addr[0], addr[1])

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            while True:
                head = await reader.readexactly(2)
                data = await reader.readexactly(struct.unpack("!H", head)[0])
                reply = self.handle(data, "tcp")
                if reply is None:
                    return
                writer.write(struct.pack("!H", len(reply)) + reply[:MAX_TCP])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._clients.discard(task)

    async def close(self) -> None:
        for udp, tcp in self.sockets.values():
            udp.close()
            tcp.close()
        self.sockets.clear()
        for t in list(self._clients):
            t.cancel()
        BOUND.set(0)
        UNBOUND.set(0)


def _udp_limit(query: DNSRecord) -> int:
    for rr in query.ar:
        if rr.rtype == QTYPE.OPT:
            return max(512, min(int(rr.rclass), 4096))
    return 512
