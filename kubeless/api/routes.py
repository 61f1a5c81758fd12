"""Routes: one published port whose new connections are split between services by weight.

What a Route means, in one place (pure: plain dicts in, plain data out):

- ``problems``: the rules of a Route's spec its CRD schema cannot say (each backend
  service named once, not every weight 0, a PROXY protocol header only on tcp);
  validation.py reports them with their paths;
- ``exposed_ports``: a backend service need not declare the backend port: the
  controllers treat the service as if its ``ports`` also held an ingress port for
  each Route backend port it lacks (no published number: Docker picks a host port
  per task), so its tasks publish it, as Swarm's ``--publish-add`` would;
- ``live_shares``: which fraction of new connections each backend gets: a backend
  with weight 0 or no healthy endpoint gets none, and its share goes to the others
  (the agents' mesh and ``kubeless get routes`` both say it with this rule);
- ``weights_of``/``parse_weights``/``with_weights``: reading and changing weights
  (``kubeless route weight``).

Which published numbers a Route holds against Services and other Routes is
``kubeless.api.ports``'; the Route's document for the data plane is the endpoints
controller's.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

Resource = dict[str, Any]
MAX_WEIGHT = 1000  # the CRD's maximum, repeated in messages


def route_spec(route: Resource) -> Resource:
    spec = route.get("spec")
    return spec if isinstance(spec, dict) else {}


def backends(route: Resource) -> list[Resource]:
    """The Route's backends that are mappings (validated ones all are)."""
    found = route_spec(route).get("backends")
    return [b for b in found if isinstance(b, dict)] if isinstance(found, list) else []


def protocol(route: Resource) -> str:
    return str(route_spec(route).get("protocol") or "tcp")


def problems(route: Resource) -> Iterator[tuple[list[str | int], str]]:
    """(path, message) for each rule of the Route's spec the schema cannot say."""
    seen: dict[str, int] = {}
    entries = backends(route)
    for index, backend in enumerate(entries):
        service = backend.get("service")
        if not isinstance(service, str):
            continue
        if service in seen:
            yield (["spec", "backends", index, "service"],
                   f"{service} is already a backend (spec.backends[{seen[service]}])")
        else:
            seen[service] = index
    weights = [b.get("weight", 1) for b in entries]
    if weights and all(isinstance(w, int) and w == 0 for w in weights):
        yield (["spec", "backends"], "every weight is 0: no backend would get traffic")
    if route_spec(route).get("proxyProtocol") == "v1" and protocol(route) != "tcp":
        yield (["spec", "proxyProtocol"], "v1 needs protocol tcp (a PROXY header opens a "
                                          "tcp stream)")


def routes_to(service: Resource, routes: Iterable[Resource]) -> list[Resource]:
    """The Routes (of the service's namespace) that name ``service`` as a backend."""
    meta = service.get("metadata") or {}
    ns, name = meta.get("namespace") or "default", meta.get("name")
    return [r for r in routes
            if ((r.get("metadata") or {}).get("namespace") or "default") == ns
            and any(b.get("service") == name for b in backends(r))]


def exposed_ports(service: Resource, routes: Iterable[Resource]) -> list[Resource]:
    """The service's ``spec.ports``, then ``{target, protocol, mode: ingress}`` for each
    backend port a Route of its namespace sends to it that no declared port has (by
    target and protocol), sorted, once each."""
    meta = service.get("metadata") or {}
    declared = [p for p in (service.get("spec") or {}).get("ports") or []
                if isinstance(p, dict)]
    have = {(p.get("target"), str(p.get("protocol") or "tcp")) for p in declared}
    wanted: set[tuple[int, str]] = set()
    for route in routes_to(service, routes):
        for backend in backends(route):
            port = backend.get("port")
            if backend.get("service") == meta.get("name") and isinstance(port, int):
                wanted.add((port, protocol(route)))
    added = [{"target": port, "protocol": proto, "mode": "ingress"}
             for port, proto in sorted(wanted) if (port, proto) not in have]
    return [*declared, *added]


