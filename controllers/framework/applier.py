"""The applier: commits the operations a decision returned, fenced by the leader key.

A decision function returns ``controllers.ops`` values; the applier turns
them into etcd transactions through ``ResourceStore.transaction()``:

    CreateTask          create the task (compare: key absent)
    UpdateTask          update the task (compare: mod_revision == resourceVersion)
    AssignTask          UpdateTask + the node's assignment key
    DeleteTask          delete the task (compare as update) and its assignment key
    WriteServiceStatus  put the status key (compare its mod_revision when the op
                        carries ``status_revision``), only while the Service exists

Following docs/MODEL.md, every task write whose task has ``spec.nodeName``
and a state past ``pending`` also puts ``agents/<node>/assignments/<id>``
with exactly the bytes of the task key. Every transaction also carries the
leader fence, so a deposed leader writes nothing.

Long lists are cut into transactions of at most ``max_ops`` etcd operations
(an operation's writes never straddle two), committed concurrently with at
most ``concurrency`` in flight. Each batch succeeds or fails on its own: a
conflicting batch is reported (with the keys whose compare failed) for the
caller to requeue, never raised. A failed fence raises ``NotLeader``.

One operation etcd can never take must not block the others: a batch etcd
refuses as too large (``TooLarge``: over its --max-request-bytes or
--max-txn-ops) is split in halves, and the halves committed on their own,
until the offender is alone; it is then skipped and reported in
``ApplyResult.too_large`` (not an error: retrying cannot help), for its
controller to say why on the resource (the scheduler on the task, replication
on the service's status).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from controllers.ops import (AssignTask, CreateTask, DeleteTask, Op, UpdateTask,
                             WriteServiceStatus)
from kubeless.api.tasks import state_index
from kubeless.store import (Compare, Conflict, Delete, KeyValue, Put, ResourceStore, ResourceTxn,
                            StoreError, TooLarge)
from kubeless.store.codec import encode_yaml

from .errors import NotLeader

log = logging.getLogger(__name__)

Resource = dict[str, Any]
MAX_TXN_OPS = 100  # etcd's default --max-txn-ops is 128
_PENDING = state_index("pending")


class Fence(Protocol):
    def fence(self) -> Compare: ...


@dataclass(frozen=True)
class BatchResult:
    ops: tuple[Op, ...]
    revision: int = 0                     # the commit's revision when it succeeded
    conflicts: tuple[str, ...] = ()       # keys whose compare failed
    error: StoreError | None = None       # etcd failed (Unavailable...): outcome unknown
    too_large: int = 0                    # etcd refused this lone operation: its request bytes

    @property
    def ok(self) -> bool:
        return self.revision > 0


@dataclass
class ApplyResult:
    batches: list[BatchResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(b.ok for b in self.batches)

    @property
    def revision(self) -> int:
        """The highest committed revision (wait for the informer to reach it)."""
        return max((b.revision for b in self.batches), default=0)

    @property
    def failed_ops(self) -> list[Op]:
        """What did not land and may on a retry (skipped ``too_large`` ones excluded)."""
        return [op for b in self.batches if not b.ok and not b.too_large for op in b.ops]

    @property
    def too_large(self) -> list[tuple[Op, int]]:
        """Operations skipped because etcd refuses them even alone, with their request bytes."""
        return [(b.ops[0], b.too_large) for b in self.batches if b.too_large]

    @property
    def conflicts(self) -> list[str]:
        return [k for b in self.batches for k in b.conflicts]

    @property
    def errors(self) -> list[StoreError]:
        return [b.error for b in self.batches if b.error is not None]

    def check(self) -> ApplyResult:
        """Raise when a batch did not land (Conflict, or its StoreError), so the runner
        requeues the key with backoff; the batches that landed stay written."""
        if self.errors:
            raise self.errors[0]
        if self.failed_ops:
            raise Conflict(f"{len(self.failed_ops)} operations conflicted on "
                           f"{', '.join(self.conflicts) or 'keys that changed meanwhile'}")
        return self


def task_needs_assignment(task: Resource) -> bool:
    """A task with a node and a state past pending is mirrored in its node's assignments."""
    return bool((task.get("spec") or {}).get("nodeName")) and \
        state_index((task.get("status") or {}).get("state")) > _PENDING


