"""The keyspace: where each resource and record lives under the prefix.

    <prefix>/v1/spec/services/<ns>/<name>        Service as declared
    <prefix>/v1/status/services/<ns>/<name>      Service status
    <prefix>/v1/spec/nodes/<node-id>             Node
    <prefix>/v1/spec/secrets/<ns>/<name>         Secret: its value sealed to the cluster's key
    <prefix>/v1/spec/configs/<ns>/<name>         Config
    <prefix>/v1/tasks/<ns>/<service>/<task-id>   Task (spec and status)
    <prefix>/v1/agents/<node-id>/...             what one node writes and watches; among
                                                 it the copies of the secrets and configs
                                                 its tasks use: agents/<node-id>/secrets/<ns>/<name>
                                                 (sealed to the agent's key), .../configs/<ns>/<name>
    <prefix>/v1/heartbeats/<node-id>             a node's heartbeat, bound to its agent's lease
    <prefix>/v1/endpoints/<ns>/<service>
    <prefix>/v1/spec/routes/<ns>/<name>          Route as declared
    <prefix>/v1/endpoints/_routes/<ns>/<route>   a Route's port, backends, weights and their
                                                 healthy endpoints (under endpoints/: what
                                                 every node reads; no namespace starts with _)
    <prefix>/v1/leaders/<controller>
    <prefix>/v1/managers/<identity>
    <prefix>/v1/cluster
    <prefix>/v1/secrets/join-tokens              the plain join tokens (managers, admins)

A node's etcd role (``kubeless.cluster.permissions``) reads and writes its own
``agents/<id>/`` and ``heartbeats/<id>``, reads every heartbeat (the addresses DNS
answers with, the managers' join endpoints), ``endpoints/`` and ``cluster``; nothing
else. Heartbeats live apart from ``agents/`` so that one range grant lets a node read
them all without reading another node's assignments.

See ARCHITECTURE.md for why it is shaped this way.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "/kubeless"


@dataclass(frozen=True)
class ResourceKey:
    """What a resource key names."""

    kind: str
    namespace: str | None
    name: str
    service: str | None = None  # tasks only


@dataclass(frozen=True)
class CopyKey:
    """A node's copy of a Secret or Config: ``agents/<node>/secrets|configs/<ns>/<name>``."""

    node: str
    kind: str  # "Secret" or "Config"
    namespace: str
    name: str


_FILE_KINDS = {"Secret": "secrets", "Config": "configs"}  # kind -> its folder in spec/ and agents/
ROUTES_SEGMENT = "_routes"  # endpoints/_routes/<ns>/<route>


@dataclass(frozen=True)
class AgentKey:
    """What a key under ``agents/<node>/`` names: the node, the sort of record
    ("leave", "tasks", "assignments") and, for the last two, the task id."""

    node: str
    sort: str
    task_id: str | None = None


