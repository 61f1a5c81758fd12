"""An informer: a local cache of one etcd prefix, kept current by a watch.

It lists the prefix at a revision, then watches from the next revision and
applies each event to the cache, calling handlers with (key, old, new).
When the watch stream breaks (a member died, etcd restarted) it resumes from
the last revision it saw; when that revision was compacted it lists again
and reports the difference to handlers as ordinary changes, so consumers
that reconcile from the cache converge either way.

Values are decoded by a function given by the caller (a resource decoder,
or plain YAML); a value that does not decode is kept out of the cache and
remembered in ``invalid`` with its reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .errors import Compacted, CorruptValue, StoreError
from .etcd import Etcd, KeyValue

log = logging.getLogger(__name__)

Decoder = Callable[[KeyValue], Any]
Handler = Callable[[str, Any, Any], None]  # key, old value or None, new value or None


class Informer:
    def __init__(self, etcd: Etcd, prefix: str, decode: Decoder, *,
                 page_size: int = 5000, backoff_max: float = 2.0) -> None:
        self.etcd = etcd
        self.prefix = prefix
        self._decode = decode
        self.page_size = page_size
        self.backoff_max = backoff_max
        self.cache: dict[str, Any] = {}
        self.revisions: dict[str, int] = {}  # key -> mod_revision
        self.invalid: dict[str, str] = {}
        self.revision = 0
        self.relists = 0
        self.resumes = 0
        self.synced = asyncio.Event()
        self._handlers: list[Handler] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def values(self) -> list[Any]:
        return list(self.cache.values())

    # -- the loop -----------------------------------------------------------

    async def run(self) -> None:
        """List (unless already synced), then watch forever; returns only when cancelled."""
        backoff = 0.1
        need_list = not self.synced.is_set()
        while True:
            try:
                if need_list:
                    await self.relist()
                    need_list = False
                await self._watch()
            except Compacted as err:
                log.info("informer %s: %s; listing again", self.prefix, err)
                need_list = True
                continue
            except StoreError as err:
                log.warning("informer %s: %s; resuming from revision %d", self.prefix, err,
                            self.revision)
                self.resumes += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            backoff = 0.1

    async def relist(self) -> None:
        kvs, revision = await self.etcd.list_prefix(self.prefix, page_size=self.page_size)
        seen: set[str] = set()
        for kv in kvs:
            seen.add(kv.key)
            self._put(kv)
        for key in [k for k in self.cache if k not in seen]:
            self._delete(key)
        for key in [k for k in self.invalid if k not in seen]:
            del self.invalid[key]
        self.relists += 1
        await self._advance(revision)
        self.synced.set()

    async def _watch(self) -> None:
        async for batch in self.etcd.watch(self.prefix, self.revision + 1):
            for event in batch.events:
                if event.type == "put":
                    self._put(event.kv)
                else:
                    self._delete(event.kv.key)
            await self._advance(batch.revision)

    # -- cache updates -------------------------------------------------------

    def _put(self, kv: KeyValue) -> None:
        if self.revisions.get(kv.key) == kv.mod_revision:
            return  # already seen (a relist repeats what the watch delivered)
        try:
            value = self._decode(kv)
        except CorruptValue as err:
            log.warning("skipping %s", err)
            self._delete(kv.key)
            self.invalid[kv.key] = err.reason
            return
        self.invalid.pop(kv.key, None)
        old = self.cache.get(kv.key)
        self.cache[kv.key] = value
        self.revisions[kv.key] = kv.mod_revision
        self._notify(kv.key, old, value)

    def _delete(self, key: str) -> None:
        self.invalid.pop(key, None)
        if key not in self.cache:
            return
        old = self.cache.pop(key)
        self.revisions.pop(key, None)
        self._notify(key, old, None)

    def _notify(self, key: str, old: Any, new: Any) -> None:
        for handler in self._handlers:
            try:
                handler(key, old, new)
            except Exception:  # a handler's bug must not stop the cache
                log.exception("informer handler failed for %s", key)

    async def _advance(self, revision: int) -> None:
        if revision <= self.revision:
            return
        self.revision = revision
        still = []
        for want, fut in self._waiters:
            if want <= revision:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((want, fut))
        self._waiters = still

    async def wait_for_revision(self, revision: int, timeout: float | None = None) -> None:
        """Wait until the cache reflects at least ``revision`` (read-your-writes).

        Only revisions of this prefix's own changes (or progress notices)
        arrive here: wait for revisions of writes under the prefix.
        """
        if self.revision >= revision:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        try:
            async with asyncio.timeout(timeout):  # never swallows a cancel, unlike wait_for
                await fut
        finally:
            self._waiters = [(r, f) for r, f in self._waiters if f is not fut]