def live_shares(entries: Sequence[tuple[int, bool]]) -> list[float]:
    """For each backend as (weight, whether it has a healthy endpoint), its fraction of
    new connections: 0 for weight 0 or no healthy endpoint, the others in proportion to
    their weights (summing to 1; all 0 when no backend is live)."""
    total = sum(max(w, 0) for w, live in entries if live)
    if total <= 0:
        return [0.0] * len(entries)
    return [max(w, 0) / total if live else 0.0 for w, live in entries]


def weights_of(route: Resource) -> dict[str, int]:
    """Backend service -> weight, in the Route's order."""
    return {str(b.get("service")): int(b.get("weight", 1)) for b in backends(route)}


def weights_text(route: Resource) -> str:
    """``shop-a=90,shop-b=10``."""
    return ",".join(f"{name}={weight}" for name, weight in weights_of(route).items())


def parse_weights(words: Sequence[str]) -> dict[str, int]:
    """``["shop-a=50", "shop-b=50"]`` as a mapping; ValueError (one line) otherwise."""
    out: dict[str, int] = {}
    for word in words:
        name, sep, number = word.partition("=")
        if not sep or not name:
            raise ValueError(f"{word!r} is not SERVICE=WEIGHT (e.g. shop-a=90)")
        if not number.isdigit() or int(number) > MAX_WEIGHT:
            raise ValueError(f"{word!r}: a weight is an integer from 0 to {MAX_WEIGHT}")
        if name in out:
            raise ValueError(f"{name} is given twice")
        out[name] = int(number)
    if not out:
        raise ValueError("give at least one SERVICE=WEIGHT")
    return out


def with_weights(route: Resource, weights: dict[str, int]) -> Resource:
    """The Route with the given backends' weights changed (the others kept); ValueError
    naming a service that is not one of its backends, or when every weight would be 0."""
    meta = route.get("metadata") or {}
    known = weights_of(route)
    unknown = [name for name in weights if name not in known]
    if unknown:
        raise ValueError(f"route {meta.get('name')} has no backend {unknown[0]} "
                         f"(its backends: {', '.join(known) or 'none'})")
    out = copy.deepcopy(route)
    for backend in backends(out):
        if backend.get("service") in weights:
            backend["weight"] = weights[str(backend["service"])]
    if all(w == 0 for w in weights_of(out).values()):
        raise ValueError(f"route {meta.get('name')}: every weight would be 0: "
                         "no backend would get traffic")
    return out


def live_split(route: Resource, document: Any) -> list[Resource]:
    """Per backend of ``route``: ``{service, port, weight, share, up, endpoints}`` as the
    nodes forward it now: from the Route's document (``endpoints/_routes/...``), the
    weights it carries and its healthy endpoints (``up``), each backend's ``share`` of
    new connections by ``live_shares``. A document of an earlier Route of that name, or
    none yet: the Route's weights, nothing up, no share."""
    meta = route.get("metadata") or {}
    current = isinstance(document, dict) and (
        not meta.get("uid") or document.get("routeUid") == meta.get("uid"))
    entries = [b for b in (document.get("backends") or []) if isinstance(b, dict)] \
        if current else []
    if not entries:
        entries = [{**b, "endpoints": []} for b in backends(route)]
    found = [[e for e in b.get("endpoints") or [] if isinstance(e, dict)] for b in entries]
    weights = [_int(b.get("weight", 1)) for b in entries]
    fractions = live_shares([(w, bool(eps)) for w, eps in zip(weights, found)])
    return [{"service": str(b.get("service")), "port": b.get("port"), "weight": w,
             "share": round(f, 4), "up": len(eps), "endpoints": eps}
            for b, w, f, eps in zip(entries, weights, fractions, found)]


def split_text(split: Sequence[Resource]) -> str:
    """``shop-a 90% (2 up), shop-b 10% (1 up)``."""
    return ", ".join(f"{b['service']} {b['share'] * 100:.0f}% ({b['up']} up)" for b in split)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
