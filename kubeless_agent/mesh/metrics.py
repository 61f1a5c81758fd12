"""Prometheus metrics of the routing mesh (the agent's registry: the process default).

The per-port metrics are labelled with the port's owner (``service``:
``<namespace>/<name>`` of the service, or of the route, that publishes it;
the names and labels they had before Routes) and the port's label (a
service port's name, else its target number; a route's name), so their
cardinality is that of the cluster's published ports. Connections per
backend and endpoint (``BACKEND_CONNECTIONS``) name the owner by kind
(``service default/web``, ``route default/shop``), the backend service and
the endpoint (``<address>:<host port>``); an endpoint's series goes when it
leaves the port's backends, so they follow the live endpoints, not history.
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
BACKEND_CONNECTIONS = Counter("kubeless_agent_mesh_backend_connections",
                              "Connections the mesh forwarded, by backend service and endpoint "
                              "(the weighted split of a route, as the userspace path made it)",
                              ["owner", "port", "backend", "endpoint"])
LISTENERS = Gauge("kubeless_agent_mesh_listeners", "Published ports the mesh listens on")
UNBOUND = Gauge("kubeless_agent_mesh_unbound_ports",
                "Published ports the mesh should listen on but cannot bind (in use, denied)")
REFUSED_PORTS = Gauge("kubeless_agent_mesh_refused_ports",
                      "Published ports the userspace path does not serve: UDP needs the kernel "
                      "path (--mesh-mode kernel)")
BIND_FAILURES = Counter("kubeless_agent_mesh_bind_failures",
                        "Failed attempts to listen on a published port", ["service", "port"])
