"""The agent's exec endpoint: ``POST /exec/<task-id>``, then a framed stream both ways.

Served by the node's log server (``kubeless_agent.logs``: the same port, the
heartbeat's ``logsPort``); the wire is ``kubeless.cluster.exec_wire``. Running a
command in a task is running code on the node, so:

- only over TLS with a client certificate of the cluster CA (a server without TLS
  answers 403 to every exec: there is no one to trust on plain HTTP);
- only for an ``admin:<name>`` identity: a node's or manager's certificate gets 403
  (a compromised node must not reach into another node's tasks);
- each exec is logged with who asked, the task and the command.

The runtime that holds the task runs the command (``Runtime.exec``, an
``ExecSession``); its output goes to the client as frames, the client's STDIN
frames to the command, and the exit code is the last frame. A client that hangs up
kills the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from urllib.parse import unquote

from kubeless.cluster.exec_wire import (EXEC_PATH, STDERR, STDIN, UPGRADE, ExecRequest,
                                        FrameError, exit_frame, frame, parse_header)
from kubeless.cluster.identities import IdentityError, parse_identity
from kubeless_agent.errors import NotRunning, RuntimeFailure, UnknownTask
from kubeless_agent.runtime import Runtime
from kubeless_agent.runtime.exec_session import CannotRun, ExecSession

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


class Refused(Exception):
    """An exec answered with an HTTP error: ``code`` and one line of text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


def admitted(common_name: str | None, tls: bool) -> None:
    """``Refused`` (403) unless the server is TLS and the client an admin identity."""
    if not tls:
        raise Refused(403, "exec is served over TLS with client certificates only; this "
                           "agent serves plain HTTP")
    try:
        who = parse_identity(common_name or "")
    except IdentityError:
        raise Refused(403, "the client certificate names no kubeless identity") from None
    if who.kind != "admin":
        raise Refused(403, f"exec needs an admin identity; {common_name} may not run commands "
                           "in tasks")


async def read_request(path: str, headers: Mapping[str, str],
                       reader: asyncio.StreamReader) -> tuple[str, ExecRequest]:
    """(task id, request) from the path and body; ``Refused`` (400) when unreadable."""
    tid = unquote(path[len(EXEC_PATH):].split("?", 1)[0])
    try:
        length = int(headers.get("content-length", ""))
    except ValueError:
        raise Refused(400, "exec needs a Content-Length") from None
    if not tid or not 0 < length <= MAX_BODY:
        raise Refused(400, "POST /exec/<task-id> with a JSON body of at most 64 KiB")
    try:
        return tid, ExecRequest.from_json(await reader.readexactly(length))
    except ValueError as err:
        raise Refused(400, str(err)) from None


async def open_session(runtimes: Mapping[str, Runtime], tid: str,
                       request: ExecRequest) -> ExecSession | CannotRun:
    """The session of the runtime holding the task, or why the command cannot run."""
    for runtime in runtimes.values():
        try:
            return await runtime.exec(tid, request)
        except UnknownTask:
            continue
        except NotRunning as err:
            raise Refused(409, str(err)) from None
        except CannotRun as err:
            return err
        except RuntimeFailure as err:
            raise Refused(500, f"exec in task {tid}: {err}") from None
    raise Refused(404, f"task {tid} is not on this node")


async def serve_exec(runtimes: Mapping[str, Runtime], path: str, headers: Mapping[str, str],
                     reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     common_name: str | None, tls: bool) -> None:
    """Answer one exec request; ``Refused`` before the stream starts."""
    admitted(common_name, tls)
    tid, request = await read_request(path, headers, reader)
    session = await open_session(runtimes, tid, request)
    log.info("exec by %s in task %s: %s%s", common_name, tid, list(request.command),
             " (tty)" if request.tty else "")
    writer.write(f"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                 f"Upgrade: {UPGRADE}\r\n\r\n".encode())
    if isinstance(session, CannotRun):
        writer.write(frame(STDERR, f"{session}\n".encode()) + exit_frame(session.code))
        await writer.drain()
        return
    await _relay(session, request, reader, writer)


async def _relay(session: ExecSession, request: ExecRequest, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    """Output out, stdin in, the exit code last; the client hanging up kills the command."""
    if not request.stdin:
        await session.close_stdin()
    client = asyncio.ensure_future(_from_client(session, reader))
    try:
        async def output() -> None:
            async for stream, data in session.output():
                writer.write(frame(stream, data))
                await writer.drain()

        copying = asyncio.ensure_future(output())
        await asyncio.wait({copying, client}, return_when=asyncio.FIRST_COMPLETED)
        if not copying.done():  # the client left (or sent nonsense) first
            copying.cancel()
            await session.kill()
            return
        copying.result()
        code = await session.wait()
        writer.write(exit_frame(code))
        await writer.drain()
    except BaseException:
        await asyncio.shield(session.kill())
        raise
    finally:
        client.cancel()
        with contextlib.suppress(BaseException):
            await client


async def _from_client(session: ExecSession, reader: asyncio.StreamReader) -> None:
    """STDIN frames into the command (an empty one closes its stdin) until the client
    hangs up (``IncompleteReadError``, which ends the relay)."""
    while True:
        stream, size = parse_header(await reader.readexactly(8))
        data = await reader.readexactly(size) if size else b""
        if stream != STDIN:
            raise FrameError(f"a client sends only stdin, not stream {stream}")
        if data:
            await session.write(data)
        else:
            await session.close_stdin()
