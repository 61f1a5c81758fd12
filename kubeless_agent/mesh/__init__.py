"""The routing mesh: a published port answers on every node.

    published       pure: endpoints documents (services' and Routes') -> what a node
                    forwards: published ports, weighted backend groups, shares, buckets
    table           pure: ``Backend``, and the userspace path's order of attempts per
                    connection (a group by weight, round robin, a memory of refusals)
    proxy_protocol  pure: the PROXY protocol v1 header (the client's address)
    relay           non-blocking sockets on the loop's callbacks: accept, connect, forward
    mesh            ``RoutingMesh``: the endpoints informer's handler and the listeners
    metrics         connections accepted, active, failed, per endpoint; bytes; bind failures
    nft             pure: the kernel path's nftables batch (one table per node, replaced
                    atomically: DNAT by weighted numgen, masquerade by mark, refusals)
    kernel_host     ``NftHost``: nft, sysctl and iptables (DOCKER-USER) through subprocesses
    kernel          ``KernelMesh``: the informer's handler applying the table; ``mesh_path``
    kernel_metrics  the path in use, rule syncs, connections per endpoint (nft counters)

Every agent (not hollow nodes) runs one of the two (``--mesh-mode``): ``KernelMesh``
where nftables works (the default), else ``RoutingMesh``, the userspace relay. Either
answers on the node's advertise address (``--mesh-bind`` may widen it, e.g. 0.0.0.0)
and sends each new connection to one of the owner's endpoints, wherever it runs.
"""

from kubeless_agent.mesh.mesh import RoutingMesh
from kubeless_agent.mesh.table import Backend

__all__ = ["Backend", "RoutingMesh"]
