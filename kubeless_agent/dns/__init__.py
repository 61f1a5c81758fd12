"""Service discovery: the agent's DNS server for the zone ``kubeless.`` (dnslib).

    zone        pure: endpoints documents and ready nodes -> records; a query -> its reply
    nodes       which nodes are ready, at which address (an informer on heartbeats/)
    server      ``DnsServer``: UDP and TCP sockets, metrics; other names to the forwarder
    resolvconf  pure: the host's resolv.conf -> the upstream resolvers
    forward     ``Forwarder``: names outside the zone to the upstreams (UDP, TCP, timeout)
    wiring      where DNS listens, the containers' nameserver, the node's ``dns`` status

Containers of the docker runtime get the agent's DNS (on the Docker
bridge's gateway) as their only nameserver and ``<namespace>.kubeless
kubeless`` as search domains, so ``wget http://web`` reaches the service
``web`` of the task's namespace through the mesh, and every other name is
forwarded to the host's resolvers.
"""

from kubeless_agent.dns.forward import Forwarder
from kubeless_agent.dns.nodes import ReadyNodes, ready_nodes
from kubeless_agent.dns.server import DnsServer, container_nameserver, parse_dns_addr
from kubeless_agent.dns.wiring import assemble_dns
from kubeless_agent.dns.zone import Zone, answer, build_zone

__all__ = ["DnsServer", "Forwarder", "ReadyNodes", "assemble_dns", "container_nameserver",
           "Zone", "answer", "build_zone", "parse_dns_addr", "ready_nodes"]
