"""The dashboard's HTTP server: GET only, a few fixed paths, and one event stream.

A small asyncio HTTP/1.1 server rather than a web framework (no new dependency,
a few hundred KB less than aiohttp in every controllers process): it reads one
request per connection, answers, and closes, except ``/events``, a
server-sent-events stream (``text/event-stream``) that stays open and carries
each new snapshot of the feed (``controllers.dashboard.feed``) as one
``data:`` line, with a comment every ``KEEPALIVE`` seconds so a vanished
browser is noticed.

    GET /               the page (static/index.html)
    GET /app.js         its script, /style.css its style
    GET /api/snapshot   a snapshot built now, JSON (what the stream sends)
    GET /events         the stream

Read-only by construction: nothing here writes to etcd, and any method but GET
and HEAD is refused (405). No authentication: whoever reaches the address reads
the cluster's state (services, tasks, nodes, events; never a secret's value).
It binds 127.0.0.1 by default; there it also refuses a ``Host`` that is not a
loopback name, so a web page that rebinds its own name to 127.0.0.1 cannot
read it from the user's browser (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from dataclasses import dataclass
from importlib import resources

from controllers.dashboard import DEFAULT_ADDRESS, DEFAULT_PORT
from controllers.dashboard.feed import DashboardFeed

log = logging.getLogger(__name__)

KEEPALIVE = 15.0
REQUEST_TIMEOUT = 10.0
MAX_REQUEST = 8192  # bytes of request line and headers

STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}
# Only our own files run or load: no inline script, nothing from elsewhere.
SECURITY_HEADERS = ("Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                    "Referrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n"
                    "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'\r\n")
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    host: str


def parse_request(head: bytes) -> Request | None:
    """The method, path (no query) and Host of a request head; None when unreadable."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return None
    if not version.startswith("HTTP/1."):
        return None
    host = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "host":
            host = value.strip()
    return Request(method, target.split("?", 1)[0], host)


def host_allowed(host: str, bind_address: str) -> bool:
    """Bound to loopback: only a loopback Host (name or address, any port). Bound
    elsewhere: any (the operator chose who may reach it)."""
    if not _is_loopback(bind_address):
        return True
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]").split("]")[0] if name.startswith("[") else name
    return name == "localhost" or _is_loopback(name)


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def static_file(name: str) -> bytes:
    return resources.files("controllers.dashboard").joinpath("static", name).read_bytes()


class DashboardServer:
    """Serves ``feed`` on ``address:port`` (port 0: any free one, said by ``port``)."""

    def __init__(self, feed: DashboardFeed, address: str = DEFAULT_ADDRESS,
                 port: int = DEFAULT_PORT) -> None:
        self.feed = feed
        self.address = address
        self.port = port
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()  # the connections being answered
        self._files = {path: (static_file(name), kind) for path, (name, kind) in STATIC.items()}

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        """Listen (raises OSError when the address cannot be bound)."""
        self._server = await asyncio.start_server(self._handle, self.address, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):  # the open streams: they never end themselves
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)
        try:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError):
                return
            if len(head) > MAX_REQUEST:
                return
            await self._answer(parse_request(head[:-4]), writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the browser went away
        except asyncio.CancelledError:
            pass  # we are closing: end quietly (3.11's streams log a cancelled handler)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, request: Request | None, writer: asyncio.StreamWriter) -> None:
        if request is None:
            return await self._send(writer, 400, b"bad request\n")
        if request.method not in ("GET", "HEAD"):
            return await self._send(writer, 405, b"read-only: GET only\n",
                                    extra="Allow: GET, HEAD\r\n")
        if not host_allowed(request.host, self.address):
            return await self._send(writer, 403, b"this dashboard answers on loopback names "
                                                 b"only (Host: localhost or 127.0.0.1)\n")
        body_only = request.method == "GET"
        if request.path in self._files:
            body, kind = self._files[request.path]
            return await self._send(writer, 200, body, kind, head_only=not body_only)
        if request.path == "/api/snapshot":
            if not self.feed.synced:
                return await self._send(writer, 503, b"not synced yet\n")
            return await self._send(writer, 200, await self.feed.fresh(), "application/json",
                                    head_only=not body_only)
        if request.path == "/events" and body_only:
            return await self._stream(writer)
        return await self._send(writer, 404, b"not found\n")

    async def _send(self, writer: asyncio.StreamWriter, code: int, body: bytes,
                    kind: str = "text/plain; charset=utf-8", *, extra: str = "",
                    head_only: bool = False) -> None:
        head = (f"HTTP/1.1 {code} {REASONS[code]}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n{SECURITY_HEADERS}{extra}\r\n")
        writer.write(head.encode() + (b"" if head_only else body))
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        """Each snapshot as one event until the browser goes away (or we close)."""
        writer.write(("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      f"Connection: close\r\n{SECURITY_HEADERS}\r\nretry: 2000\n\n").encode())
        await writer.drain()
        with self.feed.subscription() as snapshots:
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE):
                        data = await snapshots.get()
                except TimeoutError:
                    writer.write(b": keepalive\n\n")
                else:
                    writer.write(b"data: " + data + b"\n\n")
                await writer.drain()
