"""A small asyncio etcd v3 client on aetcd's generated gRPC stubs.

aetcd's own ``Client`` hides what we need (range revisions and limits for
paged reads, a raw Txn, watches from a revision with progress notices,
one channel over several members), so we drive its protobuf stubs directly
over the channel built in ``channel.py``. This module knows gRPC; nothing
above it does: every gRPC error is translated into ``errors`` here.

Unary calls are retried with backoff while no member can serve them, up
to ``retry_for`` seconds for the whole call (each attempt gets what is
left of that budget, at most ``call_timeout``). What counts as "no member
can serve it now" is one list, ``_retryable``: a member that went away
(UNAVAILABLE, or gRPC's UNKNOWN "Stream removed" for a connection a
killed member reset), an election under way ("no leader", "leader
changed", a proposal dropped), and an attempt that ran out of time. An
attempt gets at most ``call_timeout`` (2 s): a write forwarded to a leader
that just died is never answered, so waiting out the whole budget on it
would fail a call that a retry on the new leader serves.

Transactions are retried on all of these too, although an attempt that
timed out or lost its connection may have been applied. Every write
compares a revision, so a duplicate fails its compare instead of writing
twice; when a retried transaction fails its compare after such an
attempt, ``txn`` reads its keys back, and if they hold exactly what it
wrote (every put's value and lease, every delete absent), the earlier
attempt was applied and the result is success.

Renewed certificates (``reload_tls``, or ``follow_tls_files`` noticing the
files changed) open a new channel with them: new calls go through it at once,
calls already made on the old one finish there, and the old channel is
closed after ``RETIRE_GRACE`` seconds, ending a watch still on it, which
its informer resumes from its revision on the new channel (an established
TLS connection stays valid after its certificate expires; only new
handshakes need the new one). A lease is kept by calls made one at a time,
so its keepalive moves over with the next one.

Streams (watches, keep-alives) carry etcd's ``hasleader`` metadata, so a
member that loses its leader (cut off from the others) ends them and the
caller resumes them on a member that has one, as etcd's own client does
with ``WithRequireLeader``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import grpc.aio
from aetcd import rpc

from . import tls as _tls
from .channel import Endpoint, open_channel
from .errors import Compacted, Forbidden, StoreError, TlsError, TooLarge, Unavailable
from .tls import TlsConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# Details of an UNKNOWN status that mean "this member cannot answer now": an
# election (etcd's own errors), or a transport the member's death broke (gRPC
# reports a reset HTTP/2 stream as UNKNOWN "Stream removed").
_TRANSIENT_HINTS = ("no leader", "leader changed", "timed out", "too many requests",
                    "proposal dropped", "deadline exceeded", "stream removed", "socket closed",
                    "connection reset", "goaway")
# Failures after which a transaction may still have been applied: it reached a
# member, then the connection broke or the member gave up waiting for the commit
# ("request timed out"); a refusal such as "no leader" is not one.
_MAYBE_APPLIED_HINTS = ("stream removed", "socket closed", "connection reset", "goaway",
                        "timed out", "deadline exceeded")
# A stream on a member without a leader is ended by etcd (rpctypes.MetadataRequireLeaderKey).
_REQUIRE_LEADER = (("hasleader", "true"),)
# The least time an attempt gets, however little of the budget is left: a
# healthy member answers in milliseconds, one that is electing in about a second.
_MIN_ATTEMPT = 0.5
RETIRE_GRACE = 5.0  # seconds calls on a channel replaced by new credentials may finish
TLS_POLL = 1.0  # seconds between looks at the TLS files (follow_tls_files)
MAX_TXN_READS = 128  # etcd's default --max-txn-ops: get_many reads in transactions this big


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # "put" or "delete"
    kv: KeyValue


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """Events of one watch response, and the revision the stream has reached."""

    revision: int
    events: tuple[WatchEvent, ...]


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction (etcd's Compare)."""

    key: str
    target: str  # "mod", "create", "version", "value", "lease"
    op: str  # "==", "!=", "<", ">"
    value: int | bytes
    prefix: bool = False  # hold for every key under ``key`` (etcd's range_end)


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    key: str
    prefix: bool = False


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[Any] = field(default_factory=list)


