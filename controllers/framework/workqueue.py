"""A de-duplicating, per-key rate-limited work queue (controller-runtime's).

Guarantees, as client-go's workqueue gives them:
- a key waiting in the queue is there once: adding it again is a no-op;
- a key handed to a worker is not handed to another until ``done(key)``;
- a key added while it is being processed is queued again at ``done``;
- ``add_after`` delays a key (the earliest pending delay wins);
  ``add_batched`` too, unless the key is already waiting (event batching);
  ``add_rate_limited`` delays it by its own exponential backoff, which
  ``forget`` resets (call it after a successful reconcile);
- ``shutdown`` wakes every waiting ``get``, which raises ``QueueShutDown``;
  the queue then accepts nothing and hands out nothing.

Time comes from an injected ``Clock``. Delayed keys become ready lazily,
when a getter wakes (it sleeps until the earliest delay) or the depth is
read, so the queue needs no task of its own. It only holds keys; what a
key means is the controller's business.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from .clock import Clock, MonotonicClock
from .errors import QueueShutDown

K = TypeVar("K", bound=Hashable)


class ExponentialBackoff(Generic[K]):
    """Per-key delay: ``base * 2**failures``, capped at ``maximum``."""

    def __init__(self, base: float = 0.05, maximum: float = 30.0) -> None:
        self.base = base
        self.maximum = maximum
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        """The delay for this failure of ``key``; counts it."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        if n >= 64:  # 2**n would overflow long before; we are at the cap anyway
            return self.maximum
        return min(self.base * 2.0 ** n, self.maximum)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)


class WorkQueue(Generic[K]):
    def __init__(self, clock: Clock | None = None, *, backoff_base: float = 0.05,
                 backoff_max: float = 30.0) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self.backoff: ExponentialBackoff[K] = ExponentialBackoff(backoff_base, backoff_max)
        self._queue: deque[K] = deque()      # ready, in order
        self._dirty: set[K] = set()          # needs processing (queued, or re-queue at done)
        self._processing: set[K] = set()     # handed to a worker
        self._delayed: list[tuple[float, int, K]] = []  # heap of (ready at, seq, key)
        self._ready_at: dict[K, float] = {}  # key -> its current (earliest) delay
        self._seq = itertools.count()
        self._waiters: set[asyncio.Future[None]] = set()
        self._shut_down = False
        self.adds = 0  # keys accepted into the queue (not dropped as duplicates)

    # -- adding ----------------------------------------------------------------

    def add(self, key: K) -> None:
        if self._shut_down or key in self._dirty:
            return
        self._dirty.add(key)
        self.adds += 1
        if key in self._processing:
            return  # ``done`` puts it back
        self._queue.append(key)
        self._wake()

    def add_after(self, key: K, delay: float) -> None:
        if self._shut_down:
            return
        if delay <= 0:
            self.add(key)
            return
        at = self.clock.now() + delay
        current = self._ready_at.get(key)
        if current is not None and current <= at:
            return
        self._ready_at[key] = at
        heapq.heappush(self._delayed, (at, next(self._seq), key))
        self._wake()  # getters recompute how long to sleep

    def add_batched(self, key: K, period: float) -> None:
        """Add ``key`` after ``period`` unless it is already waiting (ready, or due to be
        re-queued at ``done``): a burst of adds within a period is one hand-out."""
        if key in self._dirty:
            return
        self.add_after(key, period)

    def add_rate_limited(self, key: K) -> None:
        self.add_after(key, self.backoff.when(key))

    def forget(self, key: K) -> None:
        self.backoff.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.backoff.failures(key)

    # -- taking ----------------------------------------------------------------

    async def get(self) -> K:
        """The next ready key (waiting for one); raises QueueShutDown once shut down."""
        while True:
            if self._shut_down:
                raise QueueShutDown("work queue is shut down")
            self._promote_due()
            if self._queue:
                key = self._queue.popleft()
                self._dirty.discard(key)
                self._processing.add(key)
                return key
            await self._wait()

    def done(self, key: K) -> None:
        """The worker finished ``key``; if it was added meanwhile, queue it again."""
        self._processing.discard(key)
        if key in self._dirty and not self._shut_down:
            self._queue.append(key)
            self._wake()

    def shutdown(self) -> None:
        self._shut_down = True
        self._queue.clear()
        self._dirty.clear()
        self._delayed.clear()
        self._ready_at.clear()
        self._wake()

    @property
    def shutting_down(self) -> bool:
        return self._shut_down

    # -- metrics ---------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Keys ready to be handed out. A pure read, safe for a metrics thread: a
        delayed key counts once due and promoted (by ``get`` or ``len()``)."""
        return len(self._queue)

    @property
    def waiting(self) -> int:
        """Keys delayed (backoff or add_after), not yet ready."""
        return len(self._ready_at)

    @property
    def processing(self) -> int:
        return len(self._processing)

    def len(self) -> int:
        """Keys ready now, due delayed keys included."""
        self._promote_due()
        return len(self._queue)

    def __len__(self) -> int:
        return self.len()

    # -- internals -------------------------------------------------------------

    def _promote_due(self) -> None:
        now = self.clock.now()
        while self._delayed and self._delayed[0][0] <= now:
            at, _, key = heapq.heappop(self._delayed)
            if self._ready_at.get(key) != at:
                continue  # superseded by an earlier delay for the same key
            del self._ready_at[key]
            self.add(key)

    def _next_delay(self) -> float | None:
        while self._delayed and self._ready_at.get(self._delayed[0][2]) != self._delayed[0][0]:
            heapq.heappop(self._delayed)  # stale entry
        if not self._delayed:
            return None
        return max(0.0, self._delayed[0][0] - self.clock.now())

    def _wake(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    async def _wait(self) -> None:
        """Until something changes, or the earliest delayed key is due."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        delay = self._next_delay()
        if delay is None:
            try:
                await fut
            finally:
                self._waiters.discard(fut)
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        try:
            await asyncio.wait({fut, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            self._waiters.discard(fut)
