"""The secrets controller's asyncio half: one queue key per node, and one for the record.

Events map to nodes: a task that references secrets or configs (its node,
before and after), an agent's report of such a task into or out of an ended
state, a node's heartbeat advertising another key (a restarted agent), a
Node made or removed, a Secret or Config changed (every node holding a copy
of it or running a task that uses it), a copy changed by anyone (its node,
so it converges back). Reconcile reads the cluster view and the caches of
``spec/secrets/`` and ``spec/configs/``, asks ``decide`` what to write, seals
each secret to the node's key (opened with the cluster's secrets key, re-sealed
under ``copy_context``: the plain value lives only in a local variable, never in
a log line, an exception or a cache), and commits in transactions comparing
each copy's mod_revision (absence, for a new one) plus the leader fence, a few
copies per transaction (up to ~700 KB each; etcd takes 1.5 MiB a request).

Without the cluster's key (no ``--ca-key``) configs are still delivered and
each secret a task needs is logged once as undeliverable. With it, a cluster
record that has no ``secretsKey`` yet (made before secrets) gets it, in a
transaction comparing the record's mod_revision and the fence: old clusters
gain secrets on upgrade.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kubeless.api.tasks import is_terminal
from kubeless.cluster.sealing import (SealError, copy_context, key_id, seal, secret_context,
                                      unseal)
from kubeless.cluster.secrets_key import ClusterSecretsKey
from kubeless.store import Compare, Conflict, CorruptValue, Delete, KeyValue, Put, ResourceStore
from kubeless.store.codec import decode, encode_yaml

from controllers.base import ViewController
from controllers.framework import InformerSpec, plain_decode
from controllers.secrets import metrics
from controllers.secrets.decide import (DeleteCopy, Held, NodePlan, PutCopy, Ref, Source,
                                        needed, plan_node, task_refs)
from controllers.view import ClusterView, CopyMark

log = logging.getLogger(__name__)
Resource = dict[str, Any]

RECORD = ("cluster record",)  # the queue key of the record's secretsKey (nodes are strings)
# etcd refuses requests over 1.5 MiB: a transaction carries at most this much of values
# (one copy alone may be bigger: 500 KiB sealed is ~700 KB of base64), and this many ops.
MAX_TXN_BYTES = 1024 * 1024
MAX_TXN_OPS = 64


@dataclass(frozen=True)
class SourceDecoder:
    """A stored Secret or Config as a ``Source``; CorruptValue when it is not one."""

    kind: str

    def __call__(self, kv: KeyValue) -> Source:
        doc = decode(kv.key, kv.value)
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        spec = doc.get("spec") if isinstance(doc, dict) else None
        field = "sealed" if self.kind == "Secret" else "data"
        if not isinstance(meta, dict) or not isinstance(spec, dict) or \
                not isinstance(spec.get(field), str) or doc.get("kind") != self.kind:
            raise CorruptValue(kv.key, f"not a stored {self.kind} (metadata, spec.{field})")
        return Source(self.kind, str(meta.get("namespace") or "default"), str(meta.get("name")),
                      str(meta.get("uid") or ""), spec[field])


@dataclass(frozen=True)
class Write:
    compare: Compare
    op: Put | Delete
    size: int
    what: PutCopy | DeleteCopy


def _uses_files(task: Any) -> str | None:
    """The node of a stored task whose template references secrets or configs."""
    if not isinstance(task, dict):
        return None
    spec = task.get("spec") or {}
    template = spec.get("template") or {}
    node = spec.get("nodeName")
    if node and isinstance(template, dict) and (template.get("secrets") or
                                                template.get("configs")):
        return str(node)
    return None


def _ended(report: Any) -> bool:
    return isinstance(report, dict) and is_terminal(report.get("state"))


def batches(writes: Iterable[Write]) -> Iterator[list[Write]]:
    """The writes in order, a transaction's worth at a time (MAX_TXN_BYTES, MAX_TXN_OPS)."""
    batch: list[Write] = []
    size = 0
    for write in writes:
        if batch and (size + write.size > MAX_TXN_BYTES or len(batch) >= MAX_TXN_OPS):
            yield batch
            batch, size = [], 0
        batch.append(write)
        size += write.size
    if batch:
        yield batch