def prefix_end(prefix: str) -> bytes:
    """The range end that covers every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


def _kv(pb: Any) -> KeyValue:
    return KeyValue(
        pb.key.decode(), pb.value, pb.mod_revision, pb.create_revision, pb.version, pb.lease
    )


_TARGETS = {
    "mod": rpc.Compare.CompareTarget.MOD,
    "create": rpc.Compare.CompareTarget.CREATE,
    "version": rpc.Compare.CompareTarget.VERSION,
    "value": rpc.Compare.CompareTarget.VALUE,
    "lease": rpc.Compare.CompareTarget.LEASE,
}
_RESULTS = {
    "==": rpc.Compare.CompareResult.EQUAL,
    "!=": rpc.Compare.CompareResult.NOT_EQUAL,
    "<": rpc.Compare.CompareResult.LESS,
    ">": rpc.Compare.CompareResult.GREATER,
}
_FIELDS = {"mod": "mod_revision", "create": "create_revision", "version": "version",
           "value": "value", "lease": "lease"}


def _compare_pb(c: Compare) -> Any:
    pb = rpc.Compare(key=c.key.encode(), target=_TARGETS[c.target], result=_RESULTS[c.op])
    setattr(pb, _FIELDS[c.target], c.value)
    if c.prefix:
        pb.range_end = prefix_end(c.key)
    return pb


def _op_pb(op: Put | Delete) -> Any:
    if isinstance(op, Put):
        return rpc.RequestOp(request_put=rpc.PutRequest(key=op.key.encode(), value=op.value,
                                                        lease=op.lease))
    end = prefix_end(op.key) if op.prefix else b""
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=op.key.encode(),
                                                                     range_end=end))


class Etcd:
    """One connection (one gRPC channel) to an etcd cluster."""

    def __init__(self, endpoints: tuple[Endpoint, ...], *, call_timeout: float = 2.0,
                 retry_for: float = 5.0, tls: TlsConfig | None = None) -> None:
        self.endpoints = endpoints
        self.call_timeout = call_timeout
        self.retry_for = retry_for
        self.tls = tls
        self.tls_reloads = 0
        self._tls_stamp = _stamp(tls)
        self._retiring: set[asyncio.Task[None]] = set()
        self._use(open_channel(endpoints, tls))

    def _use(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel
        self._kv = rpc.KVStub(channel)
        self._watch = rpc.WatchStub(channel)
        self._lease = rpc.LeaseStub(channel)
        self._maintenance = rpc.MaintenanceStub(channel)
        self._auth = rpc.AuthStub(channel)

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self._channel.close()

    def reload_tls(self) -> None:
        """Take the TLS files as they are now for new calls (renewed certificates):
        a new channel, the old one retired; ``TlsError`` when they cannot be used
        (the old channel then stays)."""
        if self.tls is None:
            return
        stamp = _stamp(self.tls)
        channel = open_channel(self.endpoints, self.tls)  # reads and checks the files
        old, self._tls_stamp = self._channel, stamp
        self._use(channel)
        self.tls_reloads += 1
        task = asyncio.get_running_loop().create_task(self._retire(old), name="etcd-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        log.info("etcd: new connections present the renewed certificate %s", self.tls.cert)

    async def _retire(self, channel: grpc.aio.Channel) -> None:
        await channel.close(grace=RETIRE_GRACE)

    async def follow_tls_files(self, interval: float = TLS_POLL) -> None:
        """Reload when the certificate or key file changes (a renewal written by
        another part of this process or by another process); returns only when
        cancelled. A pair caught mid-renewal is taken at the next look."""
        if self.tls is None or self.tls.cert is None:
            return
        while True:
            await asyncio.sleep(interval)
            if _stamp(self.tls) == self._tls_stamp:
                continue
            try:
                self.reload_tls()
            except TlsError as err:
                log.warning("etcd: the renewed TLS files cannot be used yet: %s", err)

    async def __aenter__(self) -> Etcd:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- translation and retries ------------------------------------------

    def _unavailable(self, err: grpc.aio.AioRpcError) -> Unavailable:
        detail = (err.details() or err.code().name).splitlines()[0]
        return Unavailable(f"etcd is unavailable: {detail}", tuple(map(str, self.endpoints)))

    def _tls_failure(self, err: grpc.aio.AioRpcError) -> TlsError | None:
        """A failed TLS handshake, worded (None: the failure is not one)."""
        kind = _tls.handshake_failure(err.details() or "") \
            if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN) else None
        if kind is None:
            return None
        where = ", ".join(map(str, self.endpoints))
        name = _tls.server_name(self.endpoints, self.tls) if self.tls is not None else ""
        return TlsError(_tls.describe(kind, self.tls, where, name))

    def _worded(self, err: StoreError) -> StoreError:
        """A ``Forbidden`` names the certificate it was refused to."""
        if isinstance(err, Forbidden) and self.tls is not None and self.tls.cert is not None:
            return Forbidden(f"{err} [certificate {self.tls.cert}]")
        return err

    async def _call(self, fn: Callable[[float], Awaitable[T]]) -> T:
        """``fn(timeout)`` until it answers, a non-transient error, or ``retry_for`` is spent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        delay = 0.05
        while True:
            attempt = max(min(self.call_timeout, deadline - loop.time()), _MIN_ATTEMPT)
            try:
                return await fn(attempt)
            except grpc.aio.AioRpcError as err:
                tls_failure = self._tls_failure(err)
                if tls_failure is not None:
                    raise tls_failure from err
                if not _retryable(err):
                    raise self._worded(_translate(err)) from err
                if loop.time() + delay > deadline:
                    raise self._unavailable(err) from err
                log.debug("etcd call failed (%s: %s), retrying in %.2fs", err.code().name,
                          err.details(), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def auth_call(self, method: str, request: Any) -> Any:
        """One call of etcd's Auth service (``kubeless.store.auth`` words them), with the
        same retries and translation as every other call."""
        return await self._call(lambda t: getattr(self._auth, method)(request, timeout=t))

    # -- key-value --------------------------------------------------------

    async def range(self, key: str, end: bytes | None = None, *, revision: int = 0,
                    limit: int = 0, keys_only: bool = False, count_only: bool = False,
                    serializable: bool = False) -> tuple[list[KeyValue], bool, int, int]:
        """(kvs, more, count, header revision) of one Range call."""
        req = rpc.RangeRequest(key=key.encode(), range_end=end or b"", revision=revision,
                               limit=limit, keys_only=keys_only, count_only=count_only,
                               serializable=serializable)
        resp = await self._call(lambda t: self._kv.Range(req, timeout=t))
        return [_kv(kv) for kv in resp.kvs], resp.more, resp.count, resp.header.revision

    async def get(self, key: str) -> tuple[KeyValue | None, int]:
        kvs, _, _, revision = await self.range(key)
        return (kvs[0] if kvs else None), revision

    async def get_many(self, keys: Sequence[str]) -> tuple[dict[str, KeyValue], int]:
        """Several single keys read at one revision: one transaction per
        ``MAX_TXN_READS`` keys (etcd refuses more operations in one), the first
        fixing the revision the others read at."""
        found: dict[str, KeyValue] = {}
        revision = 0
        for start in range(0, len(keys), MAX_TXN_READS):
            ops = [rpc.RequestOp(request_range=rpc.RangeRequest(key=k.encode(),
                                                                revision=revision))
                   for k in keys[start:start + MAX_TXN_READS]]
            resp = await self._read_txn(rpc.TxnRequest(compare=[], success=ops, failure=[]))
            for r in resp.responses:
                for kv in r.response_range.kvs:
                    found[kv.key.decode()] = _kv(kv)
            revision = revision or resp.header.revision
        return found, revision

    async def _read_txn(self, req: Any) -> Any:
        return await self._call(lambda t: self._kv.Txn(req, timeout=t))

    async def list_prefix(self, prefix: str, *, page_size: int = 2000,
                          revision: int = 0) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` at one revision, read in pages.

        The first page fixes the revision; the next ones read at that same
        revision from just after the last key, so the result is one
        consistent snapshot however large the prefix.
        """
        end = prefix_end(prefix)
        start = prefix
        items: list[KeyValue] = []
        while True:
            kvs, more, _, header_rev = await self.range(start, end, revision=revision,
                                                       limit=page_size)
            if revision == 0:
                revision = header_rev
            items.extend(kvs)
            if not more or not kvs:
                return items, revision
            start = kvs[-1].key + "\0"

    async def txn(self, compares: Sequence[Compare], success: Sequence[Put | Delete],
                  failure: Sequence[Put | Delete] = ()) -> TxnResult:
        req = rpc.TxnRequest(compare=[_compare_pb(c) for c in compares],
                             success=[_op_pb(o) for o in success],
                             failure=[_op_pb(o) for o in failure])
        ambiguous = False

        async def attempt(timeout: float) -> Any:
            nonlocal ambiguous
            try:
                return await self._kv.Txn(req, timeout=timeout)
            except grpc.aio.AioRpcError as err:
                ambiguous = ambiguous or _maybe_applied(err)
                raise

        try:
            resp = await self._call(attempt)
        except TooLarge as err:
            err.size = req.ByteSize()
            raise
        if not resp.succeeded and ambiguous and success:
            revision = await self._applied(success)
            if revision:
                log.debug("a retried transaction found its earlier attempt applied")
                return TxnResult(True, revision, [])
        return TxnResult(resp.succeeded, resp.header.revision, list(resp.responses))

    async def _applied(self, ops: Sequence[Put | Delete]) -> int:
        """The revision at which ``ops`` hold as written (0: they do not)."""
        found, revision = await self.get_many([op.key for op in ops])
        puts = [op for op in ops if isinstance(op, Put)]
        for op in ops:
            kv = found.get(op.key)
            if isinstance(op, Delete):
                if op.prefix or kv is not None:
                    return 0
            elif kv is None or kv.value != op.value or kv.lease != op.lease:
                return 0
        return max((found[op.key].mod_revision for op in puts), default=revision)

    async def compact(self, revision: int) -> None:
        req = rpc.CompactionRequest(revision=revision, physical=True)
        await self._call(lambda t: self._kv.Compact(req, timeout=t))

    async def status(self) -> Any:
        """The status of whichever member answers (version, leader, raft term)."""
        return await self._call(
            lambda t: self._maintenance.Status(rpc.StatusRequest(), timeout=t))

    # -- watch ------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int,
                    *, progress_notify: bool = True) -> AsyncIterator[WatchBatch]:
        """Stream changes under ``prefix`` from ``start_revision`` on.

        Raises Compacted when that revision is gone, Unavailable when the
        stream breaks (the caller resumes from the last revision it saw).
        """
        create = rpc.WatchCreateRequest(key=prefix.encode(), range_end=prefix_end(prefix),
                                        start_revision=start_revision,
                                        progress_notify=progress_notify)
        stop = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield rpc.WatchRequest(create_request=create)
            await stop.wait()

        channel = self._channel
        call = self._watch.Watch(requests(), metadata=_REQUIRE_LEADER)
        try:
            async for resp in call:
                if resp.compact_revision:
                    raise Compacted(resp.compact_revision)
                if resp.canceled:
                    if "permission denied" in resp.cancel_reason:
                        raise Forbidden(f"etcd refused the watch of {prefix}: permission "
                                        "denied (this identity may not read it)")
                    raise StoreError(f"watch canceled by etcd: {resp.cancel_reason or 'no reason'}")
                if resp.created and not resp.events:
                    continue
                events = tuple(
                    WatchEvent("delete" if ev.type == rpc.Event.EventType.DELETE else "put",
                               _kv(ev.kv))
                    for ev in resp.events)
                yield WatchBatch(resp.header.revision, events)
            raise Unavailable("watch stream ended", tuple(map(str, self.endpoints)))
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.CANCELLED and stop.is_set():
                return
            if channel is not self._channel:
                raise Unavailable("the watch moves to the renewed TLS credentials",
                                  tuple(map(str, self.endpoints))) from err
            raise self._unavailable(err) from err
        finally:
            stop.set()
            call.cancel()

    # -- leases -----------------------------------------------------------

    async def lease_grant(self, ttl: int) -> int:
        req = rpc.LeaseGrantRequest(TTL=ttl)
        resp = await self._call(lambda t: self._lease.LeaseGrant(req, timeout=t))
        if resp.error:
            raise StoreError(f"lease grant refused: {resp.error}")
        return int(resp.ID)

    async def lease_revoke(self, lease_id: int) -> None:
        req = rpc.LeaseRevokeRequest(ID=lease_id)
        try:
            await self._call(lambda t: self._lease.LeaseRevoke(req, timeout=t))
        except Forbidden:
            raise
        except StoreError as err:
            if "not found" not in str(err):
                raise

    async def lease_keepalive_once(self, lease_id: int) -> int:
        """Refresh a lease once; returns the TTL etcd granted (0: the lease is gone)."""
        async def once(timeout: float) -> int:
            async def one() -> AsyncIterator[Any]:
                yield rpc.LeaseKeepAliveRequest(ID=lease_id)

            call = self._lease.LeaseKeepAlive(one(), timeout=timeout, metadata=_REQUIRE_LEADER)
            try:
                async for resp in call:
                    return int(resp.TTL)
                return 0
            finally:
                call.cancel()

        return await self._call(once)

    async def lease_ttl(self, lease_id: int) -> int:
        return (await self.lease_ttls(lease_id))[0]

    async def lease_ttls(self, lease_id: int) -> tuple[int, int]:
        """(seconds left, seconds granted) of a lease; left is -1 when it is gone."""
        req = rpc.LeaseTimeToLiveRequest(ID=lease_id)
        resp = await self._call(lambda t: self._lease.LeaseTimeToLive(req,
                                                                    timeout=t))
        return int(resp.TTL), int(resp.grantedTTL)


def _stamp(tls: TlsConfig | None) -> tuple[tuple[int, int, int], ...]:
    """What identifies the TLS files' contents cheaply: (inode, size, mtime) of each
    (a renewal replaces them by rename: a new inode)."""
    stamps = []
    for path in (tls.cert, tls.key) if tls is not None else ():
        try:
            st = path.stat() if path is not None else None
        except OSError:
            st = None
        stamps.append((st.st_ino, st.st_size, st.st_mtime_ns) if st else (0, 0, 0))
    return tuple(stamps)


def _retryable(err: grpc.aio.AioRpcError) -> bool:
    """No member can serve the call now, but one may soon (see the module docstring)."""
    if err.code() in _RETRYABLE:
        return True
    details = (err.details() or "").lower()
    return err.code() == grpc.StatusCode.UNKNOWN and any(h in details for h in _TRANSIENT_HINTS)


def _maybe_applied(err: grpc.aio.AioRpcError) -> bool:
    """The call may have reached a member and been applied before it failed."""
    if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return True
    details = (err.details() or "").lower()
    return any(h in details for h in _MAYBE_APPLIED_HINTS)


# etcd's refusals of a request too big for it: "etcdserver: request is too large"
# (over --max-request-bytes), "etcdserver: too many operations in txn request" (over
# --max-txn-ops), and gRPC's own limit on what the server receives (the request bytes
# plus a margin), RESOURCE_EXHAUSTED "received message larger than max".
_TOO_LARGE_HINTS = ("request is too large", "too many operations in txn request",
                    "larger than max")


def _too_large(err: grpc.aio.AioRpcError) -> bool:
    details = (err.details() or "").lower()
    return err.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                          grpc.StatusCode.RESOURCE_EXHAUSTED) and \
        any(h in details for h in _TOO_LARGE_HINTS)


# etcd's auth refusals: no permission for the key range, no user by the certificate's
# common name (deleted: ``node rm``), or not root for a user/role call. Each has its
# own gRPC code; the words are the same in etcd 3.4 and 3.5.
_FORBIDDEN_CODES = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}
_FORBIDDEN_HINTS = ("permission denied", "user name not found", "authentication failed",
                    "invalid auth token", "user name is empty")


def _forbidden(err: grpc.aio.AioRpcError) -> bool:
    details = (err.details() or "").lower()
    return err.code() in _FORBIDDEN_CODES or any(h in details for h in _FORBIDDEN_HINTS)


def _translate(err: grpc.aio.AioRpcError) -> StoreError:
    detail = (err.details() or err.code().name).splitlines()[0]
    if _forbidden(err):
        return Forbidden(f"etcd refused the request: {detail.removeprefix('etcdserver: ')} "
                         "(this identity may not do that, or its etcd user was removed)")
    if err.code() == grpc.StatusCode.OUT_OF_RANGE and "compacted" in detail:
        return Compacted(0)
    if _too_large(err):
        return TooLarge(f"etcd refused the request as too large: {detail}")
    if err.code() in _RETRYABLE:
        return Unavailable(f"etcd is unavailable: {detail}")
    return StoreError(f"etcd refused the request: {detail}")