class Keyspace:
    """Builds and parses keys for one cluster's prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.root = "/" + prefix.strip("/") + "/v1/" if prefix.strip("/") else "/v1/"

    # -- resources --------------------------------------------------------

    def spec(self, kind: str, name: str, namespace: str | None = None,
             service: str | None = None) -> str:
        if kind == "Service":
            return f"{self.root}spec/services/{namespace}/{name}"
        if kind == "Node":
            return f"{self.root}spec/nodes/{name}"
        if kind == "Task":
            return f"{self.root}tasks/{namespace}/{service}/{name}"
        if kind in _FILE_KINDS:
            return f"{self.root}spec/{_FILE_KINDS[kind]}/{namespace}/{name}"
        if kind == "Route":
            return f"{self.root}spec/routes/{namespace}/{name}"
        raise ValueError(f"no key for kind {kind!r}")

    def status(self, kind: str, name: str, namespace: str | None = None) -> str | None:
        """The separate status key of a kind, or None when status lives with the spec."""
        if kind == "Service":
            return f"{self.root}status/services/{namespace}/{name}"
        return None

    def kind_prefix(self, kind: str, namespace: str | None = None,
                    service: str | None = None) -> str:
        """The prefix holding every resource of a kind (in one namespace when given)."""
        base = {"Service": "spec/services/", "Node": "spec/nodes/", "Task": "tasks/",
                "Secret": "spec/secrets/", "Config": "spec/configs/",
                "Route": "spec/routes/"}[kind]
        if kind == "Node" or namespace is None:
            return self.root + base
        if kind == "Task" and service is not None:
            return f"{self.root}{base}{namespace}/{service}/"
        return f"{self.root}{base}{namespace}/"

    def status_prefix(self, kind: str, namespace: str | None = None) -> str | None:
        if kind != "Service":
            return None
        return f"{self.root}status/services/" + (f"{namespace}/" if namespace else "")

    def parse(self, key: str) -> ResourceKey | None:
        """The resource a spec/status/task key names, or None for other keys."""
        if not key.startswith(self.root):
            return None
        parts = key[len(self.root):].split("/")
        match parts:
            case ["spec" | "status", "services", ns, name]:
                return ResourceKey("Service", ns, name)
            case ["spec", "nodes", name]:
                return ResourceKey("Node", None, name)
            case ["spec", "secrets", ns, name]:
                return ResourceKey("Secret", ns, name)
            case ["spec", "configs", ns, name]:
                return ResourceKey("Config", ns, name)
            case ["spec", "routes", ns, name]:
                return ResourceKey("Route", ns, name)
            case ["tasks", ns, service, name]:
                return ResourceKey("Task", ns, name, service)
        return None

    # -- everything else --------------------------------------------------

    def agents_prefix(self) -> str:
        """Everything agents write (and are told) under ``agents/``."""
        return f"{self.root}agents/"

    def agent(self, node_id: str) -> str:
        return f"{self.root}agents/{node_id}/"

    def parse_agent(self, key: str) -> AgentKey | None:
        """The node, sort and task id of an ``agents/`` key; None for any other key."""
        prefix = self.agents_prefix()
        if not key.startswith(prefix):
            return None
        parts = key[len(prefix):].split("/")
        if len(parts) == 2:
            return AgentKey(parts[0], parts[1])
        if len(parts) == 3:
            return AgentKey(parts[0], parts[1], parts[2])
        return None

    def copy(self, node_id: str, kind: str, namespace: str, name: str) -> str:
        """The node's copy of a Secret (sealed to its agent) or a Config its tasks use."""
        return f"{self.root}agents/{node_id}/{_FILE_KINDS[kind]}/{namespace}/{name}"

    def copies_prefix(self, node_id: str, kind: str) -> str:
        return f"{self.root}agents/{node_id}/{_FILE_KINDS[kind]}/"

    def parse_copy(self, key: str) -> CopyKey | None:
        """What an ``agents/<node>/secrets|configs/<ns>/<name>`` key names; else None."""
        prefix = self.agents_prefix()
        if not key.startswith(prefix):
            return None
        parts = key[len(prefix):].split("/")
        if len(parts) != 4 or not all(parts):
            return None
        kind = next((k for k, folder in _FILE_KINDS.items() if folder == parts[1]), None)
        return CopyKey(parts[0], kind, parts[2], parts[3]) if kind else None

    def heartbeats_prefix(self) -> str:
        """Every node's heartbeat (``heartbeats/<node-id>``): what every node may read."""
        return f"{self.root}heartbeats/"

    def heartbeat(self, node_id: str) -> str:
        """The node's heartbeat, present while its agent's lease lives (docs/MODEL.md)."""
        return f"{self.heartbeats_prefix()}{node_id}"

    def parse_heartbeat(self, key: str) -> str | None:
        """The node id a ``heartbeats/`` key names; None for any other key."""
        prefix = self.heartbeats_prefix()
        if not key.startswith(prefix):
            return None
        node = key[len(prefix):]
        return node if node and "/" not in node else None

    def leave(self, node_id: str) -> str:
        """``kubeless node leave``'s request to the node's agent (kept until ``node rm``)."""
        return f"{self.root}agents/{node_id}/leave"

    def events_prefix(self) -> str:
        """Controllers' events: ``events/<ns or _cluster>/<id>``."""
        return f"{self.root}events/"

    def agent_events_prefix(self, node_id: str) -> str:
        """A node agent's events, under its own prefix (its etcd role)."""
        return f"{self.root}agents/{node_id}/events/"

    def is_agent_event(self, key: str) -> bool:
        """Whether ``key`` is ``agents/<node>/events/<ns>/<id>``."""
        prefix = self.agents_prefix()
        parts = key[len(prefix):].split("/") if key.startswith(prefix) else []
        return len(parts) == 4 and parts[1] == "events"

    def load(self, node_id: str) -> str:
        """The node's load report (CPU, memory and mesh connections per task), its agent's only."""
        return f"{self.root}agents/{node_id}/load"

    def assignment(self, node_id: str, task_id: str) -> str:
        return f"{self.root}agents/{node_id}/assignments/{task_id}"

    def observed(self, node_id: str, task_id: str) -> str:
        return f"{self.root}agents/{node_id}/tasks/{task_id}"

    def endpoints(self, namespace: str, service: str) -> str:
        return f"{self.root}endpoints/{namespace}/{service}"

    def endpoints_prefix(self, namespace: str | None = None) -> str:
        """Every service's endpoints key (in one namespace when given)."""
        return f"{self.root}endpoints/" + (f"{namespace}/" if namespace else "")

    def route_endpoints(self, namespace: str, route: str) -> str:
        """A Route's document for the meshes and DNS (the endpoints controller's)."""
        return f"{self.root}endpoints/{ROUTES_SEGMENT}/{namespace}/{route}"

    def route_endpoints_prefix(self) -> str:
        return f"{self.root}endpoints/{ROUTES_SEGMENT}/"

    def parse_route_endpoints(self, key: str) -> tuple[str, str] | None:
        """(namespace, route) of a Route's document key; None for any other key."""
        prefix = self.route_endpoints_prefix()
        if not key.startswith(prefix):
            return None
        ns, _, name = key[len(prefix):].partition("/")
        return (ns, name) if ns and name and "/" not in name else None

    def leader(self, controller: str) -> str:
        return f"{self.root}leaders/{controller}"

    def manager(self, identity: str) -> str:
        return f"{self.root}managers/{identity}"

    def cluster(self) -> str:
        return f"{self.root}cluster"

    def secrets_prefix(self) -> str:
        """Keys only managers and admins may read (etcd's root role), apart from
        everything a node's role grants (``kubeless.cluster.permissions``)."""
        return f"{self.root}secrets/"

    def join_tokens(self) -> str:
        """The plain join tokens, beside the hashes of the cluster record."""
        return f"{self.secrets_prefix()}join-tokens"