class SecretsController(ViewController):
    name = "secrets"
    workers = 2  # nodes are independent
    batch_period = 0.1  # a burst of task events on one node: one reconcile

    def __init__(self, store: ResourceStore, view: ClusterView | None = None,
                 cluster_key: ClusterSecretsKey | None = None) -> None:
        super().__init__(store, view)
        self.cluster_key = cluster_key
        keys = store.keys
        self.secrets_prefix = keys.kind_prefix("Secret")
        self.configs_prefix = keys.kind_prefix("Config")
        self.record_key = keys.cluster()
        self._told: set[tuple[str, ...]] = set()  # what was logged once already

    def informers(self) -> list[InformerSpec]:
        return [*self.view.informer_specs(),
                InformerSpec(self.secrets_prefix, SourceDecoder("Secret")),
                InformerSpec(self.configs_prefix, SourceDecoder("Config")),
                InformerSpec(self.record_key, plain_decode)]

    # -- events -> nodes ----------------------------------------------------------

    def keys_for_event(self, key: str, old: Any, new: Any) -> Iterable[Hashable]:
        view, keys = self.view, self.ctx.store.keys
        if key == self.record_key:
            yield RECORD
        elif key.startswith(view.tasks_prefix):
            yield from {n for n in (_uses_files(old), _uses_files(new)) if n}
        elif key.startswith(view.heartbeats_prefix):
            node = keys.parse_heartbeat(key)
            if node and (old or {}).get("secretsKey") != (new or {}).get("secretsKey"):
                yield node
        elif key.startswith(view.nodes_prefix):
            ref = keys.parse(key)
            if ref is not None:
                yield ref.name
        elif key.startswith(self.secrets_prefix) or key.startswith(self.configs_prefix):
            ref = keys.parse(key)
            if ref is not None and ref.namespace:
                yield from self._nodes_using((ref.kind, ref.namespace, ref.name))
        elif key.startswith(view.agents_prefix):
            yield from self._agent_event(key, old, new)

    def _agent_event(self, key: str, old: Any, new: Any) -> Iterable[Hashable]:
        keys = self.ctx.store.keys
        copy = keys.parse_copy(key)
        if copy is not None:
            yield copy.node
            return
        parsed = keys.parse_agent(key)
        if parsed is None or parsed.sort != "tasks" or not parsed.task_id:
            return
        if _ended(old) == _ended(new):
            return  # only a task ending (or a report withdrawn) frees its copies
        task_key = self.view.task_key_by_id.get(parsed.task_id)
        node = _uses_files(self.view.caches[self.view.tasks_prefix].get(task_key or ""))
        if node:
            yield node

    def _nodes_using(self, ref: Ref) -> set[Hashable]:
        """Nodes holding a copy of ``ref`` or running a task that references it (a scan
        of the tasks: Secrets and Configs change seldom)."""
        kind, ns, name = ref
        keys = self.ctx.store.keys
        found: set[Hashable] = {node for node, held in list(self.view.copies_by_node.items())
                                if keys.copy(node, kind, ns, name) in held}
        task_prefix = keys.kind_prefix("Task", ns)
        for key, task in list(self.view.caches[self.view.tasks_prefix].items()):
            node = _uses_files(task) if key.startswith(task_prefix) else None
            if node and (kind, name) in task_refs(task["spec"].get("template")):
                found.add(node)
        return found

    def resync_keys(self) -> Iterable[Hashable]:
        view = self.view
        nodes: set[Hashable] = {*view.node_ids(), *list(view.tasks_by_node),
                                *list(view.copies_by_node)}
        return [RECORD, *sorted(nodes, key=str)]

    # -- reconcile --------------------------------------------------------------------

    async def reconcile(self, key: Hashable) -> float | None:
        if key == RECORD:
            await self._complete_record()
        else:
            await self._deliver(str(key))
        return None

    async def _deliver(self, node: str) -> None:
        view = self.view
        tasks = view.tasks_on(node)
        held = self._held(node)
        sources = {ref: s for ref in needed(tasks) | set(held)
                   if (s := self._source(ref)) is not None}
        beat = view.heartbeat(node) or {}
        public = beat.get("secretsKey") if isinstance(beat.get("secretsKey"), str) else None
        plan = plan_node(node, exists=node in view.node_ids(), public_key=public, tasks=tasks,
                         sources=sources, held=held, can_open=self.cluster_key is not None)
        if plan:
            await self._commit(node, plan)

    def _held(self, node: str) -> dict[Ref, Held]:
        keys = self.ctx.store.keys
        informer = self.ctx.informers[self.view.agents_prefix]
        held = {}
        for key in self.view.copy_keys_on(node):
            copy, mark = keys.parse_copy(key), informer.cache.get(key)
            if copy is not None and isinstance(mark, CopyMark):
                held[(copy.kind, copy.namespace, copy.name)] = Held(
                    mark.uid, mark.recipient, informer.revisions.get(key, 0))
        return held

    def _source(self, ref: Ref) -> Source | None:
        kind, ns, name = ref
        prefix = self.secrets_prefix if kind == "Secret" else self.configs_prefix
        found = self.ctx.cache(prefix).get(self.ctx.store.keys.spec(kind, name, ns))
        return found if isinstance(found, Source) else None

    async def _commit(self, node: str, plan: NodePlan) -> None:
        for source in plan.undeliverable:
            if self._once(("no key", *source.ref, source.uid), logging.WARNING,
                          "secret %s/%s is needed on node %s but cannot be delivered: this "
                          "controllers process has no CA key (--ca-key)", source.namespace,
                          source.name, node):
                metrics.UNDELIVERABLE.inc()
        ordered: list[PutCopy | DeleteCopy] = [*plan.deletes, *plan.puts]
        # made as the batches go: one transaction's sealed values in memory at a time
        writes = (w for w in map(self._write, ordered) if w is not None)
        revision = 0
        for batch in batches(writes):
            compares = [self.ctx.elector.fence(), *(w.compare for w in batch)]
            res = await self.ctx.store.etcd.txn(compares, [w.op for w in batch])
            if not res.succeeded:  # a copy changed, or we lost the lead (fence() says so next)
                raise Conflict(f"copies of node {node} changed since read")
            revision = res.revision
            for w in batch:
                self._count(w.what)
        if revision:
            await self.caught_up(revision, {self.view.agents_prefix})

    def _write(self, what: PutCopy | DeleteCopy) -> Write | None:
        kind, ns, name = what.ref
        key = self.ctx.store.keys.copy(what.node, kind, ns, name)
        compare = (Compare(key, "mod", "==", what.revision) if what.revision
                   else Compare(key, "create", "==", 0))
        if isinstance(what, DeleteCopy):
            return Write(compare, Delete(key), 0, what)
        value = self._copy_value(what)
        return Write(compare, Put(key, value), len(value), what) if value is not None else None

    def _copy_value(self, put: PutCopy) -> bytes | None:
        """The copy's JSON (module docstring of ``decide``: the contract's shapes); None
        when a secret cannot be sealed to the node (logged once)."""
        source, node = put.source, put.node
        doc: dict[str, str] = {"kind": source.kind, "namespace": source.namespace,
                               "name": source.name, "uid": source.uid}
        if source.kind == "Config":
            doc["data"] = source.payload
            return json.dumps(doc, separators=(",", ":")).encode()
        assert self.cluster_key is not None  # decide puts no secret without it
        try:
            value = unseal(self.cluster_key.private, source.payload,
                           secret_context(source.namespace, source.name))
        except SealError as err:
            if self._once(("sealed", *source.ref, source.uid), logging.ERROR,
                          "secret %s/%s cannot be delivered: its stored value does not open "
                          "with this cluster's secrets key (key id %s): %s", source.namespace,
                          source.name, self.cluster_key.key_id, err):
                metrics.UNDELIVERABLE.inc()
            return None
        try:
            doc["sealed"] = seal(put.recipient, value, copy_context(node, source.namespace,
                                                                     source.name))
        except SealError:
            self._once(("node key", node, put.recipient), logging.WARNING,
                       "node %s advertises a secrets key that is not an X25519 public key: "
                       "no secrets are delivered to it", node)
            return None
        doc["recipient"] = key_id(put.recipient)
        return json.dumps(doc, separators=(",", ":")).encode()

    def _count(self, what: PutCopy | DeleteCopy) -> None:
        kind = what.ref[0]
        if isinstance(what, DeleteCopy):
            metrics.COPIES.labels(kind, "delete").inc()
            log.info("%s %s/%s: copy on node %s deleted (%s)", kind, what.ref[1], what.ref[2],
                     what.node, what.why)
        else:
            metrics.COPIES.labels(kind, "put").inc()
            log.info("%s %s/%s: copy on node %s %s", kind, what.ref[1], what.ref[2], what.node,
                     "replaced" if what.revision else "written")

    def _once(self, topic: tuple[str, ...], level: int, msg: str, *args: object) -> bool:
        """Log ``msg`` the first time ``topic`` comes up; whether it was the first."""
        if topic in self._told:
            return False
        self._told.add(topic)
        log.log(level, msg, *args)
        return True

    # -- the record's secretsKey ----------------------------------------------------------

    async def _complete_record(self) -> None:
        """Write the cluster's secrets key into a record made before secrets."""
        key = self.cluster_key
        record = self.ctx.cache(self.record_key).get(self.record_key)
        if key is None or not isinstance(record, dict) or not record.get("caCertificate"):
            return  # no record, or not one a CA made (a test's placeholder)
        if record.get("secretsKey"):
            if record["secretsKey"] != key.public:
                self._once(("record key",), logging.ERROR,
                           "the cluster record's secretsKey is not the one the CA key given "
                           "(--ca-key) derives: secrets sealed to it will not open here")
            return
        if not key.belongs_to(str(record.get("caCertificate") or "")):
            self._once(("record ca",), logging.ERROR,
                       "the CA key given (--ca-key) is not this cluster's CA (the record's "
                       "caCertificate): its secrets key is not written")
            return
        revision = self.ctx.informers[self.record_key].revisions.get(self.record_key, 0)
        res = await self.ctx.store.etcd.txn(
            [self.ctx.elector.fence(), Compare(self.record_key, "mod", "==", revision)],
            [Put(self.record_key, encode_yaml({**record, "secretsKey": key.public}))])
        if not res.succeeded:
            raise Conflict(f"{self.record_key} changed since revision {revision}")
        log.info("cluster record: secretsKey written (key id %s): secrets can be created",
                 key.key_id)
        await self.caught_up(res.revision, {self.record_key})

