"""The controller runner: informers, leader election and workers, in one place.

A controller plugs in by subclassing ``Controller``: it names the prefixes
it watches (``InformerSpec``), maps an informer event to queue keys
(``keys_for_event``), and reconciles one key (``reconcile``), reading the
informer caches and committing through ``ctx.applier``. The runner:

1. builds one ``Informer`` per prefix, shared by every controller of the
   process that asks for it, runs them and waits until all have synced;
2. runs one ``LeaderElector`` per controller; while it leads, a fresh
   ``WorkQueue`` is filled with every key (``resync_keys``), ``workers``
   tasks (default 1) reconcile keys from it, and a resync re-adds every
   key each ``resync_period``; informer events add keys meanwhile
   (after ``batch_period`` when the controller sets one);
3. on success forgets the key's backoff (and re-adds it after the delay
   reconcile returned, if any); on any exception (conflicts included) logs
   it with the key and re-adds it rate limited: one bad key never stops
   the loop;
4. when leadership is lost, cancels the workers and drops the queue, then
   waits to be elected again; when cancelled, the electors resign (revoke
   their leases) so another replica takes over at once.

Every long-lived task starts here, under a TaskGroup, named; a crash (a
bug, not an etcd outage: informers and electors ride those out) is logged
and escalated out of ``run``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kubeless.aio import guard
from kubeless.store import Conflict, Informer, KeyValue, NotFound, ResourceStore
from kubeless.store.codec import decode as decode_value
from kubeless.store.informer import Decoder
from kubeless.store.events import DEFAULT_TTL, EventRecorder

from . import metrics
from .applier import Applier
from .clock import Clock, MonotonicClock
from .errors import NotLeader, QueueShutDown
from .leader import LeaderElector
from .workqueue import WorkQueue

log = logging.getLogger(__name__)


# -- what a controller declares ---------------------------------------------------

def plain_decode(kv: KeyValue) -> Any:
    """A value as plain YAML/JSON data (status keys, agent reports, heartbeats)."""
    return decode_value(kv.key, kv.value)


@dataclass(frozen=True)
class ResourceDecoder:
    """Decodes a kind's resources; equal for equal (store, kind), so informers are shared."""

    store: ResourceStore
    kind: str

    def __call__(self, kv: KeyValue) -> Any:
        return self.store.decode(self.kind, kv)


@dataclass(frozen=True)
class InformerSpec:
    """A prefix to cache and how to decode its values."""

    prefix: str
    decode: Decoder = plain_decode

    @classmethod
    def resources(cls, store: ResourceStore, kind: str) -> InformerSpec:
        """Every resource of ``kind`` (all namespaces), decoded as resources."""
        return cls(store.keys.kind_prefix(kind), ResourceDecoder(store, kind))


@dataclass
class ControllerStats:
    """Plain counters of one controller (the same numbers go to prometheus)."""

    reconciles: int = 0
    errors: int = 0
    conflicts: int = 0
    duration_sum: float = 0.0
    is_leader: bool = False
    terms: int = 0


@dataclass
class ControllerContext:
    """What the runner gives a controller: caches, the fenced applier, the clock."""

    name: str
    store: ResourceStore
    informers: dict[str, Informer]  # by prefix, those the controller asked for
    elector: LeaderElector
    applier: Applier
    clock: Clock
    stats: ControllerStats
    events: EventRecorder  # what it did and why, under its leader fence (best effort)

    def cache(self, prefix: str) -> dict[str, Any]:
        return self.informers[prefix].cache


