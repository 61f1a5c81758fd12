"""The routing mesh: a published ingress port answers on every node.

    table    pure: endpoints documents -> routes by published port, listener
             changes, round-robin order with a memory of refusals
    relay    non-blocking sockets on the loop's callbacks: accept, connect, forward
    mesh     ``RoutingMesh``: the endpoints informer's handler and the listeners
    metrics  connections accepted, active, failed; bytes; bind failures

Every agent runs one ``RoutingMesh`` (not hollow nodes). It listens on the
node's advertise address (``--mesh-bind`` may widen it, e.g. 0.0.0.0) and
forwards each connection to ``<endpoint address>:<host port of the target>``
of one of the service's endpoints, wherever it runs.
"""

from kubeless_agent.mesh.mesh import RoutingMesh
from kubeless_agent.mesh.table import Backend, Route

__all__ = ["Backend", "Route", "RoutingMesh"]
