"""The endpoints controller's decision: a service's endpoints document, from plain data.

``desired_endpoints`` turns a Service, its tasks (``kubeless.api.tasks.Task``,
with their effective status, as the cluster view gives them) and the nodes they
sit on (with their heartbeat as ``status``) into the value of
``endpoints/<ns>/<service>`` (see docs/MODEL.md):

- ``ports``: the service's declared ports that have a published number,
  normalized (``name`` when declared, ``target``, ``published``,
  ``protocol``, ``mode``); the mesh listens on the ingress ones;
- ``endpoints``: the tasks wanted running (``spec.desiredState``), observed
  running (the agent reports running only once a healthcheck passes) on a
  node that is ready and advertises an address, sorted by task id, each
  with the host ports its agent reported.

``desired_route`` turns a Route, its backend services and their tasks and nodes
into the value of ``endpoints/_routes/<ns>/<route>``: the route's port, protocol,
policies and, per backend, its weight and endpoints: the service's tasks that are
endpoints (as above) and publish a host port for the backend's port and the
route's protocol (a backend service that does not exist has none).

``endpoints_op`` compares either document with what its key holds and says what
to write: nothing when equal, a put, or a delete when the service (or route) is
gone.
Watching, fencing and committing are the controller's (controller.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeless.api.tasks import Task

Resource = dict[str, Any]
CORRUPT = "corrupt"  # what an endpoints key that does not decode is cached as


@dataclass(frozen=True)
class PutEndpoints:
    namespace: str
    service: str
    value: Resource
    revision: int  # mod_revision the key had when read (0: absent)


@dataclass(frozen=True)
class DeleteEndpoints:
    namespace: str
    service: str
    revision: int


EndpointsOp = PutEndpoints | DeleteEndpoints


POLICIES = ("externalTrafficPolicy", "proxyProtocol")  # a port's, copied when set


def declared_ports(service: Resource) -> list[Resource]:
    """The service's ports that have a published number, in declaration order (with
    ``externalTrafficPolicy`` and ``proxyProtocol`` when the port sets them)."""
    out = []
    for p in (service.get("spec") or {}).get("ports") or []:
        if not isinstance(p, dict) or not p.get("published") or not p.get("target"):
            continue
        port: Resource = {"target": int(p["target"]), "published": int(p["published"]),
                          "protocol": str(p.get("protocol") or "tcp"),
                          "mode": str(p.get("mode") or "ingress")}
        if p.get("name"):
            port = {"name": str(p["name"]), **port}
        port.update({f: str(p[f]) for f in POLICIES if p.get(f) is not None})
        out.append(port)
    return out


def _reported_ports(task: Task) -> list[Resource]:
    out = []
    for p in task.status.get("ports") or []:
        if isinstance(p, dict) and p.get("target") and p.get("published"):
            out.append({"target": int(p["target"]), "published": int(p["published"]),
                        "protocol": str(p.get("protocol") or "tcp")})
    return sorted(out, key=lambda p: (p["target"], p["protocol"], p["published"]))


def endpoint(task: Task, nodes: dict[str, Resource]) -> Resource | None:
    """The task's endpoint, or None when it must not receive traffic."""
    if not task.wants_running or task.state != "running":
        return None
    node_id = task.node
    node = nodes.get(node_id) if node_id else None
    status = (node or {}).get("status") or {}
    if status.get("state") != "ready" or not status.get("address"):
        return None
    return {"task": task.id, "slot": task.spec.get("slot"), "node": node_id,
            "address": str(status["address"]), "ports": _reported_ports(task)}


def service_endpoints(service: Resource, tasks: list[Task],
                      nodes: dict[str, Resource]) -> list[Resource]:
    """The endpoints of ``service`` among ``tasks``, sorted by task id (tasks of other
    services, and of an earlier service of the same name, are ignored)."""
    meta = service.get("metadata") or {}
    ns, name = str(meta.get("namespace") or "default"), str(meta["name"])
    found = []
    for task in tasks:
        if task.service_name != name or task.namespace != ns:
            continue
        uid = task.service_uid
        if uid and meta.get("uid") and uid != meta["uid"]:
            continue  # a task of an earlier service of the same name
        ep = endpoint(task, nodes)
        if ep is not None:
            found.append(ep)
    return sorted(found, key=lambda e: str(e["task"]))


def desired_endpoints(service: Resource, tasks: list[Task],
                      nodes: dict[str, Resource]) -> Resource:
    """The endpoints document of ``service`` (tasks of other services are ignored)."""
    meta = service.get("metadata") or {}
    return {"namespace": str(meta.get("namespace") or "default"), "service": str(meta["name"]),
            "serviceUid": meta.get("uid", ""), "ports": declared_ports(service),
            "endpoints": service_endpoints(service, tasks, nodes)}


def _route_endpoints(endpoints: list[Resource], port: int, protocol: str) -> list[Resource]:
    """The endpoints that publish a host port for ``port``/``protocol``, with it."""
    out = []
    for ep in endpoints:
        host = next((p["published"] for p in ep["ports"]
                     if p["target"] == port and p["protocol"] == protocol), None)
        if host is not None:
            out.append({"task": ep["task"], "node": ep["node"], "address": ep["address"],
                        "hostPort": host})
    return out


def desired_route(route: Resource, services: dict[str, Resource],
                  tasks: dict[str, list[Task]], nodes: dict[str, Resource]) -> Resource:
    """The document of ``route`` (validated): ``services`` and ``tasks`` by backend
    service name (a missing service: no endpoints), ``nodes`` by id."""
    meta, spec = route.get("metadata") or {}, route.get("spec") or {}
    protocol = str(spec.get("protocol") or "tcp")
    backends = []
    for b in spec.get("backends") or []:
        service = services.get(str(b["service"]))
        found = [] if service is None else service_endpoints(
            service, tasks.get(str(b["service"])) or [], nodes)
        backends.append({"service": str(b["service"]), "port": int(b["port"]),
                         "weight": int(b.get("weight", 1)),
                         "endpoints": _route_endpoints(found, int(b["port"]), protocol)})
    return {"kind": "Route", "namespace": str(meta.get("namespace") or "default"),
            "route": str(meta["name"]), "routeUid": str(meta.get("uid") or ""),
            "port": int(spec["port"]), "protocol": protocol,
            "externalTrafficPolicy": str(spec.get("externalTrafficPolicy") or "Cluster"),
            "proxyProtocol": str(spec.get("proxyProtocol") or ""),
            "backends": backends}


def endpoints_op(namespace: str, name: str, desired: Resource | None, current: Any,
                 revision: int) -> EndpointsOp | None:
    """What to write so the key holds ``desired`` (None: the key must not exist)."""
    if desired is None:
        return DeleteEndpoints(namespace, name, revision) if revision else None
    if revision and current == desired:
        return None
    return PutEndpoints(namespace, name, desired, revision)
