"""Heartbeats: one kept lease per process, each local node's heartbeat bound to it.

A node is ready while ``heartbeats/<id>`` exists. The key is put in a
transaction that compares the key is absent (create_revision 0) or already
bound to our lease, so two agents claiming one node id never take turns:
the second waits while the first is live, and takes the key over (one
transaction comparing what it read, so the key never disappears and the
node stays ready across an agent restart) when

- the holder stopped on purpose: a graceful stop (SIGTERM, SIGINT;
  ``release``) stops the keepalives and puts every heartbeat again, on the
  same lease, with ``stoppedAt``. The lease is NOT revoked: the node stays
  ready for the rest of the TTL, and an agent started again within it takes
  the node over at once. If none comes, the lease expires and the node
  goes down as after a crash;
- or the holder's lease missed a refresh (it died, or cannot reach etcd).

Leaving on purpose (``kubeless node leave``) revokes the lease instead
(``close``): every heartbeat of the process disappears at once.

Someone deleting a heartbeat while our lease lives (``node leave --force`` of a
node it thought dead, an operator) gets it put again: the agent watches its own
heartbeat keys (``watch_prefix``) and hands each event to ``on_event``.

When the lease is lost (etcd unreachable for a whole TTL, or the lease
revoked), every heartbeat is gone or about to go: the loop grants a new
lease as soon as etcd answers and puts every heartbeat again, so the node
comes back. Our own previous lease is revoked first, in case etcd had kept
it while we could not reach it.

Hollow nodes of one process share the one lease: 1,000 nodes cost one
keepalive every ttl/3, and killing the process takes them all down at once,
which is what a scale test wants.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from kubeless.store import Compare, Etcd, Forbidden, KeptLease, Keyspace, Put, StoreError
from kubeless.store.codec import encode_json
from kubeless.store.resources import now_rfc3339

from kubeless_agent import metrics
from kubeless_agent.identity import NodeIdentity

log = logging.getLogger(__name__)

BATCH = 100  # ops per transaction (etcd's default limit is 128)
REFUSED_MAX_WAIT = 60.0  # seconds between puts a permission refusal slows down to (_hold)


class Heartbeats:
    """Keeps every local node's heartbeat key alive on one shared lease."""

    def __init__(self, etcd: Etcd, keys: Keyspace, idents: Sequence[NodeIdentity], ttl: int, *,
                 retry_interval: float = 1.0) -> None:
        self.etcd = etcd
        self.keys = keys
        self.ttl = ttl
        self.retry_interval = retry_interval
        self.started_at = now_rfc3339()
        self._values = {self.keys.heartbeat(i.node_id): encode_json(i.heartbeat(self.started_at))
                        for i in idents}
        self._pending: set[str] = set(self._values)
        self._nudged = asyncio.Event()
        self.lease: KeptLease | None = None
        self.live = asyncio.Event()  # every heartbeat is in etcd on the current lease
        self.losses = 0

    @property
    def lease_id(self) -> int:
        return self.lease.id if self.lease is not None else 0

    def on_event(self, key: str, old: Any, new: Any) -> None:
        """An informer handler on ``watch_prefix``: put a local heartbeat deleted while
        our lease lives again (other nodes' keys sharing the prefix are ignored)."""
        node_id = self.keys.parse_heartbeat(key)
        if new is None and node_id is not None:
            self.nudge(node_id)

    def nudge(self, node_id: str) -> None:
        """Put this node's heartbeat again (someone deleted it while our lease lives)."""
        key = self.keys.heartbeat(node_id)
        if key in self._values:
            self._pending.add(key)
            self._nudged.set()

    def update(self, node_id: str, fields: dict[str, Any]) -> None:
        """Merge ``fields`` into this node's heartbeat and put it again (runtime state, logs port)."""
        key = self.keys.heartbeat(node_id)
        if key in self._values:
            self._values[key] = encode_json({**json.loads(self._values[key]), **fields})
            self.nudge(node_id)

    async def run(self) -> None:
        """Grant, put, keep; on loss grant again. Returns only when cancelled."""
        previous = 0
        while True:
            lease = await self._grant()
            if previous:
                await self._revoke_quietly(previous)
            self._pending = set(self._values)
            await self._hold(lease)
            previous = lease.id
            self.live.clear()
            self.losses += 1
            metrics.LEASE_LOSSES.inc()
            log.warning("heartbeat lease %x lost; granting a new one", lease.id)

    async def close(self) -> None:
        """Revoke the lease: every heartbeat of this process disappears at once (leaving)."""
        self.live.clear()
        if self.lease is not None:
            await self.lease.revoke()

    async def release(self, timeout: float = 2.0) -> None:
        """A graceful stop: mark every heartbeat stopped, on the same lease, and stop the
        keepalives without revoking. The node stays ready until the lease expires (a TTL),
        and an agent started again meanwhile takes its heartbeat over at once."""
        self.live.clear()
        lease = self.lease
        if lease is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._mark_stopped(lease.id)
        except (StoreError, TimeoutError) as err:  # it expires anyway; takeover waits a refresh
            log.warning("marking the heartbeats stopped: %s", err)
        else:
            log.info("heartbeat lease %x left to its TTL (%ds): an agent started again within "
                     "it takes the node over and adopts every task", lease.id, self.ttl)
        await lease.abandon()

    async def _mark_stopped(self, lease_id: int) -> None:
        """Put every heartbeat again with ``stoppedAt``, each compared to be on our lease
        (a key another agent took over is left alone)."""
        at = now_rfc3339()
        keys = sorted(self._values)
        for start in range(0, len(keys), BATCH):
            chunk = keys[start:start + BATCH]
            puts = {k: Put(k, stopped_value(self._values[k], at), lease_id) for k in chunk}
            if (await self.etcd.txn([Compare(k, "lease", "==", lease_id) for k in chunk],
                                    list(puts.values()))).succeeded:
                continue
            for key, put in puts.items():
                await self.etcd.txn([Compare(key, "lease", "==", lease_id)], [put])

    # -- the steps ------------------------------------------------------------

    async def _grant(self) -> KeptLease:
        delay = 0.1
        while True:
            lease = KeptLease(self.etcd, self.ttl)
            try:
                await lease.grant()
            except StoreError as err:
                log.warning("granting a heartbeat lease: %s; retrying", err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_interval)
                continue
            self.lease = lease
            return lease

    async def _hold(self, lease: KeptLease) -> None:
        """Put pending heartbeats until the lease is lost. Refused for permissions (the
        node was removed: its etcd user deleted), it asks again ever more slowly (up to
        ``REFUSED_MAX_WAIT``): one clear line each time, never a tight loop."""
        wait = self.retry_interval
        while not lease.lost.is_set():
            self._nudged.clear()  # an update while putting sets it again
            if self._pending:
                try:
                    await self._put_pending(lease.id)
                    wait = self.retry_interval
                except Forbidden as err:
                    wait = min(wait * 2, REFUSED_MAX_WAIT)
                    log.warning("putting heartbeats: %s; asking again in %.0fs", err, wait)
                except StoreError as err:
                    wait = self.retry_interval
                    log.warning("putting heartbeats: %s; retrying", err)
            if not self._pending:
                self.live.set()
            waits = [asyncio.ensure_future(lease.lost.wait()),
                     asyncio.ensure_future(self._nudged.wait())]
            try:
                await asyncio.wait(waits, timeout=wait if self._pending else None,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    async def _put_pending(self, lease_id: int) -> None:
        keys = sorted(self._pending)
        for start in range(0, len(keys), BATCH):
            chunk = keys[start:start + BATCH]
            sent = {k: self._values[k] for k in chunk}
            res = await self.etcd.txn([Compare(k, "create", "==", 0) for k in chunk],
                                      [Put(k, sent[k], lease_id) for k in chunk])
            if res.succeeded:
                self._done(sent)
                continue
            for key in chunk:  # some exist: on our lease (refresh) or another's (wait)
                value = self._values[key]
                if await self._put_one(key, lease_id, value):
                    self._done({key: value})

    def _done(self, sent: dict[str, bytes]) -> None:
        """Put: no longer pending, unless ``update`` changed the value meanwhile."""
        self._pending.difference_update(k for k, v in sent.items() if self._values[k] == v)

    async def _put_one(self, key: str, lease_id: int, value: bytes) -> bool:
        put = [Put(key, value, lease_id)]
        for compare in (Compare(key, "create", "==", 0), Compare(key, "lease", "==", lease_id)):
            if (await self.etcd.txn([compare], put)).succeeded:
                return True
        kv, _ = await self.etcd.get(key)
        if kv is not None and kv.lease and kv.lease != lease_id and stopped_at(kv.value):
            if (await self.etcd.txn([Compare(key, "mod", "==", kv.mod_revision)],
                                    put)).succeeded:
                log.info("%s: took over from lease %x at once: its agent stopped gracefully "
                         "at %s", key, kv.lease, stopped_at(kv.value))
                return True
        holder = await self._dead_holder(key)
        if holder and (await self.etcd.txn([Compare(key, "lease", "==", holder)], put)).succeeded:
            log.info("%s: took over from lease %x, which missed a refresh (this "
                     "node's previous agent died)", key, holder)
            return True
        log.warning("%s is held by another lease (another agent with this node name, or one "
                    "that died less than a TTL ago); waiting for it to expire", key)
        return False

    async def _dead_holder(self, key: str) -> int:
        """The lease holding ``key`` when its holder stopped refreshing it, else 0.

        A live agent refreshes every third of the TTL (and retries a failed
        refresh at once), so a lease that missed a refresh belongs to an agent
        that died or cannot reach etcd: taking its heartbeat over now
        keeps the node ready across an agent restart (waiting for the expiry
        would mark the node down and orphan every task it runs)."""
        kv, _ = await self.etcd.get(key)
        if kv is None or not kv.lease:
            return 0
        left, granted = await self.etcd.lease_ttls(kv.lease)
        # etcd rounds ``left`` down: the lease has under left + 1 s to live. A live
        # holder refreshes at two thirds of the TTL; half a second more is slack.
        return kv.lease if 0 <= left and left + 1 <= granted * 2 / 3 - 0.5 else 0

    async def _revoke_quietly(self, lease_id: int) -> None:
        try:
            await self.etcd.lease_revoke(lease_id)
        except StoreError as err:
            log.debug("revoking old lease %x: %s", lease_id, err)


def watch_prefix(keys: Keyspace, node_ids: Sequence[str]) -> str:
    """The narrowest ``heartbeats/`` prefix covering every local node: its own key for
    one node, ``heartbeats/<name>-`` for hollow nodes (a filter only: ``on_event``
    keeps to the local keys)."""
    if len(node_ids) == 1:
        return keys.heartbeat(node_ids[0])
    return keys.heartbeats_prefix() + os.path.commonprefix(list(node_ids))


def stopped_value(value: bytes, at: str) -> bytes:
    """A heartbeat's value marked as its agent's graceful stop (``stoppedAt``)."""
    return encode_json({**json.loads(value), "stoppedAt": at})


def stopped_at(value: bytes) -> str | None:
    """When the heartbeat's agent stopped gracefully, or None while it is live."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    at = data.get("stoppedAt") if isinstance(data, dict) else None
    return str(at) if at else None