class Controller(ABC):
    """Subclass and set ``name``; the runner calls ``setup`` before anything else."""

    name: str = ""
    workers: int = 1
    resync_period: float = 30.0
    # Seconds an event-triggered key waits before it is handed out, so a burst of
    # events about one key (500 tasks of a service changing) is one reconcile, as
    # Kubernetes' Job and EndpointSlice controllers batch pod updates. 0: at once.
    batch_period: float = 0.0
    ctx: ControllerContext

    @abstractmethod
    def informers(self) -> Sequence[InformerSpec]:
        """The prefixes this controller reads."""

    @abstractmethod
    def keys_for_event(self, key: str, old: Any, new: Any) -> Iterable[Hashable]:
        """The queue keys to reconcile when ``key`` changed (old/new: None when absent)."""

    @abstractmethod
    async def reconcile(self, key: Hashable) -> float | None:
        """Make ``key`` right; return seconds after which to look again, or None."""

    def setup(self, ctx: ControllerContext) -> None:
        self.ctx = ctx

    def resync_keys(self) -> Iterable[Hashable]:
        """Every key, for the first pass and periodic resyncs: by default, every
        cached value of our informers mapped through ``keys_for_event``."""
        for informer in self.ctx.informers.values():
            for key, value in list(informer.cache.items()):
                yield from self.keys_for_event(key, None, value)


# -- the runner --------------------------------------------------------------------

