"""The kernel path's ruleset, built from what a node forwards (pure: no I/O, no event loop).

``build_table(node_id, published, addresses)`` turns ``{(port, protocol):
Published}`` (``kubeless_agent.mesh.published``) into one nft JSON batch
(``nft -j -f -``) that replaces the node's own table ``inet
kubeless_<node id>`` whole: add it, delete it, add it again with every chain
and rule. The kernel applies a batch as one transaction, so packets see the old
table or the new one, never none; an agent started again (adoption) applies
the same batch over the table its predecessor left.

The table, as kube-proxy's nftables mode does it (its own table, DNAT at
``dstnat`` in prerouting and output, masquerade at ``srcnat`` on a mark):

    prerouting, output  nat, dstnat: traffic for the node's addresses (``fib
                        daddr type local`` when the mesh binds 0.0.0.0; output
                        also takes 127.0.0.0/8) jumps to ``services``
    services            ``meta l4proto . th dport`` vmap -> one chain per live port
    port_<p>_<n>        ``numgen random mod BUCKETS`` vmap: bucket ranges ->
                        endpoint chains, ranges from ``endpoint_buckets``
    ep_<p>_<n>_<i>      a counter (connections: nat chains see each connection's
                        first packet only), the masquerade mark where needed,
                        DNAT to the endpoint's address and host port
    postrouting         nat, srcnat: marked connections are masqueraded
    refuse              filter, input: a published port with no live endpoint
                        here is refused (tcp reset, icmp port unreachable)
                        rather than left to time out

Conntrack keeps an established connection on the endpoint its first packet
chose: replacing the table changes only where new connections go.

The masquerade mark (SNAT only where needed): a connection DNATed to an
endpoint on another node (its replies must come back through this node to be
un-DNATed), and one from a loopback source (127.0.0.1 cannot leave the host;
``route_localnet`` lets such a packet be routed at all). A connection to a local
endpoint keeps the client's address, and a ``local_only`` port
(``externalTrafficPolicy: Local``) has only local endpoints and never marks.

``endpoint_counts(listing, table)`` reads each endpoint chain's counter back
from ``nft -j list table`` (metrics).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubeless_agent.mesh.published import Published, endpoint_buckets, shares

FAMILY = "inet"
BUCKETS = 1000  # numgen's modulus: weights resolve to 0.1% of new connections
# One bit of the packet mark meaning "masquerade this connection". kube-proxy uses
# 0x4000; another bit, so both can share a host. Only a connection's first packet
# passes nat chains, so the bit is read in postrouting of that packet and cleared.
MASQUERADE_MARK = 0x00200000
LOOPBACK = "127.0.0.0/8"
ANY_ADDRESS = "0.0.0.0"
COMMENT_MAX = 128  # nftables' limit on a rule comment


def table_name(node_id: str) -> str:
    """The node's own table: a fixed name per node (node ids are DNS labels)."""
    return "kubeless_" + node_id.replace("-", "_").replace(".", "_")


@dataclass(frozen=True)
class EndpointRule:
    """One endpoint chain: where one published port's connections go, and its labels."""

    chain: str
    port: int
    protocol: str
    owner: str  # "route default/shop", "service default/web"
    service: str  # the backend group's "<namespace>/<name>"
    address: str
    host_port: int
    task: str
    local: bool
    masquerade: bool  # every connection is masqueraded (remote endpoint)
    buckets: int
    dnat_address: str = ""  # where DNAT sends it: the endpoint, or its container
    dnat_port: int = 0

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.host_port}"


@dataclass(frozen=True)
class Ruleset:
    """The batch that replaces a node's table, and what it holds (tests, metrics)."""

    table: str
    commands: tuple[dict[str, Any], ...]
    endpoints: tuple[EndpointRule, ...]
    refused: tuple[tuple[int, str], ...]  # published ports with no live endpoint here

    def batch(self) -> dict[str, Any]:
        return {"nftables": list(self.commands)}


def _table(name: str) -> dict[str, Any]:
    return {"table": {"family": FAMILY, "name": name}}


def delete_batch(node_id: str) -> dict[str, Any]:
    """Remove the node's table; adding it first makes the delete succeed when absent."""
    name = table_name(node_id)
    return {"nftables": [{"add": _table(name)}, {"delete": _table(name)}]}


# -- expressions (nft's JSON schema, libnftables-json(5)) -----------------------------