class Applier:
    def __init__(self, store: ResourceStore, fence: Fence, *, max_ops: int = MAX_TXN_OPS,
                 concurrency: int = 8) -> None:
        if max_ops < 2:
            raise ValueError("max_ops must leave room for a task and its assignment")
        self.store = store
        self.keys = store.keys
        self.fence = fence
        self.max_ops = max_ops
        self.concurrency = concurrency

    # -- building ---------------------------------------------------------------

    def _txn(self) -> ResourceTxn:
        return self.store.transaction()

    def add_op(self, txn: ResourceTxn, op: Op) -> None:
        """Append one operation's compares and writes to ``txn``."""
        at = len(txn.ops)  # where the task's own put lands: its bytes are the assignment's
        match op:
            case CreateTask(task=task):
                created = txn.create(task)
                self._assignment(txn, created, txn.ops[at])
            case UpdateTask(task=task):
                txn.update(task)
                self._assignment(txn, task, txn.ops[at])
            case AssignTask(task=task, node_id=node):
                if (task.get("spec") or {}).get("nodeName") != node:
                    raise ValueError(f"AssignTask to {node} but the task's spec.nodeName is "
                                     f"{(task.get('spec') or {}).get('nodeName')!r}")
                txn.update(task)
                self._assignment(txn, task, txn.ops[at], force=True)
            case DeleteTask(task=task):
                txn.delete(task)
                bound = (task.get("spec") or {}).get("nodeName")
                if bound:
                    txn.add(ops=[Delete(self.keys.assignment(bound, task["metadata"]["name"]))])
            case WriteServiceStatus(namespace=ns, name=name, status=status):
                self._status(txn, ns, name, status, getattr(op, "status_revision", None))
            case _:
                raise TypeError(f"not an operation: {op!r}")

    def _assignment(self, txn: ResourceTxn, task: Resource, own: Put | Delete, *,
                    force: bool = False) -> None:
        """Mirror the task in its node's assignments: the very bytes of its own put."""
        if not (force or task_needs_assignment(task)):
            return
        key = self.keys.assignment(task["spec"]["nodeName"], task["metadata"]["name"])
        value = own.value if isinstance(own, Put) else self.store.encode(task)
        txn.add(ops=[Put(key, value)])

    def _status(self, txn: ResourceTxn, ns: str, name: str, status: dict[str, Any],
                revision: int | None) -> None:
        key = self.keys.status("Service", name, ns)
        assert key is not None
        compares = [Compare(self.keys.spec("Service", name, ns), "create", ">", 0)]
        if revision is not None:
            compares.append(Compare(key, "mod", "==", revision))
        txn.add(compares, [Put(key, encode_yaml(status))])

    def size(self, op: Op) -> int:
        """How many etcd operations ``op`` becomes."""
        txn = self._txn()
        self.add_op(txn, op)
        return len(txn.ops)

    def batches(self, ops: Sequence[Op]) -> list[tuple[tuple[Op, ...], ResourceTxn]]:
        """The operations cut into transactions of at most ``max_ops`` writes.

        A batch is also cut before an operation that writes a key the batch
        already writes (etcd refuses duplicate keys in one transaction).
        """
        out: list[tuple[tuple[Op, ...], ResourceTxn]] = []
        group: list[Op] = []
        txn, keys = self._txn(), set[str]()
        for op in ops:
            one = self._txn()
            self.add_op(one, op)
            if len(one.ops) > self.max_ops:
                raise ValueError(f"{type(op).__name__} needs {len(one.ops)} writes, "
                                 f"more than {self.max_ops}")
            written = {o.key for o in one.ops}
            if group and (len(txn.ops) + len(one.ops) > self.max_ops or keys & written):
                out.append((tuple(group), txn))
                group, txn, keys = [], self._txn(), set()
            group.append(op)
            txn.add(one.compares, one.ops)
            keys |= written
        if group:
            out.append((tuple(group), txn))
        return out

    # -- committing -------------------------------------------------------------

    async def apply(self, ops: Sequence[Op]) -> ApplyResult:
        """Commit ``ops``; each batch lands or conflicts on its own. NotLeader when fenced off."""
        fence = self.fence.fence()  # NotLeader at once when we know we do not lead
        slots = asyncio.Semaphore(self.concurrency)

        async def one(group: tuple[Op, ...], txn: ResourceTxn) -> list[BatchResult]:
            async with slots:
                return await self._commit_or_split(group, txn, fence)

        outcomes = await asyncio.gather(*(one(g, t) for g, t in self.batches(ops)),
                                        return_exceptions=True)
        results: list[BatchResult] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome  # NotLeader, or a bug
            results.extend(outcome)
        return ApplyResult(results)

    async def _commit_or_split(self, group: tuple[Op, ...], txn: ResourceTxn,
                               fence: Compare) -> list[BatchResult]:
        """Commit one batch; when etcd refuses it as too large, each half on its own
        (in turn), down to the lone operation etcd refuses, which is skipped."""
        try:
            return [await self._commit(group, txn, fence)]
        except TooLarge as err:
            if len(group) == 1:
                log.warning("etcd refuses %s even alone (%d bytes): skipped; %s",
                            describe_op(group[0]), err.size, err)
                return [BatchResult(group, too_large=err.size or 1)]
        half = len(group) // 2
        out: list[BatchResult] = []
        for part in (group[:half], group[half:]):
            for sub_group, sub_txn in self.batches(part):
                out.extend(await self._commit_or_split(sub_group, sub_txn, fence))
        return out

    async def _commit(self, group: tuple[Op, ...], txn: ResourceTxn,
                      fence: Compare) -> BatchResult:
        """One transaction; TooLarge when etcd refuses it for its size."""
        compares = [fence, *txn.compares]
        try:
            res = await self.store.etcd.txn(compares, txn.ops)
        except TooLarge:
            raise
        except StoreError as err:
            log.warning("applying %d operations failed: %s", len(group), err)
            return BatchResult(group, error=err)
        if res.succeeded:
            return BatchResult(group, revision=res.revision)
        try:
            current, _ = await self.store.etcd.get_many(sorted({c.key for c in compares}))
        except StoreError as err:
            return BatchResult(group, conflicts=(), error=err)
        if not _holds(fence, current.get(fence.key)):
            raise NotLeader(f"the leader key {fence.key} is no longer ours; nothing written")
        failed = tuple(c.key for c in txn.compares if not _holds(c, current.get(c.key)))
        log.info("a batch of %d operations conflicted on %s", len(group),
                 ", ".join(failed) or "keys that changed back meanwhile")
        return BatchResult(group, conflicts=failed)