@dataclass
class _State:
    controller: Controller
    ctx: ControllerContext
    queue: WorkQueue[Hashable] | None = None  # while leading


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ControllerRunner:
    def __init__(self, store: ResourceStore, controllers: Sequence[Controller],
                 identity: str | None = None, *, lease_ttl: int = 5,
                 clock: Clock | None = None, backoff_base: float = 0.05,
                 backoff_max: float = 30.0, events_ttl: int = DEFAULT_TTL) -> None:
        self.store = store
        self.events_ttl = events_ttl
        self.identity = identity or default_identity()
        self.clock: Clock = clock or MonotonicClock()
        self.backoff = (backoff_base, backoff_max)
        self.informers: dict[str, Informer] = {}
        self.synced = asyncio.Event()
        self.states: dict[str, _State] = {}
        specs: dict[str, InformerSpec] = {}
        for c in controllers:
            if not c.name or c.name in self.states:
                raise ValueError(f"controller name {c.name!r} is empty or used twice")
            mine = {}
            for spec in c.informers():
                if specs.setdefault(spec.prefix, spec) != spec:
                    raise ValueError(f"{c.name}: prefix {spec.prefix} is already watched "
                                     "with another decoder")
                if spec.prefix not in self.informers:
                    self.informers[spec.prefix] = Informer(store.etcd, spec.prefix, spec.decode)
                mine[spec.prefix] = self.informers[spec.prefix]
            self.states[c.name] = self._bind(c, mine, lease_ttl)

    def _bind(self, c: Controller, informers: dict[str, Informer], ttl: int) -> _State:
        elector = LeaderElector(self.store.etcd, self.store.keys, c.name, self.identity, ttl)
        events = EventRecorder(self.store.etcd, self.store.keys.events_prefix(),
                               component=c.name, host=self.identity, fence=elector.fence,
                               ttl=self.events_ttl)
        ctx = ControllerContext(c.name, self.store, informers, elector,
                                Applier(self.store, elector), self.clock, ControllerStats(),
                                events)
        c.setup(ctx)
        state = _State(c, ctx)

        def on_event(key: str, old: Any, new: Any) -> None:
            self._on_event(state, key, old, new)

        def depth() -> float:
            return float(state.queue.depth) if state.queue is not None else 0.0

        for informer in informers.values():
            informer.add_handler(on_event)
        metrics.WORKQUEUE_DEPTH.labels(c.name).set_function(depth)
        metrics.IS_LEADER.labels(c.name).set(0)
        return state

    def stats(self, name: str) -> ControllerStats:
        return self.states[name].ctx.stats

    def elector(self, name: str) -> LeaderElector:
        return self.states[name].ctx.elector

    # -- long-lived tasks ----------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled (then resign every leadership) or until a task crashes."""
        async with asyncio.TaskGroup() as tg:
            for prefix, informer in self.informers.items():
                name = f"informer {prefix}"
                tg.create_task(guard(name, informer.run(), log), name=name)
            await asyncio.gather(*(i.synced.wait() for i in self.informers.values()))
            self.synced.set()
            log.info("%s: %d informers synced; campaigning for %s", self.identity,
                     len(self.informers), ", ".join(self.states))
            for name, state in self.states.items():
                task_name = f"controller {name}"
                tg.create_task(guard(task_name, self._run_controller(state), log), name=task_name)
                tg.create_task(guard(f"{name} events", state.ctx.events.run(), log),
                               name=f"{name} events")

    async def _run_controller(self, st: _State) -> None:
        elector = st.ctx.elector
        async with asyncio.TaskGroup() as tg:
            name = f"{st.ctx.name} leader election"
            tg.create_task(guard(name, elector.run(), log), name=name)
            while True:
                await elector.elected.wait()
                await self._lead(st)

    async def _lead(self, st: _State) -> None:
        c, ctx = st.controller, st.ctx
        queue: WorkQueue[Hashable] = WorkQueue(self.clock, backoff_base=self.backoff[0],
                                               backoff_max=self.backoff[1])
        st.queue = queue
        ctx.stats.is_leader, ctx.stats.terms = True, ctx.stats.terms + 1
        metrics.IS_LEADER.labels(ctx.name).set(1)
        try:
            for key in c.resync_keys():
                queue.add(key)
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(guard(f"{ctx.name} worker {i}", self._worker(st, queue),
                                              log), name=f"{ctx.name} worker {i}")
                         for i in range(max(1, c.workers))]
                tasks.append(tg.create_task(guard(f"{ctx.name} resync", self._resync(st, queue),
                                                  log), name=f"{ctx.name} resync"))
                await ctx.elector.wait_lost()
                log.info("%s: not leader any more; stopping workers", ctx.name)
                queue.shutdown()
                for task in tasks:
                    task.cancel()
        finally:
            queue.shutdown()
            st.queue = None
            ctx.stats.is_leader = False
            metrics.IS_LEADER.labels(ctx.name).set(0)

    def _on_event(self, st: _State, key: str, old: Any, new: Any) -> None:
        queue = st.queue
        if queue is None:
            return  # not leading: the first pass after election covers everything
        period = st.controller.batch_period
        for qkey in st.controller.keys_for_event(key, old, new):
            if period > 0:
                queue.add_batched(qkey, period)
            else:
                queue.add(qkey)

    async def _resync(self, st: _State, queue: WorkQueue[Hashable]) -> None:
        while True:
            await self.clock.sleep(st.controller.resync_period)
            for key in st.controller.resync_keys():
                queue.add(key)

    async def _worker(self, st: _State, queue: WorkQueue[Hashable]) -> None:
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            try:
                await self._reconcile_one(st, queue, key)
            finally:
                queue.done(key)

    async def _reconcile_one(self, st: _State, queue: WorkQueue[Hashable],
                             key: Hashable) -> None:
        name, stats = st.ctx.name, st.ctx.stats
        start = self.clock.now()
        try:
            again = await st.controller.reconcile(key)
        except (Conflict, NotFound) as err:
            stats.conflicts += 1
            self._failed(st, queue, key)
            log.info("%s: %r conflicted (%s); retrying with backoff", name, key, err)
        except NotLeader as err:
            self._failed(st, queue, key)
            log.info("%s: %r: %s", name, key, err)
        except Exception:
            self._failed(st, queue, key)
            log.exception("%s: reconciling %r failed; retrying with backoff", name, key)
        else:
            queue.forget(key)
            if again is not None:
                queue.add_after(key, again)
        finally:
            took = max(0.0, self.clock.now() - start)
            stats.reconciles += 1
            stats.duration_sum += took
            metrics.RECONCILE_TOTAL.labels(name).inc()
            metrics.RECONCILE_DURATION.labels(name).observe(took)

    def _failed(self, st: _State, queue: WorkQueue[Hashable], key: Hashable) -> None:
        st.ctx.stats.errors += 1
        metrics.RECONCILE_ERRORS.labels(st.ctx.name).inc()
        queue.add_rate_limited(key)
