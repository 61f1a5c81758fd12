"""Forwarding names outside ``kubeless.`` to the host's resolvers (asyncio, never blocking).

Containers have the agent's DNS as their only nameserver, so every name
they look up that is not in the zone comes here. ``Forwarder.forward``
sends the client's query, as it came (its EDNS0 size included), to each
upstream in resolv.conf order until one answers:

- over the transport the client used: a UDP query over UDP, a TCP query
  over TCP; a truncated (TC) UDP answer is passed back as is, so the
  client retries over TCP and that query is forwarded over TCP;
- with a fresh random query id on a fresh socket (an ephemeral port), the
  client's id put back in the answer;
- ``timeout`` seconds per upstream; an upstream that times out, fails, or
  answers SERVFAIL or REFUSED is passed over for the next one. When none
  answers, the client gets SERVFAIL (or the last upstream's SERVFAIL or
  REFUSED, as it was); with no upstream at all, REFUSED (logged once);
- at most ``max_inflight`` forwarded queries at a time; beyond, SERVFAIL.

Upstreams come from the host's resolv.conf (``resolvconf.upstreams``),
read again when it changes (``run`` checks it every ``reload_interval``
seconds, reading in a thread). Metrics: ``kubeless_agent_dns_forwarded_total``
by result (answered, rejected, timeout, error, overloaded, none) and
transport, ``kubeless_agent_dns_forward_seconds`` by transport, and
``kubeless_agent_dns_upstreams``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from collections.abc import Callable, Collection
from typing import Any

from dnslib import RCODE, DNSRecord
from prometheus_client import Counter, Gauge, Histogram

from kubeless_agent.dns.resolvconf import DEFAULT_PATH, Upstream, show, upstreams

log = logging.getLogger(__name__)

FORWARDED = Counter("kubeless_agent_dns_forwarded",
                    "Queries for names outside kubeless. forwarded upstream, by result "
                    "(answered; rejected: every upstream said SERVFAIL or REFUSED; timeout; "
                    "error; overloaded; none: no upstream) and client transport",
                    ["result", "transport"])
FORWARD_SECONDS = Histogram("kubeless_agent_dns_forward_seconds",
                            "From a forwarded query's arrival to its answer (every upstream "
                            "tried), by client transport", ["transport"],
                            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5))
UPSTREAMS = Gauge("kubeless_agent_dns_upstreams", "Upstream resolvers the agent forwards to")

PASS_OVER = (RCODE.SERVFAIL, RCODE.REFUSED)


class _Reply(asyncio.DatagramProtocol):
    """Waits on a connected UDP socket for the answer carrying ``qid``."""

    def __init__(self, qid: bytes) -> None:
        self.qid = qid
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data[:2] == self.qid and not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable: nobody there
        if not self.answer.done():
            self.answer.set_exception(exc)


class Forwarder:
    """Forwards queries to the nameservers of ``path`` (not ``own``, the agent's addresses)."""

    def __init__(self, path: str = DEFAULT_PATH, own: Collection[Upstream] = (), *,
                 timeout: float = 2.0, reload_interval: float = 5.0,
                 max_inflight: int = 256) -> None:
        self.path = path
        self.own = set(own)
        self.timeout = timeout
        self.reload_interval = reload_interval
        self.max_inflight = max_inflight
        self.upstreams: list[Upstream] = []
        self.problem = "not read yet"  # why there is no upstream ("" when there is one)
        self.watchers: list[Callable[[], None]] = []
        self._stamp: tuple[float, int] | None = None
        self._text = ""
        self._error: str | None = "not read yet"
        self._inflight = 0

    # -- upstreams ---------------------------------------------------------------------

    async def load(self) -> None:
        """Read the resolv.conf again when it changed (in a thread: never on the loop)."""
        stamp, text, error = await asyncio.to_thread(_read, self.path, self._stamp)
        if stamp == self._stamp and stamp is not None:
            return
        self._stamp, self._text, self._error = stamp, text, error
        self._apply()

    def set_own(self, own: Collection[Upstream]) -> None:
        """The agent's own DNS addresses changed (bound, or lost): never forward to them."""
        if set(own) != self.own:
            self.own = set(own)
            self._apply()

    def _apply(self) -> None:
        if self._stamp is None and self._error == "not read yet":
            return  # before the first load
        found = upstreams(self._text, self.own) if self._error is None else []
        if self._error is not None:
            problem = f"cannot read {self.path}: {self._error}"
        elif not found:
            problem = f"no upstream nameserver in {self.path}"
        else:
            problem = ""
        if found == self.upstreams and problem == self.problem:
            return
        self.upstreams, self.problem = found, problem
        UPSTREAMS.set(len(found))
        if problem:
            log.warning("dns: %s; names outside kubeless. are refused", problem)
        else:
            log.info("dns: forwarding names outside kubeless. to %s (from %s)",
                     ", ".join(map(show, found)), self.path)
        for watcher in self.watchers:
            watcher()

    async def run(self) -> None:
        """Follow the resolv.conf's changes; returns only when cancelled."""
        while True:
            await self.load()
            await asyncio.sleep(self.reload_interval)

    # -- forwarding --------------------------------------------------------------------

    async def forward(self, query: DNSRecord, data: bytes, transport: str) -> bytes:
        """The answer to the client's query ``data`` (parsed: ``query``), from upstream."""
        if not self.upstreams:
            return _failure(query, RCODE.REFUSED, "none", transport)
        if self._inflight >= self.max_inflight:
            return _failure(query, RCODE.SERVFAIL, "overloaded", transport)
        self._inflight += 1
        began = time.monotonic()
        try:
            result, raw = await self._ask_in_turn(data, transport)
        finally:
            self._inflight -= 1
        FORWARD_SECONDS.labels(transport).observe(time.monotonic() - began)
        if raw is None:
            return _failure(query, RCODE.SERVFAIL, result, transport)
        FORWARDED.labels(result, transport).inc()
        return data[:2] + raw[2:]

    async def _ask_in_turn(self, data: bytes, transport: str) -> tuple[str, bytes | None]:
        """(result, answer) from the first upstream that answers well, in order."""
        passed_over: bytes | None = None
        timed_out = False
        for upstream in list(self.upstreams):
            qid = os.urandom(2)
            try:
                async with asyncio.timeout(self.timeout):
                    ask = self._udp if transport == "udp" else self._tcp
                    raw = await ask(upstream, qid + data[2:])
            except TimeoutError:
                timed_out = True
                log.debug("dns: upstream %s timed out", show(upstream))
                continue
            except (OSError, EOFError) as err:
                log.debug("dns: upstream %s: %s", show(upstream), err)
                continue
            if len(raw) < 12 or raw[:2] != qid:
                continue
            if raw[3] & 0x0F in PASS_OVER:
                passed_over = raw
                continue
            return "answered", raw
        if passed_over is not None:
            return "rejected", passed_over
        return ("timeout" if timed_out else "error"), None

    async def _udp(self, upstream: Upstream, data: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Reply(data[:2]), remote_addr=upstream)
        try:
            transport.sendto(data)
            return await protocol.answer
        finally:
            transport.close()

    async def _tcp(self, upstream: Upstream, data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(upstream[0], upstream[1])
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            await writer.drain()
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            return await reader.readexactly(size)
        finally:
            writer.close()


def _failure(query: DNSRecord, rcode: int, result: str, transport: str) -> bytes:
    FORWARDED.labels(result, transport).inc()
    reply = query.reply(ra=1, aa=0)
    reply.header.rcode = rcode
    packed: bytes = reply.pack()
    return packed


def _read(path: str, stamp: tuple[float, int] | None) -> tuple[tuple[float, int] | None, str,
                                                                 str | None]:
    """(mtime and size, text, error) of the file; the text only when the stamp changed."""
    try:
        st = os.stat(path)
        new = (st.st_mtime, st.st_size)
        if new == stamp:
            return new, "", None
        with open(path, encoding="utf-8", errors="replace") as f:
            return new, f.read(), None
    except OSError as err:
        return None, "", err.strerror or str(err)
