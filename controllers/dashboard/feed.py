"""The dashboard's live feed: the process's ClusterView and the Events, as snapshots.

``DashboardFeed`` reads what the controllers process already caches (its one
``ClusterView``: services, statuses, tasks, nodes, heartbeats), the controllers'
Events (``events/<ns>/<id>``, docs/MODEL.md "Events"), which it caches with an
informer of its own, and the agents' Events (``agents/<node>/events/<ns>/<id>``):
the view keeps only a marker of each, so the feed reads the value of each one
the view saw change (a few keys at a time, in one transaction). Any change marks the feed dirty; one loop
turns that into at most ``1 / min_interval`` snapshots a second (the page
model, ``controllers.dashboard.model``), and hands each snapshot that differs
from the last to every subscriber (an ``/events`` stream). A slow subscriber
gets the latest snapshot, never a backlog: its queue holds one. While nobody
watches, no snapshot is built (the controllers' busiest moments are no time to
draw pages for no one): the changes wait for the first subscriber, and
``/api/snapshot`` builds its answer when asked (``fresh``).

It only reads: every replica of the controllers may run one, leader or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubeless.aio import guard
from kubeless.store import CorruptValue, Informer, StoreError

from controllers.dashboard.model import snapshot
from controllers.framework.runner import plain_decode
from controllers.view import ClusterView

log = logging.getLogger(__name__)

class DashboardFeed:
    def __init__(self, view: ClusterView, *, min_interval: float = 0.5,
                 clock: Callable[[], float] = time.time) -> None:
        self.view = view
        self.min_interval = min_interval
        self.clock = clock
        self.events = Informer(view.store.etcd, view.store.keys.events_prefix(), plain_decode)
        self.latest: bytes | None = None  # the last snapshot, as JSON
        self._dirty = asyncio.Event()
        self._watched = asyncio.Event()  # set while at least one stream subscribes
        self._subscribers: set[asyncio.Queue[bytes]] = set()
        # The agents' Events by key: the view caches only a marker of each, so their
        # values are read here, once per change the view reports (``_read_agent_events``).
        self._agent_events: dict[str, Any] = {}
        self._agent_events_changed: set[str] = set()
        view.on_change(self._changed)
        self.events.add_handler(lambda key, old, new: self._dirty.set())

    def _changed(self, key: str) -> None:
        if self.view.store.keys.is_agent_event(key):
            self._agent_events_changed.add(key)
        self._dirty.set()

    def agent_events(self) -> list[Any]:
        return list(self._agent_events.values())

    async def _read_agent_events(self) -> None:
        """Read the agents' Events the view saw change (dropping those it saw go)."""
        changed, self._agent_events_changed = self._agent_events_changed, set()
        cached = self.view.caches.get(self.view.agents_prefix, {})
        for key in [k for k in changed if k not in cached]:
            self._agent_events.pop(key, None)
        present = sorted(k for k in changed if k in cached)
        for start in range(0, len(present), 64):  # etcd's transactions take 128 ops at most
            try:
                found, _ = await self.view.store.etcd.get_many(present[start:start + 64])
            except StoreError:
                self._agent_events_changed |= set(present[start:])  # read them next time
                raise
            for key in present[start:start + 64]:
                kv = found.get(key)
                try:
                    value = plain_decode(kv) if kv is not None else None
                except CorruptValue:
                    value = None  # not an Event: not shown
                if isinstance(value, dict):
                    self._agent_events[key] = value
                else:
                    self._agent_events.pop(key, None)

    def document(self) -> dict[str, Any]:
        """The page model of the cluster as cached now."""
        view = self.view
        services = [view.service(*key) or s for s in view.services()
                    if (key := _key_of(s)) is not None]
        return snapshot(view.nodes(), services, view.all_tasks(),
                        [*self.events.values(), *self.agent_events()], self.clock())

    async def run(self) -> None:
        """Cache the Events and publish snapshots until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(guard("dashboard events informer", self.events.run(), log),
                           name="dashboard events informer")
            await self._synced()
            while True:
                await self._dirty.wait()
                await self._watched.wait()  # nobody watching: the change waits, still dirty
                self._dirty.clear()
                try:
                    await self.fresh()
                except Exception:  # etcd away, or a bug: never a reason to stop the controllers
                    log.exception("dashboard: the snapshot failed; the page keeps the last one")
                    self._dirty.set()  # try again after the throttle
                await asyncio.sleep(self.min_interval)  # the throttle: changes meanwhile wait

    @property
    def synced(self) -> bool:
        """Whether every cache it reads has its first listing (a snapshot is whole)."""
        return all(i.synced.is_set() for i in [*self.view.informers.values(), self.events])

    async def _synced(self) -> None:
        informers = [*self.view.informers.values(), self.events]
        await asyncio.gather(*(i.synced.wait() for i in informers))
        keys = self.view.store.keys
        self._agent_events_changed |= {k for k in self.view.caches.get(self.view.agents_prefix, {})
                                       if keys.is_agent_event(k)}
        self._dirty.set()

    async def fresh(self) -> bytes:
        """A snapshot of the cluster as cached now, handed to the subscribers too."""
        await self._read_agent_events()
        data = json.dumps(self.document(), separators=(",", ":")).encode()
        self._publish(data)
        return data

    def _publish(self, data: bytes) -> None:
        if data == self.latest:
            return
        self.latest = data
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()  # the older snapshot is stale: only the latest matters
            queue.put_nowait(data)

    @contextlib.contextmanager
    def subscription(self) -> Iterator[asyncio.Queue[bytes]]:
        """A queue that holds the latest snapshot (once there is one), then each new one
        (a newer one replaces one not yet taken), while the block runs."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
        if self.latest is not None and not self._dirty.is_set():  # else a fresh one comes
            queue.put_nowait(self.latest)
        self._subscribers.add(queue)
        self._watched.set()
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
            if not self._subscribers:
                self._watched.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


def _key_of(service: dict[str, Any]) -> tuple[str, str] | None:
    meta = service.get("metadata") or {}
    name = meta.get("name")
    return (str(meta.get("namespace") or "default"), str(name)) if name else None
