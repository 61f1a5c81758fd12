"""The routing mesh of one agent: a listener per published ingress port, kept current.

``RoutingMesh`` is an informer handler on ``endpoints/``: every change
recomputes the routing table (``table.wanted_routes``) at once, so a task
that left its service's endpoints gets no new connection from the next
accepted one on. Listeners are opened and closed by ``run`` (a loop woken
by changes): a published port this agent cannot bind (in use, denied) is
logged, counted, and tried again every ``retry_interval`` seconds; it never
stops the agent. Closing a listener leaves its open connections running.

Each listener's ``Port`` holds the current route, the round-robin cursor
and a short memory of backends that refused (``failure_memory`` seconds),
and is what each forwarded connection (``relay.Relay``) asks for backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubeless_agent.mesh import metrics
from kubeless_agent.mesh.relay import Counted, Listener, listening_socket
from kubeless_agent.mesh.table import (Backend, Route, attempt_order, listener_changes,
                                       wanted_routes)

log = logging.getLogger(__name__)


@dataclass
class Port:
    """One published port: its route now, and the state of its round robin."""

    route: Route
    connect_timeout: float
    failure_memory: float
    clock: Callable[[], float]
    cursor: int = 0
    failed_until: dict[Backend, float] = field(default_factory=dict)
    labels: tuple[str, str] = field(init=False, default=("", ""))  # service, port (metrics)

    def __post_init__(self) -> None:
        self.labels = (f"{self.route.namespace}/{self.route.service}", self.route.label)
        service, port = self.labels
        self._active = metrics.ACTIVE.labels(service, port)
        self._up = metrics.BYTES.labels(service, port, "upstream")
        self._down = metrics.BYTES.labels(service, port, "downstream")
        self._accepted = metrics.ACCEPTED.labels(service, port)
        self._unanswered = metrics.FAILED.labels(service, port)
        self._refused = metrics.BACKEND_FAILURES.labels(service, port)

    def candidates(self) -> list[Backend]:
        now = self.clock()
        order = attempt_order(self.route.backends, self.cursor, self.failed_until, now)
        self.cursor += 1
        if self.failed_until:
            self.failed_until = {b: t for b, t in self.failed_until.items() if t > now}
        return order

    def failed(self, backend: Backend) -> None:
        self.failed_until[backend] = self.clock() + self.failure_memory
        self._refused.inc()

    def counters(self) -> tuple[Counted, Counted]:
        return self._up, self._down

    def opened(self) -> None:
        self._accepted.inc()
        self._active.inc()

    def unanswered(self) -> None:
        self._unanswered.inc()
        log.debug("%s/%s port %d: no endpoint answered", self.route.namespace,
                  self.route.service, self.route.published)

    def closed(self) -> None:
        self._active.dec()


class RoutingMesh:
    """Listens on every published ingress port and forwards to the service's endpoints."""

    def __init__(self, bind_addr: str, *, connect_timeout: float = 2.0,
                 failure_memory: float = 2.0, retry_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bind_addr = bind_addr
        self.connect_timeout = connect_timeout
        self.failure_memory = failure_memory
        self.retry_interval = retry_interval
        self.clock = clock
        self.docs: dict[str, Any] = {}
        self.wanted: dict[int, Route] = {}
        self.ports: dict[int, Port] = {}  # published port -> its state (listening or not)
        self.servers: dict[int, Listener] = {}
        self.unbound: dict[int, str] = {}  # published port -> why it is not listening
        self.conflicts: list[Route] = []
        self._changed = asyncio.Event()
        self.settled = asyncio.Event()  # listeners match the table (tests wait on it)

    # -- the informer side (synchronous) --------------------------------------------

    def on_endpoints(self, key: str, old: Any, new: Any) -> None:
        """Informer handler: a document changed; routes are current before this returns."""
        if new is None:
            self.docs.pop(key, None)
        else:
            self.docs[key] = new
        self.wanted, conflicts = wanted_routes(self.docs.values())
        for route in conflicts:
            if route not in self.conflicts:
                log.warning("%s/%s: published port %d is also %s/%s's; not routed",
                            route.namespace, route.service, route.published,
                            self.wanted[route.published].namespace,
                            self.wanted[route.published].service)
        self.conflicts = conflicts
        for number, port in self.ports.items():
            fresh = self.wanted.get(number)
            if fresh is not None and fresh.listener == port.route.listener \
                    and fresh.target == port.route.target:
                port.route = fresh  # new backends, same listener
        self.settled.clear()
        self._changed.set()

    # -- the listeners (asyncio) ------------------------------------------------------

    async def run(self) -> None:
        """Open and close listeners as the table changes; returns only when cancelled."""
        try:
            while True:
                self._changed.clear()
                await self.reconcile()
                if not self._changed.is_set():
                    self.settled.set()
                timeout = self.retry_interval if self.unbound else None
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._changed.wait()
        finally:
            await asyncio.shield(self.close())

    async def reconcile(self) -> None:
        current = {n: p.route for n, p in self.ports.items()}
        close, open_ = listener_changes(current, self.wanted)
        for number in close:
            await self._close_port(number)
        for number in open_:
            route = self.wanted[number]
            self.ports[number] = Port(route, self.connect_timeout, self.failure_memory,
                                      self.clock)
        for number in sorted(set(self.unbound) | set(open_)):
            if number in self.ports and number not in self.servers:
                await self._listen(number)
        metrics.LISTENERS.set(len(self.servers))
        metrics.UNBOUND.set(len(self.unbound))

    async def _listen(self, number: int) -> None:
        port = self.ports[number]
        try:
            sock = listening_socket(self.bind_addr, number)
        except OSError as err:
            first = number not in self.unbound
            self.unbound[number] = err.strerror or str(err)
            metrics.BIND_FAILURES.labels(*port.labels).inc()
            if first:
                log.warning("mesh: cannot listen on %s:%d for %s/%s: %s; retrying every %.0fs",
                            self.bind_addr, number, port.route.namespace, port.route.service,
                            self.unbound[number], self.retry_interval)
            return
        server = Listener(asyncio.get_running_loop(), sock, port)
        self.unbound.pop(number, None)
        self.servers[number] = server
        log.info("mesh: %s:%d -> %s/%s port %s", self.bind_addr, number,
                 port.route.namespace, port.route.service, port.route.label)

    async def _close_port(self, number: int) -> None:
        self.ports.pop(number, None)
        self.unbound.pop(number, None)
        server = self.servers.pop(number, None)
        if server is not None:
            server.close()  # open connections go on; only accepting stops
            log.info("mesh: closed %s:%d", self.bind_addr, number)

    async def close(self) -> None:
        for number in list(self.servers):
            self.servers.pop(number).abort()
        self.ports.clear()
        self.unbound.clear()
        metrics.LISTENERS.set(0)
        metrics.UNBOUND.set(0)
