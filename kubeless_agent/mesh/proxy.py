"""Forwarding one accepted TCP connection to a backend, with asyncio protocols.

Each side of a forwarded connection is a ``_Side`` protocol; bytes go from
``data_received`` straight into the other side's transport (no coroutine,
no intermediate buffer per chunk), and flow control is the transports':
when one side's write buffer passes its high-water mark, the other side
stops reading until it drains. A half-close (EOF) is passed on, so
request/response protocols that shut down their write side still work;
the pair closes once both directions ended or either side broke.

``ClientSide`` is what the listener makes per accepted connection: it
pauses reading, tries the backends in the order the route gives
(round robin, skipping those that refuse or time out), then links the
two sides. When no backend answers the client is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from kubeless_agent.mesh.table import Backend

log = logging.getLogger(__name__)

HIGH_WATER = 256 * 1024


class Counted(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class Picker(Protocol):
    """What a client side needs from its port: backends to try, and where to report."""

    connect_timeout: float

    def candidates(self) -> list[Backend]: ...

    def failed(self, backend: Backend) -> None: ...

    def counters(self) -> tuple[Counted, Counted]: ...  # bytes upstream, downstream

    def opened(self) -> None: ...

    def unanswered(self) -> None: ...  # no backend answered: the client is closed

    def closed(self) -> None: ...


class _Side(asyncio.Protocol):
    """One end of a forwarded pair."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.bytes: Counted | None = None
        self.eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)
        transport.pause_reading()  # until both sides are linked: nothing is read unforwarded

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.write(data)
            if self.bytes is not None:
                self.bytes.inc(len(data))

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.lost:
            return False
        if peer.eof or not peer.transport.can_write_eof():
            peer.transport.close()
            return False
        peer.transport.write_eof()
        return True  # keep our write side open for the peer's answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.close()  # flushes what is buffered, then closes

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.lost:
            self.peer.transport.resume_reading()


class ClientSide(_Side):
    """The accepted end: connects to a backend, then forwards."""

    def __init__(self, picker: Picker, spawn: Callable[[Any], asyncio.Task[None]]) -> None:
        super().__init__()
        self.picker = picker
        self.spawn = spawn
        self.backend_side: _Side | None = None
        self.forwarded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.picker.opened()
        self.spawn(self._connect())

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.picker.closed()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        for backend in self.picker.candidates():
            if self.lost:
                return
            side = _Side()
            try:
                await asyncio.wait_for(loop.create_connection(lambda: side, backend.address,
                                                              backend.port),
                                       self.picker.connect_timeout)
            except (OSError, asyncio.TimeoutError) as err:
                log.debug("backend %s:%d: %s", backend.address, backend.port, err)
                self.picker.failed(backend)
                continue
            self._link(side)
            return
        self.picker.unanswered()
        if self.transport is not None:
            self.transport.close()  # nobody answers

    def _link(self, side: _Side) -> None:
        assert self.transport is not None and side.transport is not None
        if self.lost:
            side.transport.close()
            return
        up, down = self.picker.counters()
        self.peer, side.peer = side, self
        self.bytes, side.bytes = up, down
        self.backend_side = side
        self.forwarded = True
        self.transport.resume_reading()
        side.transport.resume_reading()
