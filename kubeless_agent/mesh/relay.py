"""Forwarding accepted TCP connections to backends with plain non-blocking sockets.

The mesh's hot path, written against the event loop's reader/writer
callbacks rather than transports and coroutines: a connection costs an
accept, a non-blocking connect to a backend, two reader registrations,
and then one ``recv_into`` (a buffer shared by the listener's relays) and
one ``send`` per chunk each way. No task, future or protocol object is
made per connection (asyncio's ``create_server`` and
``create_connection`` make several; measured, this halves the mesh's CPU
per connection: see bench/mesh.py).

- ``Listener`` accepts in a loop while the listening socket is readable;
- ``Relay`` is one forwarded connection: it tries the backends in the
  order its ``Picker`` gives (a group by weight, round robin inside it,
  recently failed ones last: ``table.Rotation``), each with a connect
  timeout, skipping those that refuse; when none answers the client is
  closed. On a port that asks for it, the backend first gets a PROXY
  protocol v1 header with the client's address (``proxy_protocol``; the
  only extra cost is on those ports). Once connected, each direction is a
  ``_Half``: what the destination cannot take now is kept and the source
  is not read again until it drained (flow control), an EOF is passed on
  as a half-close (``shutdown(SHUT_WR)``), and the pair closes once both
  directions ended or either side broke.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Protocol

from kubeless_agent.mesh.proxy_protocol import header_v1
from kubeless_agent.mesh.table import Backend

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
ACCEPT_BATCH = 64


class Counted(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class Picker(Protocol):
    """What a relay needs from its port: backends to try, and where to report."""

    connect_timeout: float
    proxy_protocol: bool  # send a PROXY v1 header to the backend first

    def candidates(self) -> list[Backend]: ...

    def failed(self, backend: Backend) -> None: ...

    def linked(self, backend: Backend) -> tuple[Counted, Counted]:
        """The backend answered: count it; the byte counters (upstream, downstream)."""
        ...

    def opened(self) -> None: ...

    def unanswered(self) -> None: ...

    def closed(self) -> None: ...


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A non-blocking listening TCP socket; OSError when the port cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted ones inherit it
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Listener:
    """Accepts on one published port and hands each connection to a ``Relay``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 picker: Picker) -> None:
        self.loop = loop
        self.sock = sock
        self.picker = picker
        self.relays: set[Relay] = set()
        self.buffer = memoryview(bytearray(CHUNK))  # shared: callbacks never interleave
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # out of descriptors, or the peer gave up already
                log.warning("mesh: accept on %s: %s", self.sock.getsockname(), err)
                return
            Relay(self.loop, conn, self.picker, self.relays, self.buffer).start()

    def close(self) -> None:
        """Stop accepting; connections being forwarded go on."""
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def abort(self) -> None:
        """Stop accepting and cut every connection (the agent stops)."""
        self.close()
        for relay in list(self.relays):
            relay.close()


