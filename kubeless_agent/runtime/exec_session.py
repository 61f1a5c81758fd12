"""A command run in a task (``kubeless exec``): the session every runtime's ``exec`` returns.

    ExecSession     what the agent's exec endpoint (``kubeless_agent.exec``) drives:
                    stdin in, (stream, bytes) out until the command ends, its exit code
    QueuedSession   the shared half: output chunks through a queue the runtime feeds
    LocalSession    a local process (the process runtime's): pipes, or a pseudo-terminal
                    with a TTY; a command that cannot start raises ``CannotRun`` with
                    docker exec's code (126, 127)

The docker runtime's session (the Engine's exec API) and the fake runtime's (a few
built-ins) live with their runtimes and are QueuedSessions too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from kubeless.cluster.exec_wire import STDERR, STDOUT

Chunk = tuple[int, bytes]  # (STDOUT or STDERR, bytes)


class CannotRun(Exception):
    """The command cannot start: ``code`` 126 (not executable) or 127 (not found)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ExecSession(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    def output(self) -> AsyncIterator[Chunk]: ...

    async def wait(self) -> int: ...

    async def kill(self) -> None: ...


class QueuedSession:
    """Output through a queue (``None`` ends it); subclasses feed it and say the code."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Chunk | None] = asyncio.Queue()

    async def output(self) -> AsyncIterator[Chunk]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk


class LocalSession(QueuedSession):
    """A local process: ``argv`` with ``env`` in ``cwd``, in a session of its own."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int | None) -> None:
        super().__init__()
        self.proc = proc
        self.master = master  # the pseudo-terminal's side we hold (a TTY), else None
        self._readers: list[asyncio.Task[None]] = []

    @classmethod
    async def start(cls, argv: list[str], env: Mapping[str, str], cwd: str | None, *,
                    tty: bool, stdin: bool, size: tuple[int, int] | None) -> LocalSession:
        master = slave = None
        if tty:
            master, slave = os.openpty()
            os.set_blocking(master, False)  # read when the loop says readable, which may be stale
            if size:
                fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        pipe = asyncio.subprocess.PIPE
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=dict(env), cwd=cwd, start_new_session=True,
                stdin=slave if tty else (pipe if stdin else asyncio.subprocess.DEVNULL),
                stdout=slave if tty else pipe, stderr=slave if tty else pipe)
        except FileNotFoundError:
            cls._close(master)
            raise CannotRun(127, f'exec: "{argv[0]}": executable file not found') from None
        except OSError as err:  # not executable, not a program, a directory
            cls._close(master)
            raise CannotRun(126, f'exec: "{argv[0]}": {err.strerror}') from None
        finally:
            cls._close(slave)
        session = cls(proc, master)
        session._pump()
        return session

    def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        if self.master is not None:
            self._readers = [loop.create_task(self._read_pty(self.master))]
        else:
            assert self.proc.stdout is not None and self.proc.stderr is not None
            self._readers = [loop.create_task(self._read_pipe(self.proc.stdout, STDOUT)),
                             loop.create_task(self._read_pipe(self.proc.stderr, STDERR))]
        ended = asyncio.gather(*self._readers, return_exceptions=True)
        ended.add_done_callback(lambda _: self.queue.put_nowait(None))

    async def _read_pipe(self, pipe: asyncio.StreamReader, stream: int) -> None:
        while data := await pipe.read(65536):
            await self.queue.put((stream, data))

    async def _read_pty(self, master: int) -> None:
        """Until the terminal's last holder closes it (EIO): the process and its children."""
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(master, readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                try:
                    data = os.read(master, 65536)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: nobody holds the terminal any more
                    return
                if not data:
                    return
                await self.queue.put((STDOUT, data))
        finally:
            loop.remove_reader(master)

    async def write(self, data: bytes) -> None:
        if self.master is not None:
            await self._write_pty(self.master, memoryview(data))
        elif self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.drain()

    @staticmethod
    async def _write_pty(master: int, data: memoryview) -> None:
        loop = asyncio.get_running_loop()
        while data:
            try:
                data = data[os.write(master, data):]
            except BlockingIOError:
                writable = loop.create_future()
                loop.add_writer(master, writable.set_result, None)
                try:
                    await writable
                finally:
                    loop.remove_writer(master)
            except OSError:  # the command is gone: its input goes nowhere
                return

    async def close_stdin(self) -> None:
        if self.master is not None:
            await self.write(b"\x04")  # a terminal's end of input: ^D
        elif self.proc.stdin is not None:
            self.proc.stdin.close()

    async def wait(self) -> int:
        code = await self.proc.wait()
        self._close(self.master)
        self.master = None
        return 128 - code if code < 0 else code  # killed by a signal: the shell's 128+N

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        for t in self._readers:
            t.cancel()
        await self.wait()

    @staticmethod
    def _close(fd: int | None) -> None:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
