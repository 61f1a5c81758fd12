"""Prometheus metrics of the routing mesh (the agent's registry: the process default).

Labels are the service (``<namespace>/<name>``) and its port (the port's
name, else its target number), so cardinality is that of the cluster's
published ports, not of connections or backends.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ACCEPTED = Counter("kubeless_agent_mesh_connections_accepted",
                   "Connections the mesh accepted on a published port", ["service", "port"])
ACTIVE = Gauge("kubeless_agent_mesh_connections_active",
               "Connections the mesh is forwarding now", ["service", "port"])
FAILED = Counter("kubeless_agent_mesh_connections_failed",
                 "Accepted connections closed unforwarded: no endpoint answered",
                 ["service", "port"])
BACKEND_FAILURES = Counter("kubeless_agent_mesh_backend_connect_failures",
                           "Connection attempts to an endpoint that refused or timed out "
                           "(the next endpoint was tried)", ["service", "port"])
BYTES = Counter("kubeless_agent_mesh_forwarded_bytes",
                "Bytes the mesh forwarded, to the endpoint (upstream) or back to the client "
                "(downstream)", ["service", "port", "direction"])
LISTENERS = Gauge("kubeless_agent_mesh_listeners", "Published ports the mesh listens on")
UNBOUND = Gauge("kubeless_agent_mesh_unbound_ports",
                "Published ports the mesh should listen on but cannot bind (in use, denied)")
BIND_FAILURES = Counter("kubeless_agent_mesh_bind_failures",
                        "Failed attempts to listen on a published port", ["service", "port"])
