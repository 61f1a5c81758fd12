"""Writing Events: best effort, never in the way of the work they describe.

``EventRecorder.record`` only queues (it never blocks nor raises); one
background task (``run``) writes. Repeats of one Event waiting in the queue
are merged first, then each Event is one transaction comparing the
mod_revision last seen of its key (create when absent), plus the recording
controller's leader fence when it has one: a deposed leader records nothing.
A lost race re-reads the key and merges once more; an Event still unwritten
after a few tries, or beyond the queue's bound, is dropped and counted
(``dropped``), and logged once in a while: history must never cost the
cluster.

Time to live (default 1 h, as Kubernetes'): Events are put with a shared
lease, granted for the TTL and replaced by a fresh one every tenth of it,
never kept alive, so an Event goes between TTL and 1.1 x TTL after its last
occurrence, with one lease grant per tenth of the TTL whatever the rate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from kubeless.api.events import Event, new_event, repeated
from kubeless.store.etcd import Compare, Etcd, Put
from kubeless.store.errors import StoreError
from kubeless.store.keys import Keyspace
from kubeless.store.resources import now_rfc3339

log = logging.getLogger(__name__)

DEFAULT_TTL = 3600
QUEUE_BOUND = 1000  # distinct Events waiting: beyond it, new ones are dropped
ATTEMPTS = 3
_SEEN_BOUND = 4096  # keys whose last written (revision, Event) is remembered


class EventRecorder:
    """Queues Events of one component (a controller, a node's agent) and writes them.

    ``root`` is where its Events go: ``keys.events_prefix()`` for controllers,
    ``keys.agent_events_prefix(node)`` for an agent. ``fence`` gives the
    Compare that must hold for the write (a controller's leader key), or None; when
    it raises (no longer leading), the Event is dropped.
    """

    def __init__(self, etcd: Etcd, root: str, *, component: str, host: str = "",
                 ttl: int = DEFAULT_TTL, fence: Callable[[], Compare | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.etcd = etcd
        self.root = root
        self.component = component
        self.host = host
        self.ttl = int(ttl)  # 0: record nothing (``--events-ttl 0``)
        self.fence = fence
        self.dropped = 0
        self.written = 0
        self._pending: OrderedDict[str, Event] = OrderedDict()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._seen: OrderedDict[str, tuple[int, Event]] = OrderedDict()
        self._lease = 0
        self._lease_granted = float("-inf")
        self._clock = clock

    def record(self, *, kind: str, name: str, reason: str, message: str,
               namespace: str = "", type_: str = "Normal", service: str | None = None) -> None:
        """Queue one occurrence; returns at once."""
        if self.ttl <= 0:
            return
        event = new_event(kind=kind, name=name, namespace=namespace, type_=type_,
                          reason=reason, message=message, component=self.component,
                          host=self.host, service=service, timestamp=now_rfc3339())
        key = self._key(event)
        waiting = self._pending.get(key)
        if waiting is not None:
            self._pending[key] = repeated(waiting, event)
        elif len(self._pending) >= QUEUE_BOUND:
            self._drop(1, "the queue is full")
            return
        else:
            self._pending[key] = event
        self._idle.clear()
        self._wake.set()

    def warning(self, **fields: Any) -> None:
        self.record(type_="Warning", **fields)

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued Event was written or dropped (tests, a graceful stop)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def run(self) -> None:
        """Write queued Events until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                key, event = self._pending.popitem(last=False)
                await self._write(key, event)
            self._idle.set()

    # -- writing ------------------------------------------------------------

    def _key(self, event: Event) -> str:
        meta = event["metadata"]
        return f"{self.root}{meta['namespace']}/{meta['name']}"

    async def _write(self, key: str, event: Event) -> None:
        try:
            for _ in range(ATTEMPTS):
                if await self._attempt(key, event):
                    self.written += 1
                    return
            self._drop(int(event.get("count") or 1), "it kept racing another writer")
        except StoreError as err:
            self._drop(int(event.get("count") or 1), str(err).splitlines()[0])
        except Exception as err:  # the fence says we lead no more: history is best effort
            self._drop(int(event.get("count") or 1), f"{type(err).__name__}: {err}")

    async def _attempt(self, key: str, event: Event) -> bool:
        seen = self._seen.get(key)
        if seen is None:
            kv, _ = await self.etcd.get(key)
            seen = (kv.mod_revision, json.loads(kv.value)) if kv is not None else (0, {})
        revision, stored = seen
        merged = repeated(stored, event) if stored else event
        compares = [Compare(key, "mod", "==", revision)]
        fence = self.fence() if self.fence is not None else None
        if fence is not None:
            compares.append(fence)
        body = json.dumps(merged, separators=(",", ":")).encode()
        result = await self.etcd.txn(compares, [Put(key, body, lease=await self._current_lease())])
        self._seen.pop(key, None)
        if not result.succeeded:
            return False
        self._seen[key] = (result.revision, merged)
        if len(self._seen) > _SEEN_BOUND:
            self._seen.popitem(last=False)
        return True

    async def _current_lease(self) -> int:
        """The shared lease, replaced every tenth of the TTL (never kept alive)."""
        now = self._clock()
        if now - self._lease_granted >= self.ttl / 10:
            self._lease = await self.etcd.lease_grant(max(self.ttl, 2))
            self._lease_granted = now
        return self._lease

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        if self.dropped == count or self.dropped % 100 < count:  # the first, then 1 in ~100
            log.warning("events: dropped %d so far (%s)", self.dropped, why)


def ttl_seconds(text: str) -> int:
    """``--events-ttl``: a duration (``1h``, ``90m``) or seconds; 0 records none; else at
    least 2 s (etcd's shortest lease). ValueError with one line otherwise."""
    from kubeless.api.units import parse_seconds

    value = parse_seconds(text, "--events-ttl")
    if value != 0 and not 2 <= value <= 30 * 86400:
        raise ValueError(f"--events-ttl {text!r}: expected 0 (none) or 2s to 30 days")
    return int(value)


# -- reading ------------------------------------------------------------------

async def list_events(etcd: Etcd, keys: Keyspace, nodes: list[str]) -> tuple[list[Event], int]:
    """Every Event: the controllers' and those of each of ``nodes``' agents, at one revision.

    Agents' Events are read node by node (their prefixes sit among the much busier
    reports and assignments); the revision is the controllers' listing's.
    """
    kvs, revision = await etcd.list_prefix(keys.events_prefix())
    found = list(kvs)
    for node in nodes:
        more, _ = await etcd.list_prefix(keys.agent_events_prefix(node), revision=revision)
        found.extend(more)
    return [event for kv in found if (event := decode_event(kv.value)) is not None], revision


def decode_event(raw: bytes) -> Event | None:
    """An Event from its stored JSON; None for anything that is not one (skipped by readers)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value.get("kind") == "Event" else None
