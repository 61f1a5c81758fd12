"""What one node forwards, from endpoints documents: each published port, its backend
groups and their weights (pure: no I/O, no event loop). Both data paths read it: the
userspace relay (``relay``) and the kernel path (nftables).

Two kinds of document publish ports:

- a Service's endpoints (``endpoints/<ns>/<service>``, docs/MODEL.md): each ingress
  port with a published number is one ``Published`` with one ``Group`` (the
  service, weight 1) whose backends are its tasks' host ports for the target;
- a Route's (``endpoints/_routes/<ns>/<route>``, written by the endpoints
  controller): one ``Published`` whose groups are its backends, each a service
  with a weight and the host ports its healthy tasks publish for the backend port:

      {"kind": "Route", "namespace": "default", "route": "shop", "routeUid": "...",
       "port": 8080, "protocol": "tcp",
       "externalTrafficPolicy": "Cluster", "proxyProtocol": "",
       "backends": [{"service": "shop-a", "port": 80, "weight": 90,
                     "endpoints": [{"task": "...", "node": "...", "address": "10.0.0.2",
                                    "hostPort": 32768}]}]}

A service's port entry may carry ``externalTrafficPolicy`` (``Local``: only the
receiving node's own endpoints, so the backend sees the client's address) and
``proxyProtocol`` (``v1``: the userspace path sends a PROXY protocol v1 header).

``wanted_published(docs)`` keys every port by (number, protocol); two owners of one
key (a race the write path refuses, or a stale document): the first by kind, then
namespace/name wins, the others are conflicts. ``shares`` says which fraction of new
connections each group gets: a group with weight 0 or no backend gets none, and its
share goes to the others. ``endpoint_buckets`` spreads a number of buckets over the
endpoints in proportion (what nftables' ``numgen`` picks among).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from kubeless.api.routes import live_shares

from kubeless_agent.mesh.table import Backend, backends_for

PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True)
class Group:
    """One backend service of a published port: its weight and healthy backends."""

    service: str  # "<namespace>/<name>"
    weight: int
    backends: tuple[Backend, ...] = ()


@dataclass(frozen=True)
class Published:
    """One published port on every node, and where its new connections go."""

    kind: str  # "Service" or "Route": who publishes it
    namespace: str
    name: str
    port: int
    protocol: str  # "tcp" or "udp"
    label: str  # a service port's name, else its target; a route's name (metrics)
    groups: tuple[Group, ...] = ()
    local_only: bool = False  # externalTrafficPolicy: Local
    proxy_protocol: bool = False  # PROXY protocol v1 header (userspace path only)

    @property
    def key(self) -> tuple[int, str]:
        return self.port, self.protocol

    @property
    def owner(self) -> str:
        return f"{self.kind.lower()} {self.namespace}/{self.name}"

    def serving(self, node: str) -> Published:
        """What ``node`` forwards: with ``local_only``, only its own backends."""
        if not self.local_only:
            return self
        return replace(self, groups=tuple(
            replace(g, backends=tuple(b for b in g.backends if b.node == node))
            for g in self.groups))


def _port(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 65536 else None


def _weight(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _service_published(doc: Mapping[str, Any]) -> list[Published]:
    ns, svc = str(doc.get("namespace") or ""), str(doc.get("service") or "")
    if not ns or not svc:
        return []
    out = []
    for p in doc.get("ports") or []:
        if not isinstance(p, dict) or (p.get("mode") or "ingress") != "ingress":
            continue
        protocol = str(p.get("protocol") or "tcp")
        published, target = _port(p.get("published")), _port(p.get("target"))
        if published is None or target is None or protocol not in PROTOCOLS:
            continue
        group = Group(f"{ns}/{svc}", 1, backends_for(doc, target, protocol))
        out.append(Published("Service", ns, svc, published, protocol,
                             str(p.get("name") or target), (group,),
                             p.get("externalTrafficPolicy") == "Local",
                             p.get("proxyProtocol") == "v1"))
    return out


def _route_backends(ns: str, entry: Mapping[str, Any]) -> Group | None:
    service = str(entry.get("service") or "")
    if not service:
        return None
    found = []
    for ep in entry.get("endpoints") or []:
        if not isinstance(ep, dict) or not ep.get("address"):
            continue
        host_port = _port(ep.get("hostPort"))
        if host_port is not None:
            found.append(Backend(str(ep["address"]), host_port, str(ep.get("task") or ""),
                                 str(ep.get("node") or "")))
    return Group(f"{ns}/{service}", _weight(entry.get("weight")), tuple(found))


def _route_published(doc: Mapping[str, Any]) -> list[Published]:
    ns, name = str(doc.get("namespace") or ""), str(doc.get("route") or "")
    port, protocol = _port(doc.get("port")), str(doc.get("protocol") or "tcp")
    if not ns or not name or port is None or protocol not in PROTOCOLS:
        return []
    groups = [g for e in doc.get("backends") or [] if isinstance(e, dict)
              for g in [_route_backends(ns, e)] if g is not None]
    return [Published("Route", ns, name, port, protocol, name, tuple(groups),
                      doc.get("externalTrafficPolicy") == "Local",
                      doc.get("proxyProtocol") == "v1")]


def published_of(doc: Any) -> list[Published]:
    """The ports one endpoints document publishes (nothing for a malformed one)."""
    if not isinstance(doc, dict):
        return []
    if doc.get("kind") == "Route":
        return _route_published(doc)
    return _service_published(doc)


def wanted_published(docs: Iterable[Any]
                     ) -> tuple[dict[tuple[int, str], Published], list[Published]]:
    """Every published port by (number, protocol), and the ones that lost it to another."""
    wanted: dict[tuple[int, str], Published] = {}
    conflicts: list[Published] = []
    every = [p for doc in docs for p in published_of(doc)]
    for pub in sorted(every, key=lambda p: (p.kind != "Service", p.namespace, p.name, p.port)):
        if pub.key in wanted:
            conflicts.append(pub)
        else:
            wanted[pub.key] = pub
    return wanted, conflicts


def shares(groups: Iterable[Group]) -> list[tuple[Group, float]]:
    """Each group that gets new connections, with its fraction of them (summing to 1):
    the one rule, ``kubeless.api.routes.live_shares``, that ``get routes`` shows too."""
    every = list(groups)
    fractions = live_shares([(g.weight, bool(g.backends)) for g in every])
    return [(g, f) for g, f in zip(every, fractions) if f > 0]


def endpoint_buckets(groups: Iterable[Group], buckets: int = 1000) -> list[tuple[Backend, int]]:
    """``buckets`` spread over every backend in proportion to its group's share, split
    evenly inside a group (largest remainders get the leftovers; a backend may get 0)."""
    exact: list[tuple[Backend, float]] = []
    for group, share in shares(groups):
        each = share * buckets / len(group.backends)
        exact.extend((b, each) for b in group.backends)
    counts = [int(x) for _, x in exact]
    leftover = buckets - sum(counts)
    order = sorted(range(len(exact)), key=lambda i: exact[i][1] - counts[i], reverse=True)
    for i in order[:leftover]:
        counts[i] += 1
    return [(b, n) for (b, _), n in zip(exact, counts)]