def too_large_message(size: int, verb: str) -> str:
    """What a resource says when etcd refuses to ``verb`` its task (``service ps`` and
    ``describe`` show it): "task too large for etcd: assigning it is a N-byte request..."."""
    return (f"task too large for etcd: {verb} it is a {size}-byte request, more than etcd "
            f"accepts (--max-request-bytes); make the service smaller")


def describe_op(op: Op) -> str:
    """``AssignTask default/web/abc`` (for logs)."""
    task = getattr(op, "task", None)
    if isinstance(task, dict):
        meta = task.get("metadata") or {}
        service = (task.get("spec") or {}).get("serviceName", "")
        return f"{type(op).__name__} {meta.get('namespace')}/{service}/{meta.get('name')}"
    return f"{type(op).__name__} {getattr(op, 'namespace', '')}/{getattr(op, 'name', '')}"


def _holds(c: Compare, kv: KeyValue | None) -> bool:
    """Evaluate one compare as etcd would, against the key as read now."""
    actual: int | bytes
    if c.target == "value":
        actual = kv.value if kv is not None else b""
    else:
        field_name = {"mod": "mod_revision", "create": "create_revision",
                      "version": "version", "lease": "lease"}[c.target]
        actual = getattr(kv, field_name) if kv is not None else 0
    match c.op:
        case "==":
            return actual == c.value
        case "!=":
            return actual != c.value
        case "<":
            return actual < c.value  # type: ignore[operator]
        case ">":
            return actual > c.value  # type: ignore[operator]
    raise ValueError(f"unknown compare operator {c.op!r}")
