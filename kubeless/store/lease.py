"""A lease kept alive in the background, that says when it was lost.

aetcd leaves lease refresh to its users, so we do it: refresh every
ttl/3, and every 0.2 s after a refresh failed (so a network blip shorter
than the TTL keeps the lease); if etcd answers that the lease is gone (TTL
0), or no refresh has succeeded for a whole TTL (we must assume etcd
expired it), the lease is lost: ``lost`` is set and the keeper stops.
Whoever holds keys bound to the lease (a heartbeat, a leader key) must
then stop acting on them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .errors import LeaseLost, StoreError
from .etcd import Etcd

log = logging.getLogger(__name__)

RETRY_PAUSE = 0.2  # seconds between refresh attempts once one failed


class KeptLease:
    def __init__(self, etcd: Etcd, ttl: int, *,
                 clock: Callable[[], float] | None = None) -> None:
        if ttl < 2:
            raise ValueError("lease TTL must be at least 2 seconds")
        self.etcd = etcd
        self.ttl = ttl
        self.id = 0
        self.lost = asyncio.Event()
        self.refreshes = 0
        self._clock = clock or asyncio.get_running_loop().time
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> KeptLease:
        await self.grant()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.revoke()

    async def grant(self) -> int:
        self.id = await self.etcd.lease_grant(self.ttl)
        self.lost.clear()
        self._task = asyncio.create_task(self._keep_alive(), name=f"lease-{self.id:x}")
        return self.id

    def check(self) -> None:
        """Raise LeaseLost when the lease is no longer ours."""
        if self.lost.is_set():
            raise LeaseLost(f"lease {self.id:x} was lost")

    async def revoke(self) -> None:
        """Stop refreshing and revoke, so bound keys vanish now, not after the TTL."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.id and not self.lost.is_set():
            try:
                await asyncio.shield(self.etcd.lease_revoke(self.id))
            except StoreError as err:
                log.info("could not revoke lease %x (%s); it expires by itself", self.id, err)
        self.lost.set()

    async def abandon(self) -> None:
        """Stop refreshing without revoking (a crash, or etcd gone): it expires by itself."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.lost.set()

    async def _keep_alive(self) -> None:
        last_ok = self._clock()
        pause = self.ttl / 3
        while True:
            await asyncio.sleep(pause)
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel
                # that lands as the call completes, and revoke() would wait forever.
                async with asyncio.timeout(self.ttl / 3):
                    ttl = await self.etcd.lease_keepalive_once(self.id)
            except (StoreError, TimeoutError) as err:
                if self._clock() - last_ok >= self.ttl:
                    log.warning("lease %x lost: no refresh for %ss (%s)", self.id, self.ttl, err)
                    self.lost.set()
                    return
                # Retry soon: after a failed refresh (ttl/3 spent waiting on it), waiting
                # another ttl/3 would reach the expiry, so any blip would lose the lease.
                pause = RETRY_PAUSE
                continue
            pause = self.ttl / 3
            if ttl <= 0:
                log.warning("lease %x lost: etcd says it expired", self.id)
                self.lost.set()
                return
            last_ok = self._clock()
            self.refreshes += 1
