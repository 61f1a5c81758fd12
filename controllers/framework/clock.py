"""Time, injected: the real clocks and a fake one for tests.

Everything in the framework that waits (work-queue delays and backoff,
resync periods) asks a ``Clock`` rather than the event loop, so tests of
backoff and timing advance a ``FakeClock`` by hand and never sleep. The
controllers read wall-clock time (what task timestamps and restart delays
are written in) from the same clock's ``wall``, the runner's, handed to
them in their context: one way to inject time. Leader election is the
exception: its timing is etcd's lease TTL, which only real time can
exercise.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    def wall(self) -> float:
        """Unix seconds (``time.time``): what timestamps stored in resources hold."""
        ...

    async def sleep(self, seconds: float) -> None:
        ...


class MonotonicClock:
    """Real time: ``time.monotonic``, the scale asyncio's default loop sleeps on."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told to, waking the sleepers it passes; its wall
    time starts at ``wall`` and advances with it."""

    def __init__(self, start: float = 0.0, wall: float = 0.0) -> None:
        self._now = start
        self._wall_offset = wall - start
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    @property
    def sleepers(self) -> int:
        """How many sleeps are pending (lets a test wait until a task is parked)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut  # a cancelled sleep leaves a done future, dropped on the next advance

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def step(self, seconds: float) -> None:
        """``advance``, then let the woken tasks run until they block again."""
        self.advance(seconds)
        for _ in range(5):
            await asyncio.sleep(0)
