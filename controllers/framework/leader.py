"""Leader election for one controller, through a key bound to an etcd lease.

Every replica of a controller runs a ``LeaderElector`` on the same key,
``keyspace.leader(name)``. Campaigning is one transaction: if the key does
not exist (``create_revision == 0``), put our identity on it, bound to our
lease. The winner remembers the key's create_revision; ``fence()`` is the
compare ``create_revision(key) == that revision`` that every write of the
leader carries, so once the key is gone or belongs to someone else, even a
leader that has not noticed yet cannot write (fencing).

Leadership ends when our lease is lost (not refreshed for a TTL, or etcd
says it expired) or when the key is deleted or re-created (we watch it);
the elector then campaigns again. Candidates watch the key and campaign the
moment it is deleted, which etcd does when the leader's lease expires: a
successor leads within about TTL + 1 s of a leader's death, and at once
when the leader resigns (``run`` revokes the lease when it is cancelled).

What to do while leading is the caller's business: wait on ``elected``,
then on ``wait_lost()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kubeless.store import Compare, Etcd, KeptLease, Keyspace, KeyValue, Put, StoreError

from .errors import NotLeader

log = logging.getLogger(__name__)

_Changed = Callable[[KeyValue, bool], bool]  # (kv, deleted) -> does this end the wait?


class LeaderElector:
    def __init__(self, etcd: Etcd, keyspace: Keyspace, name: str, identity: str,
                 ttl: int = 5, *, retry_delay: float = 1.0) -> None:
        self.etcd = etcd
        self.name = name
        self.identity = identity
        self.ttl = ttl
        self.key = keyspace.leader(name)
        self.retry_delay = retry_delay
        # False when cancelled ``run`` should not revoke (simulate a crash in tests,
        # or leave quickly when etcd is unreachable): successors then wait for the TTL.
        self.revoke_on_exit = True
        self.elected = asyncio.Event()
        self.terms = 0  # how many times we became leader
        self._lost = asyncio.Event()
        self._lost.set()
        self._create_revision = 0
        self._lease: KeptLease | None = None

    # -- what callers use ---------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.elected.is_set()

    @property
    def lease_id(self) -> int:
        return self._lease.id if self._lease is not None else 0

    def fence(self) -> Compare:
        """The compare that makes a write succeed only while we lead."""
        if not self.is_leader:
            raise NotLeader(f"{self.identity} does not lead {self.name}")
        return Compare(self.key, "create", "==", self._create_revision)

    async def wait_lost(self) -> None:
        """Return once we do not lead (at once when we do not lead now)."""
        await self._lost.wait()

    async def current_leader(self) -> str | None:
        """The identity written on the leader key, or None when nobody leads."""
        kv, _ = await self.etcd.get(self.key)
        return kv.value.decode() if kv is not None else None

    # -- the campaign loop --------------------------------------------------

    async def run(self) -> None:
        """Campaign, lead, lose, campaign again... until cancelled (then resign)."""
        try:
            while True:
                delay = 0.0
                try:
                    await self._term()
                except StoreError as err:
                    log.warning("leader election %s: %s; retrying in %.1fs", self.name, err,
                                self.retry_delay)
                    delay = self.retry_delay
                self._step_down()
                await self._release(revoke=True)
                await asyncio.sleep(delay)
        finally:
            self._step_down()
            await self._release(revoke=self.revoke_on_exit)

    async def _release(self, *, revoke: bool) -> None:
        lease, self._lease = self._lease, None
        if lease is None:
            return
        if revoke:
            await asyncio.shield(lease.revoke())
        else:
            await lease.abandon()

    async def _term(self) -> None:
        """One lease: campaign until we win (or the lease is lost), then lead until lost."""
        lease = KeptLease(self.etcd, self.ttl)
        self._lease = lease
        await lease.grant()
        while not lease.lost.is_set():
            res = await self.etcd.txn([Compare(self.key, "create", "==", 0)],
                                      [Put(self.key, self.identity.encode(), lease.id)])
            if res.succeeded:
                await self._lead(lease, res.revision)
                return
            kv, revision = await self.etcd.get(self.key)
            if kv is not None:
                await self._race(lease, self._until_gone(kv, revision))
        log.info("leader election %s: our lease was lost while campaigning", self.name)

    async def _lead(self, lease: KeptLease, create_revision: int) -> None:
        self._create_revision = create_revision
        self.terms += 1
        self._lost.clear()
        self.elected.set()
        log.info("%s leads %s (key revision %d)", self.identity, self.name, create_revision)
        why = await self._race(lease, self._until_taken(create_revision))
        log.warning("%s lost leadership of %s: %s", self.identity, self.name, why)

    def _step_down(self) -> None:
        self.elected.clear()
        self._lost.set()

    async def _race(self, lease: KeptLease, watcher: asyncio.Task[str]) -> str:
        """Wait for the watcher or for the lease to be lost; say which happened."""
        lost = asyncio.ensure_future(lease.lost.wait())
        try:
            await asyncio.wait({watcher, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            watcher.cancel()
            await asyncio.gather(watcher, lost, return_exceptions=True)
        if watcher.done() and not watcher.cancelled():
            return watcher.result()  # re-raises the watcher's StoreError
        return "our lease was lost"

    def _until_gone(self, kv: KeyValue, revision: int) -> asyncio.Task[str]:
        async def watch() -> str:
            await self._watch_key(revision, lambda ev_kv, deleted: deleted
                                  or ev_kv.create_revision != kv.create_revision)
            return "the leader key was released"
        return asyncio.create_task(watch(), name=f"leader-watch {self.name}")

    def _until_taken(self, create_revision: int) -> asyncio.Task[str]:
        async def watch() -> str:
            await self._watch_key(create_revision, lambda ev_kv, deleted: deleted
                                  or ev_kv.create_revision != create_revision)
            return "the leader key was deleted or replaced"
        return asyncio.create_task(watch(), name=f"leader-watch {self.name}")

    async def _watch_key(self, revision: int, changed: _Changed) -> None:
        """Return when an event on our key satisfies ``changed``; resume if the stream breaks."""
        while True:
            try:
                async for batch in self.etcd.watch(self.key, revision + 1):
                    for ev in batch.events:
                        if ev.kv.key == self.key and changed(ev.kv, ev.type == "delete"):
                            return
                    revision = max(revision, batch.revision)
            except StoreError as err:  # includes Compacted: re-read the key instead
                log.info("leader watch %s: %s; reading the key again", self.name, err)
                await asyncio.sleep(0.2)
                kv, revision = await self.etcd.get(self.key)
                if kv is None:
                    return
                if changed(kv, False):
                    return

