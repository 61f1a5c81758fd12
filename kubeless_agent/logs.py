"""The agent's log endpoint: ``GET /logs/<task-id>?tail=N&follow=1`` over HTTP or HTTPS.

The same server answers ``POST /exec/<task-id>`` (``kubeless exec``): that endpoint,
its admin-only rule and its stream are ``kubeless_agent.exec``.

Logs stay on the node that ran the task (as with docker, whose ``service
logs`` goes through each node): the agent serves them on its advertise
address, on ``--logs-port`` (0: any free port), and says where in its
heartbeat (``logsPort``); the CLI reads the heartbeat of the task's node
and connects (``kubeless_cli.logs_cmd``).

The response is ``text/plain``, the task's output line by line, and the
connection closes when the output ends (at once, or with ``follow=1`` when
the task stops, or when the client goes away). 404: no runtime of this
process knows the task. One server per process serves every local node.

With a server identity (``ssl_context``: ``kubeless.cluster.node_tls``) it
speaks TLS only and requires a client certificate signed by the cluster CA:
a client without one (or plain HTTP) fails the handshake and gets nothing; a
verified certificate that names no kubeless identity gets 403. The heartbeat
says ``logsTLS: true`` so the CLI knows the scheme. A renewed certificate is
loaded into the same context (``node_tls.reload_server_cert``): the server
keeps listening, new handshakes present the new certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from kubeless.cluster.exec_wire import EXEC_PATH
from kubeless.cluster.node_tls import allowed_client, peer_common_name
from kubeless_agent.exec import Refused, serve_exec
from kubeless_agent.runtime import Runtime

log = logging.getLogger(__name__)


class LogServer:
    """Serves the logs of the tasks of every runtime in ``runtimes`` (node id -> runtime)."""

    def __init__(self, runtimes: Mapping[str, Runtime], host: str = "127.0.0.1",
                 port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.runtimes = runtimes
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def start(self) -> int:
        """Listen; the bound port (the one asked for, or a free one for 0)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  ssl=self.ssl_context,
                                                  ssl_handshake_timeout=10.0
                                                  if self.ssl_context else None)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("serving task logs on %s:%d%s", self.host, self.port,
                 " over TLS (client certificates required)" if self.tls else "")
        return self.port

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._clients):
            t.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._clients.add(me)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("serving logs")
        finally:
            self._clients.discard(me)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readline()).decode("latin-1").split()
        headers = await _headers(reader)
        peer = peer_common_name(writer.get_extra_info("peercert"))
        if self.tls and not allowed_client(peer):
            return _respond(writer, 403, "the client certificate names no kubeless identity\n")
        if len(request) >= 2 and request[0] == "POST" and request[1].startswith(EXEC_PATH):
            try:
                return await serve_exec(self.runtimes, request[1], headers, reader, writer,
                                        peer, self.tls)
            except Refused as err:
                return _respond(writer, err.code, f"{err}\n")
        if len(request) < 2 or request[0] != "GET":
            return _respond(writer, 405, "only GET (logs) and POST (exec)\n")
        url = urlsplit(request[1])
        if not url.path.startswith("/logs/"):
            return _respond(writer, 404, "not found: try /logs/<task-id>\n")
        tid = unquote(url.path[len("/logs/"):])
        query = parse_qs(url.query)
        try:
            tail = int(query["tail"][0]) if "tail" in query else None
        except ValueError:
            return _respond(writer, 400, "tail must be a number\n")
        follow = query.get("follow", ["0"])[0] in ("1", "true", "yes")
        lines = await self._open(tid, tail, follow)
        if lines is None:
            return _respond(writer, 404, f"task {tid} is not on this node\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Connection: close\r\n\r\n")
        await _stream(lines, reader, writer)

    async def _open(self, tid: str, tail: int | None,
                    follow: bool) -> AsyncIterator[bytes] | None:
        """The lines of the first runtime that knows the task (docker and process keep logs;
        fake keeps none), or None."""
        for runtime in self.runtimes.values():
            try:
                return await runtime.open_logs(tid, tail=tail, follow=follow)
            except LookupError:  # UnknownTask: not this runtime's
                continue
        return None


async def _stream(lines: AsyncIterator[bytes], reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    """Copy lines to the client until they end or the client hangs up."""
    async def copy() -> None:
        async for line in lines:
            writer.write(line)
            await writer.drain()

    copying = asyncio.ensure_future(copy())
    hangup = asyncio.ensure_future(reader.read())
    try:
        await asyncio.wait({copying, hangup}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (copying, hangup):
            t.cancel()
        await asyncio.gather(copying, hangup, return_exceptions=True)
        with contextlib.suppress(Exception):
            await lines.aclose()  # type: ignore[attr-defined]


async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
    """The request's headers, names lowercased (at most 100 of them)."""
    found: dict[str, str] = {}
    for _ in range(100):
        line = (await reader.readline()).decode("latin-1").strip()
        if not line:
            break
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    return found


def _respond(writer: asyncio.StreamWriter, code: int, text: str) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
              409: "Conflict", 500: "Internal Server Error"}[code]
    body = text.encode()
    writer.write(f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
