"""``kubeless exec`` in a container: the Docker Engine's exec API, as ``docker exec`` uses it.

``exec_create`` (the container's own env, user and working directory, as docker exec),
``exec_start(socket=True)``: a hijacked connection carrying stdin one way and the
output the other (docker's 8-byte multiplexed frames without a TTY, raw bytes with
one), then ``exec_inspect`` for the exit code. The blocking SDK calls run on the
runtime's executor (``call``); the socket is read by a thread of its own (a session
may last) that hands each frame to the loop. A command that cannot start exits 126,
or 127 when it is not found, as docker exec does since Engine 24 (older engines say
126 for both, and put the runtime's error on stdout: it goes to stderr here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from docker.utils.socket import frames_iter

from kubeless.cluster.exec_wire import STDERR, STDOUT, ExecRequest
from kubeless_agent.runtime.exec_session import QueuedSession

log = logging.getLogger(__name__)

Call = Callable[..., Awaitable[Any]]
EXIT_CODE_WAIT = 10.0  # the engine records an exec's exit a moment after its stream ends
START_FAILED = b"OCI runtime exec failed"  # the engine's words for a command that never ran


class DockerSession(QueuedSession):
    """One exec instance and its hijacked connection."""

    def __init__(self, call: Call, api: Any, exec_id: str, sock: Any, tty: bool) -> None:
        super().__init__()
        self.call = call
        self.api = api
        self.exec_id = exec_id
        self.sock = sock
        self.raw: socket.socket = getattr(sock, "_sock", sock)  # SocketIO wraps the socket
        self.tty = tty
        self.not_found = False  # the command never started: it does not exist

    @classmethod
    async def start(cls, call: Call, api: Any, container_id: str,
                    request: ExecRequest) -> DockerSession:
        created = await call(api.exec_create, container_id, list(request.command),
                             stdin=request.stdin, tty=request.tty, stdout=True, stderr=True)
        exec_id = str(created["Id"])
        sock = await call(api.exec_start, exec_id, tty=request.tty, socket=True)
        session = cls(call, api, exec_id, sock, request.tty)
        if request.tty and request.size:
            with contextlib.suppress(Exception):
                await call(api.exec_resize, exec_id, height=request.size[0],
                           width=request.size[1])
        session._pump(asyncio.get_running_loop())
        return session

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        def read() -> None:
            try:
                for stream, data in frames_iter(self.sock, self.tty):
                    kind = STDERR if stream == 2 else STDOUT
                    if data.startswith(START_FAILED):
                        kind = STDERR
                        self.not_found = b"not found" in data
                    loop.call_soon_threadsafe(self.queue.put_nowait, (kind, bytes(data)))
            except OSError:
                pass  # the connection closed under us: the session is over
            finally:
                with contextlib.suppress(RuntimeError):  # the loop may have closed
                    loop.call_soon_threadsafe(self.queue.put_nowait, None)

        threading.Thread(target=read, name=f"exec-{self.exec_id[:12]}", daemon=True).start()

    async def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self.raw.sendall, data)

    async def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self.raw.shutdown(socket.SHUT_WR)

    async def wait(self) -> int:
        """The exit code once the engine has it (it may lag the end of the stream)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EXIT_CODE_WAIT
        while True:
            inspect = await self.call(self.api.exec_inspect, self.exec_id)
            if not inspect.get("Running") and inspect.get("ExitCode") is not None:
                self._close()
                code = int(inspect["ExitCode"])
                return 127 if code == 126 and self.not_found else code
            if loop.time() > deadline:
                self._close()
                return 1
            await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """The client went away. The Engine has no call to stop an exec: kill its process
        when the agent may (it shares the host's pid namespace), then hang up."""
        with contextlib.suppress(Exception):
            inspect = await self.call(self.api.exec_inspect, self.exec_id)
            pid = int(inspect.get("Pid") or 0)
            if inspect.get("Running") and pid > 0:
                os.kill(pid, signal.SIGKILL)
        self._close()

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self.raw.close()
        with contextlib.suppress(Exception):
            self.sock.close()
