"""The routing table of the mesh, from endpoints documents (pure: no I/O, no event loop).

An endpoints document (``endpoints/<ns>/<service>``, written by the
endpoints controller, see docs/MODEL.md) says which ports a service
publishes and where its healthy tasks answer. From every document this
module derives:

- ``routes_of(doc)``: one ``Route`` per ingress tcp port with a published
  number: what the mesh listens on and, for each endpoint, the
  ``Backend`` (node address, host port of the task's target port);
- ``wanted_routes(docs)``: every route of the cluster by published port
  (two services claiming one port: the first by namespace/name wins, the
  other is reported as a conflict);
- ``listener_changes(current, wanted)``: which listeners to open and close;
- ``attempt_order(backends, cursor, failed_until, now)``: round robin with
  a short memory of failures (a backend that just refused goes last).

The asyncio side (``kubeless_agent.mesh.mesh`` and ``relay``) only applies
what these functions decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Backend:
    """Where one task answers for one port: its node's address and the host port."""

    address: str
    port: int
    task: str = ""
    node: str = ""


@dataclass(frozen=True)
class Route:
    """One published ingress port of a service and the backends behind it."""

    namespace: str
    service: str
    published: int
    target: int
    name: str
    backends: tuple[Backend, ...] = ()

    @property
    def label(self) -> str:
        """The port as metrics name it: its name, else its target number."""
        return self.name or str(self.target)

    @property
    def listener(self) -> tuple[str, str, int]:
        """What identifies a listener: the service and the published port (not backends)."""
        return (f"{self.namespace}/{self.service}", self.label, self.published)


def _int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 65536 else None


def backends_for(doc: Mapping[str, Any], target: int, protocol: str = "tcp") -> tuple[Backend, ...]:
    """The backends of one target port, in the document's order (sorted by task id)."""
    found = []
    for ep in doc.get("endpoints") or []:
        if not isinstance(ep, dict) or not ep.get("address"):
            continue
        for p in ep.get("ports") or []:
            if not isinstance(p, dict) or _int(p.get("target")) != target:
                continue
            if (p.get("protocol") or "tcp") != protocol:
                continue
            host_port = _int(p.get("published"))
            if host_port is not None:
                found.append(Backend(str(ep["address"]), host_port, str(ep.get("task") or ""),
                                     str(ep.get("node") or "")))
                break
    return tuple(found)


def routes_of(doc: Any) -> list[Route]:
    """The ingress tcp routes of one endpoints document (nothing for a malformed one)."""
    if not isinstance(doc, dict):
        return []
    ns, svc = str(doc.get("namespace") or ""), str(doc.get("service") or "")
    routes = []
    for p in doc.get("ports") or []:
        if not isinstance(p, dict):
            continue
        if (p.get("mode") or "ingress") != "ingress" or (p.get("protocol") or "tcp") != "tcp":
            continue
        published, target = _int(p.get("published")), _int(p.get("target"))
        if published is None or target is None or not ns or not svc:
            continue
        routes.append(Route(ns, svc, published, target, str(p.get("name") or ""),
                            backends_for(doc, target)))
    return routes


def wanted_routes(docs: Iterable[Any]) -> tuple[dict[int, Route], list[Route]]:
    """Every route by published port, and the routes that lost a port to another service."""
    wanted: dict[int, Route] = {}
    conflicts: list[Route] = []
    routes = [r for doc in docs for r in routes_of(doc)]
    for route in sorted(routes, key=lambda r: (r.namespace, r.service, r.published)):
        if route.published in wanted:
            conflicts.append(route)
        else:
            wanted[route.published] = route
    return wanted, conflicts


def listener_changes(current: Mapping[int, Route],
                     wanted: Mapping[int, Route]) -> tuple[list[int], list[int]]:
    """(ports to close, ports to open): a port whose service or target changed moves."""
    close = sorted(p for p, r in current.items()
                   if p not in wanted or wanted[p].listener != r.listener
                   or wanted[p].target != r.target)
    open_ = sorted(p for p in wanted if p not in current or p in close)
    return close, open_


def attempt_order(backends: tuple[Backend, ...], cursor: int,
                  failed_until: Mapping[Backend, float], now: float) -> list[Backend]:
    """Round robin from ``cursor``; backends that failed recently go last (still tried)."""
    if not backends:
        return []
    n = len(backends)
    rotated = [backends[(cursor + i) % n] for i in range(n)]
    fresh = [b for b in rotated if failed_until.get(b, 0.0) <= now]
    stale = [b for b in rotated if failed_until.get(b, 0.0) > now]
    return fresh + stale
