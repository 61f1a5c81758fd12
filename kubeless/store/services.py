"""The one Service (and Route) write path: plan from what was read, commit comparing it,
retry.

Every writer of a Service's or Route's spec key goes through ``write_services``:
``kubeless apply``, ``service create|update|scale|rollback``, ``rollout
pause|resume|undo``, ``route weight`` and the rollout controller's automatic
rollback. What
to write is decided by the pure rules of ``kubeless.api.service_writes``
(merge, generation, rollout annotations, rollbacks); this module reads,
commits and retries.

Each attempt plans afresh into an empty transaction (``Attempt``), whose
writes compare what was read (``ResourceTxn``). A write that publishes
ports the live Service does not hold (``changes_ports``; a new Route, or one
whose port changes) has them numbered and checked against every other Service
and Route (``kubeless.api.ports``; ``PortsRefused`` on a problem): the
services are listed at one revision R and the routes at one revision R', and
the commit also compares, over the whole ``spec/services/`` prefix, that no
key there changed after R (``mod_revision < R + 1``), and likewise over
``spec/routes/`` after R'. If one did (another apply, a ``service create``),
or what the plan read changed,
nothing is written and the plan runs again from a fresh read, a few times
with a short backoff (``KeptChanging`` after that): of two concurrent
writes of clashing ports exactly one wins, and the other is refused with
the holder's name. A write that publishes no new port is one commit: a
stale read fails with ``Conflict`` (or ``AlreadyExists``), never retried.

Every Service the write puts refers only to Secrets and Configs that exist
(``Attempt.references``): each one referred to is read, a missing one is
refused (``MissingReference``), and the commit compares that each one read
still exists; when that compare fails, the refusal is raised then. A
Secret or Config the same transaction writes (``kubeless apply`` of a file
holding both) needs no reading: it exists once the commit does.

A controller adds its leader fence (``fence``): the write then holds only
while it leads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kubeless.api.errors import MissingReference, PortsRefused
from kubeless.api.file_refs import FIELDS, referenced
from kubeless.api.ports import owner, plan_ports, service_ref
from kubeless.api.service_writes import changes_ports, merge, rolled_back, without_status

from .errors import AlreadyExists, Conflict, KeptChanging, NotFound
from .etcd import Compare
from .resources import ResourceStore, identity

Resource = dict[str, Any]
T = TypeVar("T")

PORT_KINDS = ("Service", "Route")  # the kinds that hold published ports
ATTEMPTS = 8
BACKOFF = 0.02  # seconds before the second attempt, doubling


class Attempt:
    """One try of a Service write: the transaction its plan fills, and the revisions at
    which it read every Service and every Route (None: it did not, and the commit is
    not guarded).
    Also usable alone, to plan what a write would do without writing (``diff``)."""

    def __init__(self, store: ResourceStore, number: int = 0) -> None:
        self.store = store
        self.number = number  # 0 for the first attempt
        self.txn = store.transaction()
        self.revision: int | None = None
        self.routes_revision: int | None = None
        self._routes: list[Resource] = []
        # key -> the refusal to raise when it is gone: the Secrets and Configs read
        self.referenced: dict[str, MissingReference] = {}

    async def live(self, name: str, namespace: str, kind: str = "Service") -> Resource:
        """The Service (or Route) as stored now; NotFound when there is none."""
        live = await self.store.get(kind, name, namespace)
        if live is None:
            raise NotFound(f'{kind.lower()} "{name}" not found in namespace {namespace}')
        return live

    async def services(self) -> list[Resource]:
        """Every stored Service; the commit is then guarded at the revision of this read
        (and at that of ``routes``' read: the routes are read too)."""
        result = await self.store.list("Service")
        self.revision = result.revision
        await self.routes()
        return result.items

    async def routes(self) -> list[Resource]:
        """Every stored Route; the commit is then guarded at the revision of this read."""
        result = await self.store.list("Route")
        self.routes_revision = result.revision
        self._routes = result.items
        return result.items

    async def holders(self) -> list[Resource]:
        """Every stored Service and Route: what holds published ports (both reads guard
        the commit)."""
        services = await self.services()
        return [*services, *self._routes]

    async def numbered(self, docs: Sequence[Resource],
                       leaving: Iterable[Resource] = ()) -> list[Resource]:
        """``docs`` (validated, of any kind) with every Service's ingress ports numbered
        and checked, with every Route's port, against the Services and Routes stored
        now, but ``leaving`` (those this write deletes); PortsRefused on a problem. When
        no document publishes a port, the documents as they are: nothing is read,
        nothing guarded."""
        if not any(changes_ports(doc, None) for doc in docs):
            return list(docs)
        holders = await self.holders()
        indexes = [i for i, doc in enumerate(docs) if doc.get("kind") in PORT_KINDS]
        gone = {owner(r) for r in leaving} - {owner(docs[i]) for i in indexes}
        staying = [s for s in holders if owner(s) not in gone]
        out = list(docs)
        for i, doc in zip(indexes, _planned([docs[i] for i in indexes], staying)):
            out[i] = doc
        return out

    async def checked(self, desired: Resource, live: Resource | None) -> Resource:
        """``desired`` (a Service or a Route), ready to replace ``live`` (None: to be
        created): its references checked (``references``); when it publishes ports
        ``live`` does not hold, numbered and checked, and the commit guarded
        (AlreadyExists when one to be created is there already)."""
        await self.references([desired])
        if not changes_ports(desired, live):
            return desired
        holders = await self.holders()
        if live is None and any(owner(s) == owner(desired) for s in holders):
            raise AlreadyExists(service_ref(desired))
        return _planned([desired], holders)[0]

    async def references(self, written: Sequence[Resource]) -> None:
        """Check that every Service among ``written`` (the documents this write puts, of
        any kind) refers only to Secrets and Configs that exist in its namespace:
        MissingReference for the first that does not. One that ``written`` holds too is
        created or updated by the same commit; every other is read here, and the commit
        compares that it still exists."""
        writing = {identity(doc) for doc in written if doc.get("kind") in FIELDS}
        wanted: dict[str, MissingReference] = {}
        for doc in written:
            if doc.get("kind") != "Service":
                continue
            name, namespace = doc["metadata"]["name"], doc["metadata"].get("namespace") or "default"
            for kind, source in sorted(referenced((doc.get("spec") or {}).get("template"))):
                if (kind, namespace, source) not in writing:
                    key = self.store.keys.spec(kind, source, namespace)
                    wanted.setdefault(key, MissingReference(name, kind, source, namespace))
        wanted = {k: v for k, v in wanted.items() if k not in self.referenced}
        if not wanted:
            return
        found, _ = await self.store.etcd.get_many(list(wanted))
        for key, refusal in wanted.items():
            if key not in found:
                raise refusal
        self.referenced.update(wanted)
        self.txn.add([Compare(key, "version", ">", 0) for key in wanted])

    async def still_referable(self) -> None:
        """After a failed commit: MissingReference when a Secret or Config it compared was
        removed meanwhile (the write is refused, not retried); else nothing."""
        if not self.referenced:
            return
        found, _ = await self.store.etcd.get_many(list(self.referenced))
        for key, refusal in self.referenced.items():
            if key not in found:
                raise refusal


def _planned(docs: Sequence[Resource], live: Sequence[Resource]) -> list[Resource]:
    filled, problems = plan_ports(docs, live)
    if problems:
        raise PortsRefused(problems)
    return filled


@dataclass(frozen=True)
class Written(Generic[T]):
    """What a write's plan returned, and the revision of its commit (0: nothing written)."""

    value: T
    revision: int


async def write_services(store: ResourceStore, plan: Callable[[Attempt], Awaitable[T]], *,
                         what: str, fence: Compare | None = None) -> Written[T]:
    """Run ``plan`` on a fresh ``Attempt`` and commit what it put in the transaction;
    when a guarded commit fails, plan again (``what`` says what for KeptChanging:
    "services kept changing while <what>")."""
    for number in range(ATTEMPTS):
        attempt = Attempt(store, number)
        value = await plan(attempt)
        revision = await _commit(attempt, fence, what)
        if revision is not None:
            return Written(value, revision)
        await asyncio.sleep(BACKOFF * 2 ** number)
    raise KeptChanging(f"services kept changing while {what}")


async def _commit(attempt: Attempt, fence: Compare | None, what: str) -> int | None:
    """The commit's revision (0: nothing to write), or None: the guarded commit failed."""
    txn, store = attempt.txn, attempt.store
    if not txn.ops:
        return 0
    if attempt.revision is None and attempt.routes_revision is None and fence is None:
        try:
            return await txn.commit()  # Conflict names what changed since it was read
        except (Conflict, NotFound):
            await attempt.still_referable()
            raise
    compares = [*([fence] if fence is not None else []), *txn.compares]
    if attempt.revision is not None:
        compares.append(Compare(store.keys.kind_prefix("Service"), "mod", "<",
                                attempt.revision + 1, prefix=True))
    if attempt.routes_revision is not None:
        compares.append(Compare(store.keys.kind_prefix("Route"), "mod", "<",
                                attempt.routes_revision + 1, prefix=True))
    res = await store.etcd.txn(compares, txn.ops)
    if res.succeeded:
        return res.revision
    await attempt.still_referable()
    if attempt.revision is None and attempt.routes_revision is None:
        raise Conflict(f"the service changed, or leadership was lost, while {what}")
    return None


# -- the writes the commands and the rollout controller make ----------------------------

async def create_service(store: ResourceStore, doc: Resource) -> Resource:
    """Create a Service (``doc`` validated); AlreadyExists when one has its name."""
    async def plan(attempt: Attempt) -> Resource:
        return attempt.txn.create(await attempt.checked(doc, None))

    return (await write_services(store, plan, what="creating the service")).value


async def update_service(store: ResourceStore, name: str, namespace: str,
                         change: Callable[[Resource], Resource]) -> bool:
    """Read the Service, ``change`` it (given it without its status; validating is the
    change's), merge the result over what was read (``service_writes.merge``) and write
    it when anything changed. False: nothing to change, nothing written."""
    async def plan(attempt: Attempt) -> bool:
        live = await attempt.live(name, namespace)
        desired = await attempt.checked(change(without_status(live)), live)
        merged = merge(live, desired)
        if merged.changed:
            attempt.txn.update(without_status(merged.new))
        return merged.changed

    return (await write_services(store, plan, what=f"updating service {name}")).value


async def replace_service(store: ResourceStore, name: str, namespace: str,
                          change: Callable[[Resource], Resource], *, what: str,
                          read: Resource | None = None,
                          fence: Compare | None = None) -> Written[Resource]:
    """Put ``change(live)`` in place of the Service, as it is (no merge: the change says
    everything, as a rollback or a rollout annotation does; it is given, and writes,
    the Service without its status).
    ``read``: the Service as the caller read it (a controller's cache), the one the write
    compares; a retry finds it changed with Conflict. Else it is read here, afresh on
    each attempt."""
    async def plan(attempt: Attempt) -> Resource:
        live = read if read is not None and attempt.number == 0 \
            else await attempt.live(name, namespace)
        if read is not None and _version(live) != _version(read):
            raise Conflict(f"service {name} changed while {what}")
        new = await attempt.checked(without_status(change(without_status(live))), live)
        attempt.txn.update(new)
        return new

    return await write_services(store, plan, what=what, fence=fence)


async def roll_back_service(store: ResourceStore, live: Resource, reason: str, *,
                            keep_current: bool = True,
                            fence: Compare | None = None) -> Written[Resource]:
    """Roll back the Service as read (``live``) to its previous spec
    (``service_writes.rolled_back``; ValueError when it has none)."""
    meta = live["metadata"]
    return await replace_service(
        store, meta["name"], meta.get("namespace") or "default",
        lambda current: rolled_back(current, reason, keep_current=keep_current),
        what=f"rolling back service {meta['name']}", read=live, fence=fence)


async def update_route(store: ResourceStore, name: str, namespace: str,
                       change: Callable[[Resource], Resource]) -> Resource:
    """Read the Route, ``change`` it (validating is the change's), merge the result over
    what was read and write it when anything changed, comparing what was read; a port
    or protocol it changes is checked against every Service and Route (PortsRefused).
    The Route as stored after the write."""
    async def plan(attempt: Attempt) -> Resource:
        live = await attempt.live(name, namespace, "Route")
        merged = merge(live, await attempt.checked(change(live), live))
        if merged.changed:
            attempt.txn.update(merged.new)
        return merged.new

    return (await write_services(store, plan, what=f"updating route {name}")).value


def _version(resource: Resource) -> Any:
    return (resource.get("metadata") or {}).get("resourceVersion")
