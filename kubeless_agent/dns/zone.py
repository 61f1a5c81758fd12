"""The ``kubeless.`` zone, built from endpoints documents and ready nodes (pure).

Names (NAMESPACE and SERVICE are DNS labels, so none of these collide):

    SERVICE.NAMESPACE.kubeless                 A: where the service answers through
                                               the mesh: every ready node's address
                                               when it publishes an ingress tcp port,
                                               else the addresses of its healthy
                                               endpoints
    tasks.SERVICE.NAMESPACE.kubeless          A: the addresses of its healthy endpoints
    TASK-ID.tasks.SERVICE.NAMESPACE.kubeless  A: that endpoint's node address
    _PORT._PROTO.SERVICE.NAMESPACE.kubeless   SRV per healthy endpoint: its host port
                                               and TASK-ID.tasks... as target (with the
                                               A record in the additional section);
                                               PORT is the port's name or its target
                                               number, both answer (_http or _80)
    ROUTE.NAMESPACE.kubeless                   A: every ready node's address (a Route's
                                               port is published on every node), from
                                               its document (endpoints/_routes/...)
    kubeless                                   SOA

A Route and a Service of one name share the name: its A records are the union.

Unknown names are NXDOMAIN; a name that exists without records of the asked
type (or an empty non-terminal like NAMESPACE.kubeless) is NODATA; both
carry the SOA for negative caching. Names outside the zone are REFUSED here
(the server forwards them upstream before ever asking the zone, see
``forward``). Every TTL is ``ttl`` (5 s).

``build_zone`` makes a ``Zone`` (name -> type -> records) once per change;
``answer`` turns one query into its reply with no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dnslib import QTYPE, RCODE, RR, SOA, SRV, A, DNSLabel, DNSRecord

ORIGIN = "kubeless"
TTL = 5
RRs = list[RR]


@dataclass
class Zone:
    """Every name of the zone with its records by query type; unlisted names do not exist."""

    names: dict[str, dict[int, RRs]] = field(default_factory=dict)
    extra: dict[str, RRs] = field(default_factory=dict)  # SRV name -> A records of targets
    serial: int = 1
    ttl: int = TTL

    def soa(self) -> RR:
        return RR(f"{ORIGIN}.", QTYPE.SOA, ttl=self.ttl,
                  rdata=SOA(f"ns.{ORIGIN}.", f"hostmaster.{ORIGIN}.",
                            (self.serial, 60, 10, 600, self.ttl)))

    def add(self, name: str, rr: RR | None = None) -> None:
        """Add a record (or just the name) and every parent up to the origin."""
        records = self.names.setdefault(name, {})
        if rr is not None:
            records.setdefault(rr.rtype, []).append(rr)
        parent = name.partition(".")[2]
        while parent and parent.endswith(ORIGIN) and parent not in self.names:
            self.names[parent] = {}
            parent = parent.partition(".")[2]


def _a(name: str, address: str, ttl: int) -> RR:
    return RR(f"{name}.", QTYPE.A, ttl=ttl, rdata=A(address))


def _is_ipv4(address: str) -> bool:
    parts = address.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


def _has_ingress(doc: Mapping[str, Any]) -> bool:
    return any(isinstance(p, dict) and (p.get("mode") or "ingress") == "ingress"
               and (p.get("protocol") or "tcp") == "tcp" and p.get("published")
               for p in doc.get("ports") or [])


def _endpoints(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [ep for ep in doc.get("endpoints") or []
            if isinstance(ep, dict) and _is_ipv4(str(ep.get("address") or ""))
            and str(ep.get("task") or "").isalnum()]


def service_addresses(doc: Mapping[str, Any], ready: Mapping[str, str]) -> list[str]:
    """The A records of ``SERVICE.NAMESPACE.kubeless`` (sorted, unique)."""
    if _has_ingress(doc) and ready:
        found = set(ready.values())
    else:
        found = {str(ep["address"]) for ep in _endpoints(doc)}
    return sorted(a for a in found if _is_ipv4(a))


def _port_labels(doc: Mapping[str, Any]) -> dict[tuple[int, str], list[str]]:
    """(target, protocol) -> the labels an SRV name may use for it (name, number)."""
    labels: dict[tuple[int, str], list[str]] = {}
    for p in doc.get("ports") or []:
        if not isinstance(p, dict) or p.get("target") is None:
            continue
        key = (int(p["target"]), str(p.get("protocol") or "tcp"))
        names = labels.setdefault(key, [])
        for label in (str(p.get("name") or "").lower(), str(key[0])):
            if label and label not in names:
                names.append(label)
    return labels


def _add_service(zone: Zone, doc: Mapping[str, Any], ready: Mapping[str, str]) -> None:
    base = f"{doc['service']}.{doc['namespace']}.{ORIGIN}".lower()
    zone.add(base)
    for address in service_addresses(doc, ready):
        zone.add(base, _a(base, address, zone.ttl))
    endpoints = _endpoints(doc)
    tasks = f"tasks.{base}"
    zone.add(tasks)
    for address in sorted({str(ep["address"]) for ep in endpoints}):
        zone.add(tasks, _a(tasks, address, zone.ttl))
    for ep in endpoints:
        zone.add(f"{str(ep['task']).lower()}.{tasks}",
                 _a(f"{str(ep['task']).lower()}.{tasks}", str(ep["address"]), zone.ttl))
    for (target, proto), labels in _port_labels(doc).items():
        records, extra = _srv_records(endpoints, target, proto, tasks, zone.ttl)
        for label in labels:
            name = f"_{label}._{proto}.{base}"
            zone.add(name)
            for rr in records:
                zone.add(name, RR(f"{name}.", QTYPE.SRV, ttl=zone.ttl, rdata=rr))
            zone.extra[name] = extra


def _srv_records(endpoints: list[dict[str, Any]], target: int, proto: str, tasks: str,
                 ttl: int) -> tuple[list[SRV], RRs]:
    records, extra = [], []
    for ep in endpoints:
        for p in ep.get("ports") or []:
            if isinstance(p, dict) and p.get("target") == target and \
                    (p.get("protocol") or "tcp") == proto and p.get("published"):
                host = f"{str(ep['task']).lower()}.{tasks}"
                records.append(SRV(0, 10, int(p["published"]), f"{host}."))
                extra.append(_a(host, str(ep["address"]), ttl))
                break
    return records, extra


def _is_route(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == "Route"


def _add_route(zone: Zone, doc: Mapping[str, Any], ready: Mapping[str, str]) -> None:
    """``ROUTE.NAMESPACE.kubeless``: every ready node (those a service of the same name
    put there already are not repeated)."""
    base = f"{doc['route']}.{doc['namespace']}.{ORIGIN}".lower()
    zone.add(base)
    have = {str(rr.rdata) for rr in zone.names[base].get(QTYPE.A, [])}
    for address in sorted({a for a in ready.values() if _is_ipv4(a)} - have):
        zone.add(base, _a(base, address, zone.ttl))


def build_zone(docs: Iterable[Any], ready: Mapping[str, str], *, serial: int = 1,
               ttl: int = TTL) -> Zone:
    """The zone of every endpoints document (services', then Routes');
    ``ready``: node id -> address."""
    zone = Zone(serial=serial, ttl=ttl)
    zone.add(ORIGIN, zone.soa())
    every = list(docs)
    for doc in every:
        if isinstance(doc, dict) and not _is_route(doc) and doc.get("service") \
                and doc.get("namespace"):
            _add_service(zone, doc, ready)
    for doc in every:
        if _is_route(doc) and _is_label(doc.get("route")) and _is_label(doc.get("namespace")):
            _add_route(zone, doc, ready)
    return zone


def _is_label(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and "." not in value and len(value) < 64


def answer(query: DNSRecord, zone: Zone) -> DNSRecord:
    """The reply to one query (the first question only, as every resolver asks)."""
    reply = query.reply(ra=0, aa=1)
    if query.header.opcode != 0 or not query.questions:
        reply.header.rcode = RCODE.NOTIMP if query.header.opcode != 0 else RCODE.FORMERR
        return reply
    q = query.q
    name = str(DNSLabel(q.qname)).rstrip(".").lower()
    if name != ORIGIN and not name.endswith("." + ORIGIN):
        reply.header.aa = 0
        reply.header.rcode = RCODE.REFUSED
        return reply
    records = zone.names.get(name)
    if records is None:
        reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(zone.soa())
        return reply
    wanted = [QTYPE.A, QTYPE.SRV, QTYPE.SOA] if q.qtype == QTYPE.ANY else [q.qtype]
    found = [rr for t in wanted for rr in records.get(t, [])]
    for rr in found:
        reply.add_answer(rr)
    if not found:
        reply.add_auth(zone.soa())
    elif q.qtype in (QTYPE.SRV, QTYPE.ANY):
        for rr in zone.extra.get(name, []):
            reply.add_ar(rr)
    return reply


def result_of(reply: DNSRecord) -> str:
    """How a reply ended, for metrics: noerror, nodata, nxdomain, refused, ..."""
    rcode = reply.header.rcode
    if rcode == RCODE.NOERROR:
        return "noerror" if reply.rr else "nodata"
    return str(RCODE.get(rcode)).lower()
