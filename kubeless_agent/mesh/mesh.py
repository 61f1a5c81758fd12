"""The userspace routing mesh of one agent: a listener per published tcp port, kept current.

``RoutingMesh`` is an informer handler on ``endpoints/`` (service and Route documents
alike): every change recomputes what this node forwards
(``published.wanted_published``, then ``Published.serving(node)`` for ports that keep
traffic on the receiving node) at once, so a task that left its service's endpoints,
or a new weight, applies from the next accepted connection on; connections being
forwarded go on untouched. Listeners are opened and closed by ``run`` (a loop woken by
changes): a published port this agent cannot bind (in use, denied) is logged, counted,
and tried again every ``retry_interval`` seconds; it never stops the agent. Closing a
listener leaves its open connections running. A UDP port is the kernel path's: it is
refused with one log line per port and counted, and the other ports are served.

Each listener's ``Port`` holds who publishes it (its metrics), the current
``table.Rotation`` (a group by weight, round robin inside it) and a short memory of
backends that refused (``failure_memory`` seconds); each forwarded connection
(``relay.Relay``) asks it for backends. A port whose owner changes (a service's port
becomes a route's) gets a new ``Port`` on the same listening socket, so the counts of
connections already open stay with the owner they started with. ``per_task`` counts the
connections forwarded to each endpoint task (``connections_by_task``, the load reports).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from kubeless_agent.mesh import metrics
from kubeless_agent.mesh.published import Published, shares, wanted_published
from kubeless_agent.mesh.relay import Counted, Listener, listening_socket
from kubeless_agent.mesh.table import Backend, Rotation

log = logging.getLogger(__name__)


class _Uncounted:
    """A backend that left the port between its choice and its answer: not counted."""

    def inc(self, amount: float = 1) -> None:
        pass


UNCOUNTED = _Uncounted()


class Port:
    """One published tcp port: its owner, where new connections go now, its round robin."""

    def __init__(self, published: Published, *, connect_timeout: float, failure_memory: float,
                 clock: Callable[[], float], draw: Callable[[], float],
                 per_task: dict[str, int] | None = None) -> None:
        self.per_task = per_task if per_task is not None else {}  # the mesh's, shared
        self.identity = (published.owner, published.label)
        self.connect_timeout = connect_timeout
        self.failure_memory = failure_memory
        self.clock = clock
        self.draw = draw
        self.failed_until: dict[Backend, float] = {}
        self.labels = (f"{published.namespace}/{published.name}", published.label)
        service, port = self.labels
        self._active = metrics.ACTIVE.labels(service, port)
        self._up = metrics.BYTES.labels(service, port, "upstream")
        self._down = metrics.BYTES.labels(service, port, "downstream")
        self._accepted = metrics.ACCEPTED.labels(service, port)
        self._unanswered = metrics.FAILED.labels(service, port)
        self._refused = metrics.BACKEND_FAILURES.labels(service, port)
        self._per_backend: dict[Backend, Counted] = {}
        self._series: set[tuple[str, str, str, str]] = set()
        self.rotation = Rotation(())
        self.published = published
        self.proxy_protocol = published.proxy_protocol
        self._follow(published)

    def update(self, published: Published) -> None:
        """New backends, weights or options for the next connection (same owner)."""
        if published != self.published:
            self.published = published
            self.proxy_protocol = published.proxy_protocol
            self._follow(published)

    def _follow(self, published: Published) -> None:
        self.rotation = Rotation(shares(published.groups), self.rotation.cursors_by_service())
        owner, label = self.identity
        series = {b: (owner, label, g.service, f"{b.address}:{b.port}")
                  for g in published.groups for b in g.backends}
        self._drop_series(self._series - set(series.values()))  # endpoints that left
        self._series = set(series.values())
        self._per_backend = {b: metrics.BACKEND_CONNECTIONS.labels(*s) for b, s in series.items()}

    def forget(self) -> None:
        """The port closed or changed hands: its per-endpoint series go."""
        self._drop_series(self._series)
        self._series = set()

    @staticmethod
    def _drop_series(series: set[tuple[str, str, str, str]]) -> None:
        for labels in series:
            with contextlib.suppress(KeyError):  # another port's may have gone already
                metrics.BACKEND_CONNECTIONS.remove(*labels)

    # -- what a relay asks (relay.Picker): the hot path --------------------------------

    def candidates(self) -> list[Backend]:
        failed = self.failed_until
        if not failed:
            return self.rotation.order(self.draw(), failed, 0.0)
        now = self.clock()
        order = self.rotation.order(self.draw(), failed, now)
        self.failed_until = {b: t for b, t in failed.items() if t > now}
        return order

    def failed(self, backend: Backend) -> None:
        self.failed_until[backend] = self.clock() + self.failure_memory
        self._refused.inc()

    def linked(self, backend: Backend) -> tuple[Counted, Counted]:
        self._per_backend.get(backend, UNCOUNTED).inc()
        if backend.task:
            self.per_task[backend.task] = self.per_task.get(backend.task, 0) + 1
        return self._up, self._down

    def opened(self) -> None:
        self._accepted.inc()
        self._active.inc()

    def unanswered(self) -> None:
        self._unanswered.inc()
        log.debug("mesh: %s port %d: no endpoint answered", self.published.owner,
                  self.published.port)

    def closed(self) -> None:
        self._active.dec()


class RoutingMesh:
    """Listens on every published tcp port and forwards to the owner's backends."""

    def __init__(self, bind_addr: str, *, node: str = "", connect_timeout: float = 2.0,
                 failure_memory: float = 2.0, retry_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 draw: Callable[[], float] = random.random) -> None:
        self.bind_addr = bind_addr
        self.node = node  # whose endpoints a local_only port keeps (externalTrafficPolicy)
        self.connect_timeout = connect_timeout
        self.failure_memory = failure_memory
        self.retry_interval = retry_interval
        self.clock = clock
        self.draw = draw
        self.docs: dict[str, Any] = {}
        self.wanted: dict[int, Published] = {}  # tcp port -> what this node forwards there
        self.ports: dict[int, Port] = {}  # published port -> its state (listening or not)
        self.servers: dict[int, Listener] = {}
        self.unbound: dict[int, str] = {}  # published port -> why it is not listening
        self.refused: dict[int, str] = {}  # udp port -> its owner (the kernel path's)
        self.conflicts: list[Published] = []
        # endpoint task id -> connections forwarded to it (load reports), while it is one
        self.per_task: dict[str, int] = {}
        self._changed = asyncio.Event()
        self.settled = asyncio.Event()  # listeners match the documents (tests wait on it)

    # -- the informer side (synchronous) --------------------------------------------

    def on_endpoints(self, key: str, old: Any, new: Any) -> None:
        """Informer handler: a document changed; ports are current before this returns."""
        if new is None:
            self.docs.pop(key, None)
        else:
            self.docs[key] = new
        wanted, conflicts = wanted_published(self.docs.values())
        self._report_conflicts(wanted, conflicts)
        self._refuse_udp({p.port: p.owner for p in wanted.values() if p.protocol == "udp"})
        self.wanted = {p.port: p.serving(self.node) for p in wanted.values()
                       if p.protocol == "tcp"}
        self._forget_gone_tasks()
        for number, port in list(self.ports.items()):
            fresh = self.wanted.get(number)
            if fresh is None:
                continue  # closed by run
            if port.identity == (fresh.owner, fresh.label):
                port.update(fresh)
            else:  # another owner: its own counts, the same listening socket
                port.forget()
                self.ports[number] = self._port(fresh)
                if number in self.servers:
                    self.servers[number].picker = self.ports[number]
        self.settled.clear()
        self._changed.set()

    def _port(self, published: Published) -> Port:
        return Port(published, connect_timeout=self.connect_timeout,
                    failure_memory=self.failure_memory, clock=self.clock, draw=self.draw,
                    per_task=self.per_task)

    def _forget_gone_tasks(self) -> None:
        """Counts of tasks no longer an endpoint of any port go (a churn of tasks must not
        grow them forever); one that comes back starts over."""
        if not self.per_task:
            return
        live = {b.task for p in self.wanted.values() for g in p.groups for b in g.backends}
        for task in [t for t in self.per_task if t not in live]:
            del self.per_task[task]

    async def connections_by_task(self) -> dict[str, float]:
        """Connections forwarded to each endpoint task while it is one (load reports)."""
        return {task: float(n) for task, n in self.per_task.items()}

    def _report_conflicts(self, wanted: dict[tuple[int, str], Published],
                          conflicts: list[Published]) -> None:
        known = {(p.key, p.owner) for p in self.conflicts}
        for pub in conflicts:
            if (pub.key, pub.owner) not in known:
                log.warning("mesh: port %d/%s of %s is also %s's; not routed",
                            pub.port, pub.protocol, pub.owner, wanted[pub.key].owner)
        self.conflicts = conflicts

    def _refuse_udp(self, udp: dict[int, str]) -> None:
        for number, owner in sorted(udp.items()):
            if self.refused.get(number) != owner:
                log.warning("UDP port %d of %s needs the kernel path (--mesh-mode kernel)",
                            number, owner)
        self.refused = udp
        metrics.REFUSED_PORTS.set(len(udp))

    # -- the listeners (asyncio) ------------------------------------------------------

    async def run(self) -> None:
        """Open and close listeners as the documents change; returns only when cancelled."""
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
        for number in sorted(set(self.ports) - set(self.wanted)):
            await self._close_port(number)
        for number, published in sorted(self.wanted.items()):
            if number not in self.ports:
                self.ports[number] = self._port(published)
            if number not in self.servers:
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
                log.warning("mesh: cannot listen on %s:%d for %s: %s; retrying every %.0fs",
                            self.bind_addr, number, port.published.owner, self.unbound[number],
                            self.retry_interval)
            return
        server = Listener(asyncio.get_running_loop(), sock, port)
        self.unbound.pop(number, None)
        self.servers[number] = server
        log.info("mesh: %s:%d -> %s port %s", self.bind_addr, number, port.published.owner,
                 port.published.label)

    async def _close_port(self, number: int) -> None:
        port = self.ports.pop(number, None)
        if port is not None:
            port.forget()
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
        metrics.REFUSED_PORTS.set(0)
