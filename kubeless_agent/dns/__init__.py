"""Service discovery: the agent's DNS server for the zone ``kubeless.`` (dnslib).

    zone    pure: endpoints documents and ready nodes -> records; a query -> its reply
    nodes   which nodes are ready (Node informer + one batched heartbeat read per poll)
    server  ``DnsServer``: UDP and TCP sockets, metrics

Containers of the docker runtime get the agent's DNS (on the Docker
bridge's gateway) as their nameserver and ``<namespace>.kubeless`` as
search domain, so ``wget http://web`` reaches the service ``web`` of the
task's namespace through the mesh.
"""

from kubeless_agent.dns.nodes import ReadyNodes, ready_nodes
from kubeless_agent.dns.server import DnsServer, container_nameserver, parse_dns_addr
from kubeless_agent.dns.zone import Zone, answer, build_zone

__all__ = ["DnsServer", "ReadyNodes", "container_nameserver", "Zone", "answer", "build_zone", "parse_dns_addr",
           "ready_nodes"]
