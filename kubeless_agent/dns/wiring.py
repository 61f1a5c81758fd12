"""Cluster DNS in an agent: where it listens, what containers get, what the node's status says.

    listen_addresses  pure: ``--dns-addr`` (None: automatic) and the Docker
                      bridge -> the addresses to serve on
    container_dns     pure: the addresses bound right now and the bridge ->
                      (the containers' nameserver, or None, and why not)
    assemble_dns      builds the ``DnsServer`` with its ``Forwarder`` and a
                      ``DnsWiring`` that, whenever what is bound or the
                      upstreams change, tells the docker runtime which
                      nameserver its containers get (the agent's only; None:
                      the engine's defaults, so containers still resolve
                      outside names) and puts the node's ``dns`` status field
                      (``node_status.dns_fields``) into its heartbeats. A new
                      problem is logged as a warning: never silent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kubeless_agent.dns.forward import Forwarder
from kubeless_agent.dns.server import DnsServer, container_nameserver, parse_dns_addr
from kubeless_agent.node_status import HeartbeatFields, dns_fields
from kubeless_agent.runtime import Runtime

log = logging.getLogger(__name__)

Addr = tuple[str, int]
Bridge = tuple[str, str]  # (gateway, subnet)
DEFAULTS = "containers get the engine's default nameservers (no service names)"


def listen_addresses(dns_addrs: Sequence[str] | None, bind_addr: str,
                     bridge: Bridge | None) -> list[Addr]:
    """``--dns-addr``'s addresses, or (automatic) the node's address and the bridge's
    gateway, port 53."""
    if dns_addrs is not None:
        return [parse_dns_addr(a) for a in dns_addrs]
    addrs = [(bind_addr, 53)]
    if bridge:
        addrs.append((bridge[0], 53))
    return addrs


def container_dns(serving: Sequence[Addr], bridge: Bridge | None,
                  supported: bool) -> tuple[str | None, str]:
    """(nameserver for containers or None, the problem when a runtime that supports cluster
    DNS (docker) gets none)."""
    if not supported:
        return None, ""
    if bridge is None:
        return None, f"no address of the Docker bridge found: {DEFAULTS}"
    nameserver = container_nameserver(serving, *bridge)
    if nameserver is None:
        return None, f"not serving DNS on port 53 of the Docker bridge {bridge[1]}: {DEFAULTS}"
    return nameserver, ""


class DnsWiring:
    """Tells the runtime and the heartbeats what the DNS server can do, on every change."""

    def __init__(self, server: DnsServer, runtime: Runtime, bridge: Bridge | None,
                 heartbeats: HeartbeatFields, node_ids: Sequence[str]) -> None:
        self.server = server
        self.runtime = runtime
        self.bridge = bridge
        self.heartbeats = heartbeats
        self.node_ids = list(node_ids)
        self.problem = ""
        self.fields: dict[str, Any] = {}

    def changed(self) -> None:
        nameserver, problem = container_dns(self.server.serving(), self.bridge,
                                            self.runtime.supports_cluster_dns)
        self.runtime.use_cluster_dns(nameserver)
        if problem and problem != self.problem:
            log.warning("dns: %s", problem)
        self.problem = problem
        forwarder = self.server.forwarder
        fields = dns_fields(self.server.serving(), self.server.unbound, nameserver,
                            forwarder.upstreams if forwarder else [],
                            [problem, forwarder.problem if forwarder else ""])
        if fields != self.fields:
            self.fields = fields
            for node_id in self.node_ids:
                self.heartbeats.update(node_id, fields)


async def assemble_dns(dns_addrs: Sequence[str] | None, bind_addr: str, resolv_conf: str,
                       runtime: Runtime, heartbeats: HeartbeatFields,
                       node_ids: Sequence[str]) -> DnsServer:
    """The agent's DNS server, wired to its runtime and heartbeats (not yet running)."""
    bridge = await runtime.bridge_network()
    addrs = listen_addresses(dns_addrs, bind_addr, bridge)
    server = DnsServer(addrs, forwarder=Forwarder(resolv_conf))
    server.watchers.append(DnsWiring(server, runtime, bridge, heartbeats, node_ids).changed)
    return server
