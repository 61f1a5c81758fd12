"""Secrets and Configs in etcd: sealed to the cluster's key, written, and removed only
when no Service uses them.

What a user's document becomes, and when a write or a removal is refused,
is decided by ``kubeless.api.secrets`` (pure); this module reads what those
decisions need and commits them:

- ``secrets_key``: the public key every Secret is sealed to, the
  ``secretsKey`` of the cluster record (``<prefix>/v1/cluster``), read as
  raw YAML (``NoSecretsKey`` when there is none: a record made before
  secrets existed);
- ``stored_documents``: apply's (and ``diff``'s) documents with each Secret
  and Config turned into what etcd holds: a new one sealed (``sealing.seal``
  bound to its namespace and name) with its digest, a stored one whose value
  is the same kept (only labels and annotations may change), another value
  refused (``ValueChanged``); ``create`` is ``secret|config create``'s;
- ``delete_resources``: every delete of the CLI (``delete``, ``delete -f``,
  ``secret|config rm``). When it removes a Secret or Config it lists the
  Services at a revision R, refuses (``InUse``, naming them) while a
  template references it, and commits comparing each deleted key's
  mod_revision and that nothing under ``spec/services/`` changed after R;
  if a Service changed meanwhile it decides again, as the Service write path
  does (``kubeless.store.services.write_services``), so a Service that
  starts using a Secret and that Secret's removal never both succeed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubeless.api import secrets as rules
from kubeless.api.errors import InUse, ValueChanged
from kubeless.store.codec import decode
from kubeless.store.errors import CorruptValue
from kubeless.store.resources import ResourceStore
from kubeless.store.services import Attempt, write_services

from . import sealing
from .errors import NoSecretsKey

Resource = dict[str, Any]
Ref = tuple[str, str | None, str]  # kind, namespace, name
SECRETS_KEY_FIELD = "secretsKey"


async def secrets_key(rstore: ResourceStore) -> str:
    """The cluster record's ``secretsKey`` (an X25519 public key's text)."""
    key = rstore.keys.cluster()
    kvs, _ = await rstore.etcd.get_many([key])
    try:
        record = decode(key, kvs[key].value) if key in kvs else None
    except CorruptValue:
        record = None
    text = record.get(SECRETS_KEY_FIELD) if isinstance(record, dict) else None
    if not isinstance(text, str) or not text:
        raise NoSecretsKey(
            "this cluster has no secrets key (its record was made before secrets existed, "
            "or there is no cluster at this prefix): no Secret can be sealed")
    try:
        sealing.load_public(text)
    except sealing.SealError:
        raise NoSecretsKey(f"the cluster record's {SECRETS_KEY_FIELD} is not an X25519 "
                           "public key: no Secret can be sealed") from None
    return text


class _Sealer:
    """Seals new Secrets to the cluster's key, read once, when the first one needs it."""

    def __init__(self, rstore: ResourceStore) -> None:
        self.rstore = rstore
        self.recipient: str | None = None

    async def spec(self, doc: Resource, value: bytes) -> dict[str, Any]:
        if doc["kind"] == "Config":
            return rules.config_spec(value)
        if self.recipient is None:
            self.recipient = await secrets_key(self.rstore)
        meta = doc["metadata"]
        context = sealing.secret_context(meta.get("namespace") or "default", meta["name"])
        return rules.secret_spec(value, sealed=sealing.seal(self.recipient, value, context),
                                 key_id=sealing.key_id(self.recipient),
                                 digest=sealing.digest(value))


def _same(value: bytes) -> Callable[[Resource], bool]:
    def same(live: Resource) -> bool:
        if live.get("kind") == "Config":
            return rules.config_same(value, live)
        digest = (live.get("spec") or {}).get("digest")
        return isinstance(digest, str) and sealing.digest_matches(value, digest)
    return same


async def stored_documents(rstore: ResourceStore, docs: Sequence[tuple[str, Resource]],
                           live: dict[Ref, Resource]) -> list[tuple[str, Resource]]:
    """(source, document) pairs with every Secret and Config as etcd would hold it after
    an apply over ``live`` (keyed by kind, namespace, name); other kinds as they are.
    ValueChanged (its ``source`` set) when a value differs from the stored one."""
    sealer = _Sealer(rstore)
    out = []
    for source, doc in docs:
        if not rules.is_file_kind(doc.get("kind")):
            out.append((source, doc))
            continue
        meta = doc["metadata"]
        value = rules.value_of(doc)
        current = live.get((doc["kind"], meta.get("namespace"), meta["name"]))
        new_spec = await sealer.spec(doc, value) if current is None else {}
        try:
            out.append((source, rules.desired(doc, current, lambda: new_spec, _same(value))))
        except ValueChanged as err:
            err.source = source
            raise
    return out


async def create(rstore: ResourceStore, doc: Resource) -> Resource:
    """Store a new Secret or Config from a user's document (validated); AlreadyExists
    when one has its name."""
    value = rules.value_of(doc)
    new = rules.stored(doc, await _Sealer(rstore).spec(doc, value))
    return await rstore.create(new)


@dataclass
class Doomed:
    """What a delete removes, as read now: resources, and values under resource keys
    that are not resources (``CorruptValue``, carrying the mod revision read)."""

    items: list[Resource]
    invalid: list[CorruptValue] = field(default_factory=list)


async def delete_resources(rstore: ResourceStore, read: Callable[[], Awaitable[Doomed]], *,
                           what: str) -> Doomed:
    """Delete what ``read`` returns (called afresh on each attempt), in one transaction
    comparing what it read; InUse when a Service not deleted with them uses a Secret
    or Config among them (see the module's docstring); KeptChanging when Services kept
    changing."""
    async def plan(attempt: Attempt) -> Doomed:
        doomed = await read()
        files = [_ref(obj) for obj in doomed.items if rules.is_file_kind(obj.get("kind"))]
        for err in doomed.invalid:
            parsed = rstore.keys.parse(err.key)
            if parsed is not None and rules.is_file_kind(parsed.kind):
                files.append((parsed.kind, parsed.namespace, parsed.name))
        if files:
            _refuse_in_use(files, await attempt.services(), doomed.items)
        for obj in doomed.items:
            attempt.txn.delete(obj)
        for err in doomed.invalid:
            attempt.txn.delete_invalid(err)
        return doomed

    return (await write_services(rstore, plan, what=what)).value


def _ref(obj: Resource) -> Ref:
    meta = obj.get("metadata") or {}
    return obj["kind"], meta.get("namespace"), meta["name"]


def _refuse_in_use(files: list[Ref], services: list[Resource], doomed: list[Resource]) -> None:
    leaving = [(ns or "default", name) for kind, ns, name in map(_ref, doomed)
               if kind == "Service"]
    for kind, ns, name in files:
        users = rules.users(kind, ns or "default", name, services, leaving)
        if users:
            raise InUse(kind, ns or "default", name, users)
