"""A resolver the test starts itself on loopback: the upstream the agent's DNS forwards to.

``Upstream(records)`` serves fixed answers (``{"name.": ["A 192.0.2.7"]}``,
any other name NXDOMAIN) over UDP and TCP on a free port of a loopback
address, in threads (dnslib's server), so agents in other processes and
containers' queries through them reach it while a test awaits. It records
each question with its transport (``asked``). ``udp_limit`` truncates UDP
answers (TC) past that size, as a real resolver does past 512 bytes.
``silent=True`` binds both sockets and never answers (the timeout case).

``resolv_conf(tmp_path)`` writes a resolv.conf naming it (the OpenBSD
``nameserver [ADDR]:PORT`` form the agent reads), for ``--resolv-conf``.
No test queries a resolver outside.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer


def free_udp_tcp_port(host: str) -> int:
    """A port free on ``host`` for both UDP and TCP (DNS serves both on one port)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = int(u.getsockname()[1])
            try:
                with socket.socket() as t:
                    t.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no port free for UDP and TCP on {host}")


def free_loopback() -> tuple[str, int]:
    """A random 127.x.y.z address and a port free there for UDP and TCP."""
    host = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
    return host, free_udp_tcp_port(host)


class _Resolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        name = str(request.q.qname).lower()
        self.upstream.asked.append((name, QTYPE.get(request.q.qtype), handler.protocol))
        reply = request.reply()
        records = self.upstream.records.get(name)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for text in records:
            for rr in RR.fromZone(f"{name} 60 IN {text}"):
                if request.q.qtype in (rr.rtype, QTYPE.ANY):
                    reply.add_answer(rr)
        return reply


class Upstream:
    """A test's own resolver on loopback (UDP and TCP); a context manager."""

    def __init__(self, records: dict[str, list[str]] | None = None, *, udp_limit: int = 0,
                 silent: bool = False) -> None:
        self.records = {k.lower() if k.endswith(".") else k.lower() + ".": v
                        for k, v in (records or {}).items()}
        self.udp_limit = udp_limit
        self.silent = silent
        self.host, self.port = free_loopback()
        self.asked: list[tuple[str, str, str]] = []
        self._servers: list[DNSServer] = []
        self._sockets: list[socket.socket] = []

    @property
    def addr(self) -> tuple[str, int]:
        return self.host, self.port

    def resolv_conf(self, directory: Path) -> Path:
        path = directory / f"resolv-{self.host}-{self.port}.conf"
        path.write_text(f"# the test's own upstream\nnameserver [{self.host}]:{self.port}\n")
        return path

    def __enter__(self) -> Upstream:
        if self.silent:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(self.addr)
            tcp = socket.socket()
            tcp.bind(self.addr)
            tcp.listen(16)
            self._sockets = [udp, tcp]
            return self
        limit = self.udp_limit

        class Handler(DNSHandler):  # type: ignore[misc]
            udplen = limit

        quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data")
        for tcp in (False, True):
            server = DNSServer(_Resolver(self), port=self.port, address=self.host, tcp=tcp,
                               handler=Handler, logger=quiet)
            server.start_thread()
            self._servers.append(server)
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()
        for s in self._sockets:
            s.close()

