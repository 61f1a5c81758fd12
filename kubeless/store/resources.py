"""Typed access to resources (Service, Node, Task, Secret, Config, Route) stored in etcd.

A resource is the dict of its YAML document. What is stored under a spec
key is the document without ``status`` and without
``metadata.resourceVersion``; readers set ``resourceVersion`` to the key's
mod_revision, and updates compare it, so a stale write fails with
``Conflict`` and never overwrites. A Service's status lives under its own
key so that users and controllers never conflict.

Readers skip values that are not YAML or not shaped like the resource their
key names, and report them in ``ListResult.skipped`` instead of crashing;
``get`` raises them as ``CorruptValue`` carrying the key's mod_revision and
value, so callers can show the value and delete it (``delete_invalid``),
compare-guarded like any other write.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from kubeless.api.selectors import Selector

from .codec import decode, encode_json, encode_yaml
from .errors import AlreadyExists, Conflict, CorruptValue, NotFound, StoreError
from .etcd import Compare, Delete, Etcd, KeyValue, Put
from .keys import Keyspace

Resource = dict[str, Any]

API_VERSION = "kubeless.io/v1"
# Machine-written kinds on hot paths are stored as JSON (valid YAML, faster).
_JSON_KINDS = {"Task"}
# Kinds whose status is never stored with the spec: a Service's has its own key; what a
# reader shows of a Route's (its live split) is derived, never stored.
_NO_STORED_STATUS = {"Service", "Route"}


@dataclass
class ListResult:
    items: list[Resource]
    revision: int
    skipped: list[CorruptValue] = field(default_factory=list)


def now_rfc3339() -> str:
    """UTC, RFC 3339, to the millisecond (latency metrics need better than seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def copy_data(value: Any) -> Any:
    """A deep copy of plain data (dicts, lists, scalars), several times faster than
    ``copy.deepcopy``; anything else is copied by ``copy.deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {k: copy_data(v) for k, v in value.items()}
    if kind is list:
        return [copy_data(v) for v in value]
    if kind in _ATOMS:
        return value
    return copy.deepcopy(value)


_ATOMS = frozenset({str, int, float, bool, type(None)})


def identity(obj: Resource) -> tuple[str, str | None, str]:
    meta = obj.get("metadata") or {}
    return obj["kind"], meta.get("namespace"), meta["name"]


def describe_ref(kind: str, namespace: str | None, name: str) -> str:
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


class ResourceStore:
    """get/list/create/update/delete of resources, with optimistic concurrency."""

    def __init__(self, etcd: Etcd, keyspace: Keyspace | None = None) -> None:
        self.etcd = etcd
        self.keys = keyspace or Keyspace()

    # -- keys and codecs --------------------------------------------------

    def key_of(self, obj: Resource) -> str:
        kind, ns, name = identity(obj)
        service = (obj.get("spec") or {}).get("serviceName") if kind == "Task" else None
        return self.keys.spec(kind, name, ns, service)

    def encode(self, obj: Resource) -> bytes:
        stored = {k: v for k, v in obj.items()
                  if k != "status" or obj["kind"] not in _NO_STORED_STATUS}
        meta = dict(stored.get("metadata") or {})
        meta.pop("resourceVersion", None)
        stored["metadata"] = meta
        return (encode_json if obj["kind"] in _JSON_KINDS else encode_yaml)(stored)

    def decode(self, kind: str, kv: KeyValue) -> Resource:
        """A stored value as a resource; CorruptValue (with the key's mod_revision and
        value) when it is not one."""
        try:
            obj = decode(kv.key, kv.value)
            reason = self._misshapen(kind, kv.key, obj)
        except CorruptValue as err:
            reason = err.reason
        if reason is not None:
            raise CorruptValue(kv.key, reason, mod_revision=kv.mod_revision, value=kv.value)
        obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
        return obj  # type: ignore[no-any-return]

    def _misshapen(self, kind: str, key: str, obj: Any) -> str | None:
        """Why a decoded value is not the resource its key names (None: it is)."""
        if not isinstance(obj, dict):
            return f"not a mapping (a {type(obj).__name__})"
        if obj.get("kind") != kind:
            return f"kind is {obj.get('kind')!r}, expected {kind!r}"
        meta = obj.get("metadata")
        ref = self.keys.parse(key)
        if not isinstance(meta, dict) or (ref and meta.get("name") != ref.name):
            return "metadata.name does not match its key"
        return None

    # -- reads ------------------------------------------------------------

    async def get(self, kind: str, name: str, namespace: str | None = None) -> Resource | None:
        if kind == "Task":
            found = await self._find_task(name, namespace)
            return found
        spec_key = self.keys.spec(kind, name, namespace)
        status_key = self.keys.status(kind, name, namespace)
        kvs, _ = await self.etcd.get_many([spec_key] + ([status_key] if status_key else []))
        if spec_key not in kvs:
            return None
        obj = self.decode(kind, kvs[spec_key])
        if status_key and status_key in kvs:
            obj["status"] = _status_value(kvs[status_key])
        return obj

    async def _find_task(self, name: str, namespace: str | None) -> Resource | None:
        result = await self.list("Task", namespace)
        return next((t for t in result.items if t["metadata"]["name"] == name), None)

    async def list(self, kind: str, namespace: str | None = None,
                   selector: Selector | None = None) -> ListResult:
        """Every resource of a kind at one revision (all namespaces when None)."""
        kvs, revision = await self.etcd.list_prefix(self.keys.kind_prefix(kind, namespace))
        statuses: dict[str, Any] = {}
        status_prefix = self.keys.status_prefix(kind, namespace)
        if status_prefix is not None:
            status_kvs, _ = await self.etcd.list_prefix(status_prefix, revision=revision)
            statuses = {kv.key: kv for kv in status_kvs}
        result = ListResult([], revision)
        for kv in kvs:
            try:
                obj = self.decode(kind, kv)
            except CorruptValue as err:
                result.skipped.append(err)
                continue
            if selector and not selector.matches(obj["metadata"].get("labels")):
                continue
            skv = statuses.get(self._status_key_for(kind, obj))
            if skv is not None:
                obj["status"] = _status_value(skv)
            result.items.append(obj)
        return result

    def _status_key_for(self, kind: str, obj: Resource) -> str:
        _, ns, name = identity(obj)
        return self.keys.status(kind, name, ns) or ""

    # -- writes -----------------------------------------------------------

    def transaction(self) -> ResourceTxn:
        return ResourceTxn(self)

    async def create(self, obj: Resource) -> Resource:
        txn = self.transaction()
        created = txn.create(obj)
        await txn.commit()
        return created

    async def update(self, obj: Resource) -> Resource:
        txn = self.transaction()
        updated = txn.update(obj)
        await txn.commit()
        return updated

    async def delete(self, kind: str, name: str, namespace: str | None = None,
                     resource_version: str | None = None) -> None:
        if resource_version is None:
            current = await self.get(kind, name, namespace)
            if current is None:
                raise NotFound(f"{describe_ref(kind, namespace, name)} not found")
            resource_version = current["metadata"]["resourceVersion"]
            obj = current
        else:
            obj = {"kind": kind, "metadata": {"name": name, "namespace": namespace,
                                              "resourceVersion": resource_version}}
        txn = self.transaction()
        txn.delete(obj)
        await txn.commit()

    async def delete_invalid(self, err: CorruptValue) -> None:
        """Delete a value that does not decode, compare-guarded (see ResourceTxn)."""
        txn = self.transaction()
        txn.delete_invalid(err)
        await txn.commit()

    async def write_status(self, obj: Resource, status: dict[str, Any],
                           status_revision: int = 0) -> int:
        """Replace a Service's status, comparing the status key's mod_revision."""
        kind, ns, name = identity(obj)
        key = self.keys.status(kind, name, ns)
        if key is None:
            raise ValueError(f"{kind} has no separate status key")
        res = await self.etcd.txn([Compare(key, "mod", "==", status_revision)],
                                  [Put(key, encode_yaml(status))])
        if not res.succeeded:
            raise Conflict(f"status of {describe_ref(kind, ns, name)} changed meanwhile")
        return res.revision


def _status_value(kv: KeyValue) -> Any:
    try:
        return decode(kv.key, kv.value)
    except CorruptValue as err:
        return {"error": str(err)}


class ResourceTxn:
    """Several resource writes committed in one etcd transaction, or none.

    Each write compares what its caller read: creates compare that the key
    does not exist, updates and deletes that its mod_revision is still the
    resource's resourceVersion. ``extra_compares`` lets a controller add
    its leader-key fence.
    """

    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        self.compares: list[Compare] = []
        self.ops: list[Put | Delete] = []
        self._refs: dict[str, tuple[str, str]] = {}  # key -> (description, verb)

    def __len__(self) -> int:
        return len(self.ops)

    def _remember(self, obj: Resource, key: str, verb: str) -> None:
        self._refs[key] = (describe_ref(*identity(obj)), verb)

    def create(self, obj: Resource) -> Resource:
        new: Resource = copy_data(obj)
        new.setdefault("apiVersion", API_VERSION)
        meta = new.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        meta.setdefault("generation", 1)
        key = self.store.key_of(new)
        self.compares.append(Compare(key, "create", "==", 0))
        self.ops.append(Put(key, self.store.encode(new)))
        self._status_put(new)
        self._remember(new, key, "create")
        return new

    def update(self, obj: Resource) -> Resource:
        """Overwrite a resource read at ``metadata.resourceVersion``."""
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if not version:
            raise ValueError("update needs metadata.resourceVersion (read the resource first)")
        key = self.store.key_of(obj)
        self.compares.append(Compare(key, "mod", "==", int(version)))
        self.ops.append(Put(key, self.store.encode(obj)))
        self._status_put(obj)
        self._remember(obj, key, "update")
        return obj

    def delete(self, obj: Resource) -> None:
        version = (obj.get("metadata") or {}).get("resourceVersion")
        key = self.store.key_of(obj)
        if version:
            self.compares.append(Compare(key, "mod", "==", int(version)))
        else:
            self.compares.append(Compare(key, "create", ">", 0))
        self.ops.append(Delete(key))
        kind, ns, name = identity(obj)
        status_key = self.store.keys.status(kind, name, ns)
        if status_key:
            self.ops.append(Delete(status_key))
        self._remember(obj, key, "delete")

    def delete_invalid(self, err: CorruptValue) -> None:
        """Delete a value that is not a resource (and its status key), comparing the
        mod_revision it was read at: a value rewritten meanwhile is kept (Conflict)."""
        self.compares.append(Compare(err.key, "mod", "==", err.mod_revision))
        self.ops.append(Delete(err.key))
        ref = self.store.keys.parse(err.key)
        status_key = self.store.keys.status(ref.kind, ref.name, ref.namespace) if ref else None
        if status_key:
            self.ops.append(Delete(status_key))
        self._refs[err.key] = (err.key, "delete")

    def _status_put(self, obj: Resource) -> None:
        kind, ns, name = identity(obj)
        status_key = self.store.keys.status(kind, name, ns)
        if status_key and "status" in obj and obj["status"] is not None:
            self.ops.append(Put(status_key, encode_yaml(obj["status"])))

    def add(self, compares: Sequence[Compare] = (), ops: Sequence[Put | Delete] = ()) -> None:
        """Raw compares and operations (leader fences, assignment keys) in the same commit."""
        self.compares.extend(compares)
        self.ops.extend(ops)

    async def commit(self) -> int:
        """Apply every write or none; Conflict names what changed meanwhile."""
        if not self.ops:
            return 0
        res = await self.store.etcd.txn(self.compares, self.ops)
        if res.succeeded:
            return res.revision
        raise await self._explain_conflict()

    async def _explain_conflict(self) -> StoreError:
        keys = [c.key for c in self.compares]
        current, _ = await self.store.etcd.get_many(keys)
        for c in self.compares:
            kv = current.get(c.key)
            desc, verb = self._refs.get(c.key, (c.key, "write"))
            if c.target == "create" and c.op == "==" and kv is not None:
                return AlreadyExists(f"{desc} already exists")
            if c.target == "create" and c.op == ">" and kv is None:
                return NotFound(f"{desc} not found")
            if c.target == "mod" and (kv is None or kv.mod_revision != c.value):
                what = "was deleted" if kv is None else "was changed"
                return Conflict(f"cannot {verb} {desc}: it {what} since it was read "
                                f"(resourceVersion {c.value!s}); read it again and retry")
        return Conflict("the transaction's conditions no longer hold; read again and retry")
