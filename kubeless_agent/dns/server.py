"""The agent's DNS server: ``kubeless.`` answered, other names forwarded; UDP and TCP.

``DnsServer`` keeps the endpoints documents (it is an informer handler on
``endpoints/``) and the ready nodes (``set_ready``, from ``nodes.ReadyNodes``),
rebuilds the zone lazily after a change (``zone.build_zone``), and answers
each query for the zone with ``zone.answer``. Over UDP an answer larger
than the client's size (512 bytes, or its EDNS0 size) is truncated (TC) so
the client retries over TCP. A query for any other name goes to the
``forward.Forwarder`` (in a task of its own: the loop never waits on an
upstream), or is REFUSED when the server has none.

An address it cannot bind (port 53 held by another agent of this host, or
by another resolver; no permission) is logged with the reason and tried
again every ``retry_interval`` seconds: DNS is a service of the agent,
never a reason for it to stop. ``settled`` is set after the first round of
binding; ``watchers`` are called whenever what is bound (or the upstreams)
changes, so the agent can tell containers and the node's status.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dnslib import QTYPE, DNSError, DNSRecord
from prometheus_client import Counter, Gauge

from kubeless_agent.dns.forward import Forwarder
from kubeless_agent.dns.zone import ORIGIN, TTL, Zone, answer, build_zone, result_of

log = logging.getLogger(__name__)

QUERIES = Counter("kubeless_agent_dns_queries", "DNS queries answered, by query type, "
                  "result (noerror, nodata, nxdomain, refused, formerr...; forwarded: a name "
                  "outside kubeless., see kubeless_agent_dns_forwarded) and transport",
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
        query = self.server.parse(data, "udp")
        if query is None:
            return
        if not self.server.forwards(query):
            self._send(self.server.handle(query, "udp"), addr)
            return
        self.server.spawn(self._forward(query, data, addr))

    async def _forward(self, query: DNSRecord, data: bytes, addr: tuple[str, int]) -> None:
        self._send(await self.server.reply(query, data, "udp"), addr)

    def _send(self, reply: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


class DnsServer:
    """Answers for the zone on every address of ``addrs``: [(addr, port)]; forwards other
    names to ``forwarder`` (None: refuses them)."""

    def __init__(self, addrs: Iterable[tuple[str, int]], *, ttl: int = TTL,
                 retry_interval: float = 5.0, forwarder: Forwarder | None = None) -> None:
        self.addrs = list(dict.fromkeys(addrs))
        self.ttl = ttl
        self.retry_interval = retry_interval
        self.forwarder = forwarder
        self.docs: dict[str, Any] = {}
        self.ready: dict[str, str] = {}
        self._zone: Zone | None = None
        self._serial = 0
        self.sockets: dict[tuple[str, int], list[Any]] = {}  # addr -> [udp transport, tcp server]
        self.unbound: dict[tuple[str, int], str] = {}
        self.settled = asyncio.Event()  # every address tried once
        self.watchers: list[Callable[[], None]] = []
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

    # -- queries --------------------------------------------------------------------

    def parse(self, data: bytes, transport: str) -> DNSRecord | None:
        """The query of wire bytes (None, counted: not even a header to answer)."""
        try:
            return DNSRecord.parse(data)
        except (DNSError, Exception):
            QUERIES.labels("unknown", "formerr", transport).inc()
            return None

    def forwards(self, query: DNSRecord) -> bool:
        """Whether ``query`` is for a name outside the zone that goes upstream."""
        if self.forwarder is None or query.header.opcode != 0 or not query.questions:
            return False
        name = str(query.q.qname).rstrip(".").lower()
        return name != ORIGIN and not name.endswith("." + ORIGIN)

    def handle(self, query: DNSRecord, transport: str) -> bytes:
        """The zone's reply to one query (outside names: REFUSED)."""
        reply = answer(query, self.zone())
        QUERIES.labels(_qtype(query), result_of(reply), transport).inc()
        packed: bytes = reply.pack()
        if transport == "udp" and len(packed) > _udp_limit(query):
            packed = reply.truncate().pack()
        return packed

    async def respond(self, data: bytes, transport: str) -> bytes | None:
        """One query's wire bytes -> the reply's, answered or forwarded (None: no reply)."""
        query = self.parse(data, transport)
        return None if query is None else await self.reply(query, data, transport)

    async def reply(self, query: DNSRecord, data: bytes, transport: str) -> bytes:
        """The reply to a parsed query (``data``: its wire bytes, as forwarded)."""
        if self.forwarder is not None and self.forwards(query):
            QUERIES.labels(_qtype(query), "forwarded", transport).inc()
            return await self.forwarder.forward(query, data, transport)
        return self.handle(query, transport)

    def spawn(self, coro: Any) -> None:
        """Run one forwarded query's task; cancelled by ``close``."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._clients.add(task)
        task.add_done_callback(self._clients.discard)

    def serving(self) -> list[tuple[str, int]]:
        """The addresses bound right now (UDP and TCP)."""
        return [a for a in self.addrs if a in self.sockets]

    # -- sockets --------------------------------------------------------------------

    async def run(self) -> None:
        """Bind every address, retrying those that fail, and follow the upstreams;
        returns only when cancelled."""
        upstreams = None
        try:
            while True:
                before = (set(self.sockets), dict(self.unbound))
                for addr in self.addrs:
                    if addr not in self.sockets:
                        await self._bind(addr)
                BOUND.set(sum(len(s) for s in self.sockets.values()))
                UNBOUND.set(len(self.unbound))
                if self.forwarder is not None:
                    self.forwarder.set_own(self.serving())
                    if upstreams is None:  # first round: upstreams known before settled
                        await self.forwarder.load()
                        self.forwarder.watchers.append(self._changed)
                        upstreams = asyncio.ensure_future(self.forwarder.run())
                if not self.settled.is_set() or before != (set(self.sockets), self.unbound):
                    self.settled.set()
                    self._changed()
                await asyncio.sleep(self.retry_interval if self.unbound else 3600)
        finally:
            if upstreams is not None:
                upstreams.cancel()
            await asyncio.shield(self.close())

    def _changed(self) -> None:
        for watcher in self.watchers:
            watcher()

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
                log.warning("dns: cannot serve cluster DNS on %s:%d: %s; retrying every %.0fs",
                            addr[0], addr[1], self.unbound[addr], self.retry_interval)
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
                reply = await self.respond(data, "tcp")
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


def _qtype(query: DNSRecord) -> str:
    return str(QTYPE.get(query.q.qtype)) if query.questions else "none"


def _udp_limit(query: DNSRecord) -> int:
    for rr in query.ar:
        if rr.rtype == QTYPE.OPT:
            return max(512, min(int(rr.rclass), 4096))
    return 512