def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def _address(text: str) -> Any:
    if "/" in text:
        addr, length = text.split("/", 1)
        return {"prefix": {"addr": addr, "len": int(length)}}
    return text


def _port_key() -> dict[str, Any]:
    return {"concat": [_meta("l4proto"), _payload("th", "dport")]}


def _set_mark() -> dict[str, Any]:
    return {"mangle": {"key": _meta("mark"),
                       "value": {"|": [_meta("mark"), MASQUERADE_MARK]}}}


def _destination_matches(addresses: Sequence[str], loopback: bool) -> list[list[dict[str, Any]]]:
    """The match expressions (one rule each) for traffic addressed to the mesh."""
    ipv4 = _match(_meta("nfproto"), "ipv4")
    if ANY_ADDRESS in addresses:
        return [[ipv4, _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")]]
    wanted = sorted(set(addresses) | ({LOOPBACK} if loopback else set()))
    right = {"set": [_address(a) for a in wanted]} if len(wanted) > 1 else _address(wanted[0])
    return [[ipv4, _match(_payload("ip", "daddr"), right)]]


# -- the builder -----------------------------------------------------------------------

class _Batch:
    """Commands for one table: every chain before any rule (a jump needs its target)."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.chains: list[dict[str, Any]] = []
        self.rules: list[dict[str, Any]] = []

    def chain(self, name: str, **hook: Any) -> None:
        body = {"family": FAMILY, "table": self.table, "name": name, **hook}
        self.chains.append({"add": {"chain": body}})

    def rule(self, chain: str, expr: list[dict[str, Any]], comment: str = "") -> None:
        body: dict[str, Any] = {"family": FAMILY, "table": self.table, "chain": chain,
                                "expr": expr}
        if comment:
            body["comment"] = comment[:COMMENT_MAX]
        self.rules.append({"add": {"rule": body}})


def _is_local(backend_node: str, backend_address: str, node_id: str,
              addresses: Sequence[str]) -> bool:
    return backend_node == node_id if backend_node else backend_address in addresses


LocalTargets = Mapping[tuple[int, str], tuple[str, int]]  # (host port, proto) -> container


def _endpoint_rules(pub: Published, node_id: str, addresses: Sequence[str],
                    buckets: int, local_targets: LocalTargets) -> list[EndpointRule]:
    rules = []
    # endpoint_buckets lists the live groups' backends in shares' order
    services = [g.service for g, _ in shares(pub.groups) for _ in g.backends]
    for i, ((backend, count), service) in enumerate(
            zip(endpoint_buckets(pub.groups, buckets), services)):
        if count <= 0:
            continue
        local = _is_local(backend.node, backend.address, node_id, addresses)
        target = local_targets.get((backend.port, pub.protocol)) if local else None
        address, port = target or (backend.address, backend.port)
        rules.append(EndpointRule(
            f"ep_{pub.protocol}_{pub.port}_{i}", pub.port, pub.protocol, pub.owner,
            service, backend.address, backend.port, backend.task, local,
            not local and not pub.local_only, count, address, port))
    return rules


def _add_port(batch: _Batch, pub: Published, rules: list[EndpointRule]) -> str:
    chain = f"port_{pub.protocol}_{pub.port}"
    batch.chain(chain)
    arms, start = [], 0
    for rule in rules:
        arms.append([{"range": [start, start + rule.buckets - 1]},
                     {"goto": {"target": rule.chain}}])
        start += rule.buckets
    total = start
    batch.rule(chain, [{"vmap": {"key": {"numgen": {"mode": "random", "mod": total,
                                                    "offset": 0}},
                                 "data": {"set": arms}}}], pub.owner)
    for rule in rules:
        batch.chain(rule.chain)
        if rule.masquerade:
            batch.rule(rule.chain, [{"counter": None}, _set_mark()])
        else:
            batch.rule(rule.chain, [{"counter": None}])
            if not pub.local_only:
                batch.rule(rule.chain, [_match(_payload("ip", "saddr"), _address(LOOPBACK)),
                                        _set_mark()])
        batch.rule(rule.chain, [_match(_meta("l4proto"), pub.protocol),
                                {"dnat": {"family": "ip", "addr": rule.dnat_address,
                                          "port": rule.dnat_port}}],
                   f"{rule.owner} {rule.service} {rule.endpoint} {rule.task}")
    return chain


def _add_refuse(batch: _Batch, refused: list[tuple[int, str]],
                addresses: Sequence[str]) -> None:
    batch.chain("refuse", type="filter", hook="input", prio=-10, policy="accept")
    batch.chain("refused")
    ports = {"set": [{"concat": [proto, port]} for port, proto in refused]}
    for matches in _destination_matches(addresses, loopback=True):
        batch.rule("refuse", [*matches, _match(_port_key(), ports),
                              {"jump": {"target": "refused"}}],
                   "published ports with no live endpoint here")
    batch.rule("refused", [_match(_meta("l4proto"), "tcp"), {"reject": {"type": "tcp reset"}}])
    batch.rule("refused", [{"reject": {"type": "icmpx", "expr": "port-unreachable"}}])


def build_table(node_id: str, published: Mapping[tuple[int, str], Published],
                addresses: Sequence[str], *, local_targets: LocalTargets | None = None,
                buckets: int = BUCKETS) -> Ruleset:
    """The batch replacing ``node_id``'s table: DNAT of every published port arriving
    for ``addresses`` (the mesh's bind addresses; "0.0.0.0": any local address).

    ``local_targets``: where the runtime sends each local host port (Docker's own
    DNAT to the container, ``docker_targets``). A local endpoint found there is DNATed
    straight to its container: one DNAT per connection is all netfilter does in a
    hook, so DNAT to the host port would end at docker-proxy, which hides the
    client's address; not found, to the host port."""
    name = table_name(node_id)
    batch = _Batch(name)
    for hook in ("prerouting", "output"):
        batch.chain(hook, type="nat", hook=hook, prio=-100, policy="accept")
        for matches in _destination_matches(addresses, loopback=hook == "output"):
            batch.rule(hook, [*matches, {"jump": {"target": "services"}}])
    batch.chain("postrouting", type="nat", hook="postrouting", prio=100, policy="accept")
    batch.rule("postrouting", [
        _match({"&": [_meta("mark"), MASQUERADE_MARK]}, 0, "!="),
        {"mangle": {"key": _meta("mark"), "value": {"^": [_meta("mark"), MASQUERADE_MARK]}}},
        {"masquerade": None}])
    batch.chain("services")
    arms, endpoints, refused = [], [], []
    for key in sorted(published):
        pub = published[key].serving(node_id)
        rules = _endpoint_rules(pub, node_id, addresses, buckets, local_targets or {})
        if not rules:
            refused.append(key)
            continue
        chain = _add_port(batch, pub, rules)
        arms.append([{"concat": [pub.protocol, pub.port]}, {"goto": {"target": chain}}])
        endpoints += rules
    if arms:
        batch.rule("services", [{"vmap": {"key": _port_key(), "data": {"set": arms}}}])
    if refused:
        _add_refuse(batch, refused, addresses)
    replace = [{"add": _table(name)}, {"delete": _table(name)}, {"add": _table(name)}]
    return Ruleset(name, tuple(replace + batch.chains + batch.rules), tuple(endpoints),
                   tuple(refused))


def endpoint_counts(listing: Mapping[str, Any], table: str) -> dict[str, int]:
    """Each endpoint chain's connection count in an ``nft -j list table`` answer."""
    counts: dict[str, int] = {}
    for item in _items(listing):
        rule = item.get("rule")
        if not isinstance(rule, dict) or rule.get("table") != table:
            continue
        chain = str(rule.get("chain") or "")
        if not chain.startswith("ep_"):
            continue
        for expr in rule.get("expr") or []:
            counter = expr.get("counter") if isinstance(expr, dict) else None
            if isinstance(counter, dict):
                counts[chain] = counts.get(chain, 0) + int(counter.get("packets") or 0)
    return counts


def _items(listing: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    items = listing.get("nftables")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def docker_targets(rules: str) -> dict[tuple[int, str], tuple[str, int]]:
    """(host port, protocol) -> (container address, port), from Docker's DNAT rules
    (``iptables -t nat -S DOCKER``: ``-A DOCKER ... -p tcp -m tcp --dport 32768 -j DNAT
    --to-destination 172.17.0.2:80``)."""
    found: dict[tuple[int, str], tuple[str, int]] = {}
    for line in rules.splitlines():
        words = line.split()
        if "DNAT" not in words or "--dport" not in words or "-p" not in words:
            continue
        try:
            port = int(words[words.index("--dport") + 1])
            protocol = words[words.index("-p") + 1]
            address, _, target = words[words.index("--to-destination") + 1].rpartition(":")
            found.setdefault((port, protocol), (address, int(target)))
        except (ValueError, IndexError):
            continue
    return found
