"""The dashboard's live feed: the process's ClusterView and the Events, as snapshots.

``DashboardFeed`` reads what the controllers process already caches (its one
``ClusterView``: services, statuses, tasks, nodes, heartbeats, and under
``agents/`` the agents' own Events, ``agents/<node>/events/<id>``) plus the
controllers' Events (``events/<ns>/<id>``, docs/MODEL.md "Events"), which it
caches with an informer of its own. Any change marks the feed dirty; one loop
turns that into at most ``1 / min_interval`` snapshots a second (the page
model, ``controllers.dashboard.model``), and hands each snapshot that differs
from the last to every subscriber (an ``/events`` stream). A slow subscriber
gets the latest snapshot, never a backlog: its queue holds one.

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
from kubeless.store import Informer, Keyspace

from controllers.dashboard.model import snapshot
from controllers.framework.runner import plain_decode
from controllers.view import ClusterView

log = logging.getLogger(__name__)

EVENTS_SEGMENT = "events"  # events/<ns>/<id> and agents/<node>/events/<id>


def events_prefix(keys: Keyspace) -> str:
    """The controllers' Events (every namespace; a Node's under ``events/_cluster/``)."""
    return f"{keys.root}{EVENTS_SEGMENT}/"


class DashboardFeed:
    def __init__(self, view: ClusterView, *, min_interval: float = 0.5,
                 clock: Callable[[], float] = time.time) -> None:
        self.view = view
        self.min_interval = min_interval
        self.clock = clock
        self.events = Informer(view.store.etcd, events_prefix(view.store.keys), plain_decode)
        self.latest: bytes | None = None  # the last snapshot, as JSON
        self._dirty = asyncio.Event()
        self._subscribers: set[asyncio.Queue[bytes]] = set()
        view.on_change(self._dirty.set)
        self.events.add_handler(lambda key, old, new: self._dirty.set())

    def agent_events(self) -> list[Any]:
        """The agents' Events, from the view's ``agents/`` cache."""
        keys = self.view.store.keys
        cache = self.view.caches.get(self.view.agents_prefix, {})
        return [value for key, value in list(cache.items())
                if isinstance(value, dict) and (parsed := keys.parse_agent(key)) is not None
                and parsed.sort == EVENTS_SEGMENT]

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
                self._dirty.clear()
                self._publish(json.dumps(self.document(), separators=(",", ":")).encode())
                await asyncio.sleep(self.min_interval)  # the throttle: changes meanwhile wait

    async def _synced(self) -> None:
        informers = [*self.view.informers.values(), self.events]
        await asyncio.gather(*(i.synced.wait() for i in informers))
        self._dirty.set()

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
        if self.latest is not None:
            queue.put_nowait(self.latest)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


def _key_of(service: dict[str, Any]) -> tuple[str, str] | None:
    meta = service.get("metadata") or {}
    name = meta.get("name")
    return (str(meta.get("namespace") or "default"), str(name)) if name else None
