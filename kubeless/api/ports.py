"""Published ports across services and routes: allocation and conflicts (pure; the
store's write path commits).

A Service's ``spec.ports`` entries (validated, so ``protocol`` and ``mode``
are filled) hold a published port cluster-wide when they carry a number:

- an ingress port holds its number on every node (the routing mesh listens
  there), so no other service may publish that number and protocol, in
  any mode;
- a host port holds its number only on the nodes that run the service's
  tasks: two services may both publish it in host mode (the scheduler
  keeps their tasks apart), but not one in host and one in ingress mode.

A Route's ``spec.port`` holds its number and protocol on every node, as an
ingress port does: no Service may publish it (in any mode) and no other Route
may hold it, and a Route may not take a number a Service publishes.

tcp and udp are separate spaces. An ingress port declared without a number
gets one from ``DYNAMIC_RANGE`` (30000-32767, as Swarm), the lowest free:
it is filled into the stored spec, as Kubernetes fills a NodePort, and a
later apply of a document still without a number keeps the live one
(``carry_over``), so re-applying the same file changes nothing. A host
port without a number stays without one (Docker picks a port per task).

``plan_ports`` is what apply, ``service create/update`` and ``route weight``
run, on the documents they are about to write and every service and route
stored now; the caller commits the result in a transaction that fails if
any service or route changed since it read them, and plans again.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Resource = dict[str, Any]
PortKey = tuple[int, str]  # (published, protocol)

DYNAMIC_RANGE = (30000, 32767)  # inclusive, as Swarm's ingress port allocator


@dataclass(frozen=True)
class Holding:
    """One published port of one service or route."""

    owner: str  # "service <ns>/<name>" or "route <ns>/<name>" (``owner``)
    published: int
    protocol: str
    mode: str

    @property
    def key(self) -> PortKey:
        return self.published, self.protocol

    def clashes(self, other: Holding) -> bool:
        """Two holdings of different services on one number and protocol clash unless
        both are host mode (per node; the scheduler separates those tasks)."""
        return (self.key == other.key and self.owner != other.owner
                and not (self.mode == "host" and other.mode == "host"))


def service_ref(service: Resource) -> str:
    meta = service.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name', '?')}"


def owner(resource: Resource) -> str:
    """``service default/web`` or ``route default/shop``: who holds ports (messages say it)."""
    return f"{str(resource.get('kind') or 'Service').lower()} {service_ref(resource)}"


def _is_route(resource: Resource) -> bool:
    return resource.get("kind") == "Route"


def _ports(service: Resource) -> list[Resource]:
    if _is_route(service):
        return []  # a Route holds its one port (``holdings``); it numbers nothing
    ports = (service.get("spec") or {}).get("ports") or []
    return [p for p in ports if isinstance(p, dict)]


def _mode(port: Resource) -> str:
    return str(port.get("mode") or "ingress")


def _protocol(port: Resource) -> str:
    return str(port.get("protocol") or "tcp")


def holdings(service: Resource) -> list[Holding]:
    """The published ports a service (or route) holds (ports without a number hold
    nothing; a route holds its port as an ingress port does)."""
    ref = owner(service)
    if _is_route(service):
        spec = service.get("spec") or {}
        number = spec.get("port")
        return [Holding(ref, number, _protocol(spec), "ingress")] if isinstance(number, int) \
            else []
    return [Holding(ref, int(p["published"]), _protocol(p), _mode(p))
            for p in _ports(service) if p.get("published")]


def repeated_ports(ports: Sequence[Any]) -> list[tuple[int, int, PortKey]]:
    """(index, index of its first use, (number, protocol)) for every entry of a
    ``spec.ports`` list that publishes a number and protocol an earlier entry does."""
    first: dict[PortKey, int] = {}
    out = []
    for index, port in enumerate(ports):
        if not isinstance(port, dict) or not isinstance(port.get("published"), int):
            continue
        key = (port["published"], _protocol(port))
        if key in first:
            out.append((index, first[key], key))
        else:
            first[key] = index
    return out


def own_duplicates(service: Resource) -> list[str]:
    """Messages for a number and protocol a service publishes twice."""
    ref = owner(service)
    return [f"{ref}: published port {number}/{proto} is declared twice"
            for _, _, (number, proto) in repeated_ports(_ports(service))]


def conflicts(service: Resource, others: Iterable[Resource]) -> list[str]:
    """One message per published port of ``service`` (or route) that another service or
    route already holds."""
    taken: dict[PortKey, list[Holding]] = {}
    ref = owner(service)
    for other in others:
        if owner(other) == ref:
            continue
        for h in holdings(other):
            taken.setdefault(h.key, []).append(h)
    out = []
    for mine in holdings(service):
        holder = next((h for h in taken.get(mine.key, ()) if mine.clashes(h)), None)
        if holder is not None:
            out.append(f"{ref}: published port {mine.published}/{mine.protocol} "
                       f"({mine.mode}) is already held by {holder.owner} "
                       f"({holder.mode})")
    return out


def _match_key(port: Resource, with_name: bool) -> tuple[Any, ...]:
    base = (port.get("target"), _protocol(port), _mode(port))
    return (*base, port.get("name") or "") if with_name else base


def carry_over(desired: Resource, live: Resource | None) -> Resource:
    """``desired`` with each ingress port lacking a number given the number its live
    counterpart holds (same target, protocol and mode; same name first), unless
    ``desired`` declares that number explicitly elsewhere."""
    out = copy.deepcopy(desired)
    if live is None:
        return out
    declared = {(int(p["published"]), _protocol(p)) for p in _ports(out) if p.get("published")}
    unclaimed = [p for p in _ports(live) if _mode(p) == "ingress" and p.get("published")
                 and (int(p["published"]), _protocol(p)) not in declared]
    for port in _ports(out):
        if port.get("published") or _mode(port) != "ingress":
            continue
        for with_name in (True, False):
            found = next((p for p in unclaimed
                          if _match_key(p, with_name) == _match_key(port, with_name)), None)
            if found is not None:
                port["published"] = found["published"]
                unclaimed.remove(found)
                break
    return out


def needs_number(service: Resource) -> bool:
    return any(_mode(p) == "ingress" and not p.get("published") for p in _ports(service))


def allocate(service: Resource, taken: set[PortKey],
             span: tuple[int, int] = DYNAMIC_RANGE) -> tuple[Resource, list[str]]:
    """``service`` with its ingress ports lacking a number given the lowest free one of
    ``span`` (``taken`` gains them); messages when the range is exhausted."""
    out = copy.deepcopy(service)
    problems = []
    for port in _ports(out):
        if port.get("published") or _mode(port) != "ingress":
            continue
        proto = _protocol(port)
        number = next((n for n in range(span[0], span[1] + 1) if (n, proto) not in taken), None)
        if number is None:
            problems.append(f"{owner(out)}: no free {proto} port left in "
                            f"{span[0]}-{span[1]} for target {port.get('target')}")
            continue
        port["published"] = number
        taken.add((number, proto))
    return out, problems


def plan_ports(docs: Sequence[Resource], live: Sequence[Resource],
               span: tuple[int, int] = DYNAMIC_RANGE) -> tuple[list[Resource], list[str]]:
    """(the documents with every Service's ingress port numbered, problems).

    ``docs`` are the validated Services and Routes about to be written; ``live`` is
    every Service and Route stored now that stays (those being deleted left out). A
    document
    keeps the numbers its live version holds; new ones are allocated; each
    document is checked against the live services it does not replace and
    against the other documents (each clash reported once).
    """
    live_by_ref = {owner(s): s for s in live}
    filled = [carry_over(d, live_by_ref.get(owner(d))) for d in docs]
    replaced = {owner(d) for d in filled}
    staying = [s for s in live if owner(s) not in replaced]
    taken = {h.key for s in [*staying, *filled] for h in holdings(s)}
    problems: list[str] = []
    out = []
    for doc in filled:
        if needs_number(doc):
            doc, exhausted = allocate(doc, taken, span)
            problems += exhausted
        out.append(doc)
    for i, doc in enumerate(out):
        problems += own_duplicates(doc)
        problems += conflicts(doc, [*staying, *out[:i]])
    return out, problems


def ports_text(ports: Sequence[Resource] | None) -> str:
    """``*:8080->80/tcp`` per port, as ``docker service ls`` shows them (the CLI's tables
    and the dashboard)."""
    parts = []
    for p in ports or []:
        published = p.get("published")
        where = f"*:{published}->" if published else ""
        parts.append(f"{where}{p.get('target')}/{p.get('protocol', 'tcp')}")
    return ",".join(parts)
