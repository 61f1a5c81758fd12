"""kubeless_agent: the node agent.

    identity      who this node is: id, hostname, address, capacity, platform
    registration  the Node resource, created once if absent (users own it after)
    heartbeat     one kept lease, and every local node's heartbeat key bound to it
    worker        drives a runtime to match a node's assignments, and reports
    runtime       the Runtime protocol (its optional parts with their defaults);
                  ``fake`` (hollow nodes) lives here too
    errors        the agent's exceptions, drawn as a tree
    metrics       Prometheus metrics of the process
    mesh          the routing mesh: published ingress ports answer on every node
    dns           cluster DNS for the zone ``kubeless.`` (containers resolve through it)
    main          the process (one node, or N hollow nodes on one etcd
                  connection) and the ``kubeless-agent`` command line

The agent meets the rest of kubeless only in etcd (docs/MODEL.md); it never
imports ``controllers``.
"""

from kubeless.api.names import dns_label
from kubeless_agent.identity import NodeIdentity, parse_labels
from kubeless_agent.main import AgentConfig, AgentProcess, main, running_agent

__all__ = ["AgentConfig", "AgentProcess", "NodeIdentity", "dns_label", "main", "parse_labels",
           "running_agent"]