class _Half:
    """One direction of a relay: from ``src`` to ``dst``."""

    __slots__ = ("relay", "src", "dst", "bytes", "pending", "eof", "reading", "writing")

    def __init__(self, relay: Relay, src: socket.socket, dst: socket.socket,
                 counted: Counted) -> None:
        self.relay, self.src, self.dst, self.bytes = relay, src, dst, counted
        self.pending = b""
        self.eof = False
        self.reading = True  # src is registered for reading (by the relay, at link time)
        self.writing = False  # dst is registered for writing

    def unregister(self) -> None:
        loop = self.relay.loop
        if self.reading:
            loop.remove_reader(self.src.fileno())
            self.reading = False
        if self.writing:
            loop.remove_writer(self.dst.fileno())
            self.writing = False

    def readable(self) -> None:
        buffer = self.relay.buffer
        try:
            size = self.src.recv_into(buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.relay.close()
            return
        if not size:
            self._ended()
            return
        self.bytes.inc(size)
        try:
            sent = self.dst.send(buffer[:size])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.relay.close()
            return
        if sent < size:  # the other side is slow: keep the rest, stop reading until it drained
            self.pending = bytes(buffer[sent:size])
            loop = self.relay.loop
            loop.remove_reader(self.src.fileno())
            self.reading = False
            loop.add_writer(self.dst.fileno(), self.writable)
            self.writing = True

    def writable(self) -> None:
        try:
            sent = self.dst.send(self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.relay.close()
            return
        self.pending = self.pending[sent:]
        if self.pending:
            return
        loop = self.relay.loop
        loop.remove_writer(self.dst.fileno())
        self.writing = False
        if self.eof:
            self._shutdown()
        else:
            loop.add_reader(self.src.fileno(), self.readable)
            self.reading = True

    def _ended(self) -> None:
        self.eof = True
        self.relay.loop.remove_reader(self.src.fileno())
        self.reading = False
        self._shutdown()

    def _shutdown(self) -> None:
        if self.pending:
            return  # after the rest is written
        if not self.relay.half_done():  # the other way is still open: pass the EOF on
            try:
                self.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


class Relay:
    """One accepted connection: find a backend that answers, then forward both ways."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: socket.socket, picker: Picker,
                 registry: set[Relay], buffer: memoryview) -> None:
        self.loop = loop
        self.buffer = buffer
        self.client = client
        self.picker = picker
        self.registry = registry
        self.backend: socket.socket | None = None
        self.trying: Backend | None = None
        self.candidates: list[Backend] = []
        self.timer: asyncio.TimerHandle | None = None
        self.halves: tuple[_Half, _Half] | None = None
        self.done_halves = 0
        self.closed = False

    def start(self) -> None:
        self.client.setblocking(False)
        self.registry.add(self)
        self.picker.opened()
        self.candidates = self.picker.candidates()
        self.candidates.reverse()  # popped from the end
        self._next()

    def _next(self) -> None:
        while self.candidates:
            backend = self.candidates.pop()
            family = socket.AF_INET6 if ":" in backend.address else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as failure:  # out of descriptors: this one cannot be forwarded
                log.warning("mesh: no socket for a backend: %s", failure)
                break
            sock.setblocking(False)
            try:
                code = sock.connect_ex((backend.address, backend.port))
            except OSError as exc:  # e.g. an address that does not parse
                code = exc.errno or errno.EINVAL
            if code in (errno.EINPROGRESS, errno.EAGAIN, 0):
                self.backend, self.trying = sock, backend
                if code == 0:
                    self._link()
                else:
                    self.loop.add_writer(sock.fileno(), self._connected)
                    self.timer = self.loop.call_later(self.picker.connect_timeout,
                                                      self._timed_out)
                return
            sock.close()
            self.picker.failed(backend)
        self.picker.unanswered()
        self.close()

    def _connected(self) -> None:
        assert self.backend is not None and self.trying is not None
        self.loop.remove_writer(self.backend.fileno())
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        err = self.backend.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._failed()
            return
        self._link()

    def _timed_out(self) -> None:
        self.timer = None
        if self.backend is not None:
            self.loop.remove_writer(self.backend.fileno())
        self._failed()

    def _failed(self) -> None:
        assert self.backend is not None and self.trying is not None
        log.debug("mesh: backend %s:%d did not answer", self.trying.address, self.trying.port)
        self.backend.close()
        self.picker.failed(self.trying)
        self.backend = self.trying = None
        self._next()

    def _link(self) -> None:
        assert self.backend is not None and self.trying is not None
        self.backend.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up, down = self.picker.linked(self.trying)
        self.halves = (_Half(self, self.client, self.backend, up),
                       _Half(self, self.backend, self.client, down))
        client_ready = True
        if self.picker.proxy_protocol:
            client_ready = self._send_header(self.halves[0])
            if self.closed:
                return
        if client_ready:
            self.loop.add_reader(self.client.fileno(), self.halves[0].readable)
        self.loop.add_reader(self.backend.fileno(), self.halves[1].readable)

    def _send_header(self, up: _Half) -> bool:
        """The PROXY header before any of the client's bytes. False: not all sent (the
        rest waits as the upstream half's pending bytes, and the client is read once it
        drained, as after any slow send), or the relay closed."""
        try:
            header = header_v1(self.client.getpeername(), self.client.getsockname())
        except OSError:  # the client left already
            self.close()
            return False
        try:
            sent = up.dst.send(header)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return False
        if sent == len(header):
            return True
        up.pending = header[sent:]
        up.reading = False
        up.writing = True
        self.loop.add_writer(up.dst.fileno(), up.writable)
        return False

    def half_done(self) -> bool:
        """One direction ended; True when both did and the relay closed."""
        self.done_halves += 1
        if self.done_halves == 2:
            self.close()
            return True
        return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            if self.backend is not None:  # still connecting
                self.loop.remove_writer(self.backend.fileno())
        if self.halves is not None:
            for half in self.halves:
                half.unregister()
        for sock in (self.client, self.backend):
            if sock is not None:
                sock.close()
        self.registry.discard(self)
        self.picker.closed()
