"""The cluster as controllers read it: informer caches plus the indexes they need.

One ``ClusterView`` per controllers process (made where the controllers are
assembled, ``controllers.main``, and passed to each) watches seven prefixes
(service specs, service statuses, tasks, nodes, everything agents write,
heartbeats and routes) and keeps indexes current from informer events: tasks by
service and by node, agents' reports by task id, heartbeats by node, routes by
the services they send to, nodes' load reports (``load_reports``). Readers get snapshots
in the shape the pure decision functions take: tasks as
``kubeless.api.tasks.Task`` (their stored resource with their effective
status, made once per change of the task or its report), nodes with their
heartbeat as ``status``.

A Service as the controllers decide on it (``stored_service``) also holds an
ingress port (no published number) for each Route backend port it lacks
(``kubeless.api.routes.exposed_ports``), so replication freezes those ports into
new tasks and the rollout finds older tasks outdated; ``spec_version`` names
what that view was made from (the service's and its routes' versions).
``service`` is the service as stored, with its status (what a rollback writes
back from). ``route_services`` maps a Route's change to the services it names.

Others subscribe to changes: ``on_task_change`` (a task or its report),
``on_service_change``, ``on_report`` (an agent's report of a task, after
the first listing: what the metrics observe) and ``on_change`` (anything: what
the dashboard redraws on). Validating service specs is
``controllers.specs``'; parsing agents/ and heartbeats/ keys is the keyspace's.

Assignment keys (``agents/<node>/assignments/``) duplicate tasks; they are
not decoded, only marked, so the cache stays small. So are nodes' copies of
secrets and configs (``agents/<node>/secrets|configs/<ns>/<name>``, up to
hundreds of KB each): the cache keeps only which source (uid) and which key
(recipient) a copy holds (``CopyMark``), indexed by node (``copy_keys_on``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubeless.api.load import LoadReport, parse_report
from kubeless.api.nodes import with_heartbeat
from kubeless.api.routes import backends, exposed_ports
from kubeless.api.tasks import Task
from kubeless.store import CorruptValue, Keyspace, KeyValue, ResourceStore
from kubeless.store.codec import decode

from controllers.framework import InformerSpec
from controllers.framework.runner import plain_decode

Resource = dict[str, Any]
ServiceKey = tuple[str, str]  # namespace, name
# Called with (the task as stored, or None when unknown; the old report; the new one).
ReportHandler = Callable[[Resource | None, Any, Any], None]

ASSIGNMENT = "assignment"  # what an assignment key decodes to in the view's cache
AGENT_EVENT = "agent-event"  # an agent's Event, kept as a marker (no controller reads them)


@dataclass(frozen=True)
class CopyMark:
    """A node's copy as the view caches it: never its value, only what it was made from."""

    uid: str  # the Secret's or Config's metadata.uid ("": unreadable, to be rewritten)
    recipient: str  # the key id a secret's copy is sealed to ("" for a config's)


def copy_mark(raw: bytes) -> CopyMark:
    """What a copy's JSON says of its source and recipient; an empty mark when it says
    nothing readable (kept in the cache, so the copy is overwritten, not ignored)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return CopyMark("", "")
    if not isinstance(value, dict):
        return CopyMark("", "")
    return CopyMark(str(value.get("uid") or ""), str(value.get("recipient") or ""))


def decode_agent_key(kv: KeyValue) -> Any:
    """Heartbeats and reports as data; assignments only as a marker (they repeat tasks)."""
    if "/assignments/" in kv.key:
        return ASSIGNMENT
    value = decode(kv.key, kv.value)
    if not isinstance(value, dict):
        raise CorruptValue(kv.key, "not a mapping")
    return value


@dataclass(frozen=True)
class AgentKeyDecoder:
    """``decode_agent_key``, and copies of secrets and configs as a ``CopyMark``. Equal
    for the same keyspace, so every view of one store shares the ``agents/`` informer."""

    keys: Keyspace

    def __call__(self, kv: KeyValue) -> Any:
        if self.keys.parse_copy(kv.key) is not None:
            return copy_mark(kv.value)
        if self.keys.is_agent_event(kv.key):
            return AGENT_EVENT  # the CLI and the dashboard read events; controllers never do
        return decode_agent_key(kv)


class ClusterView:
    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        keys = store.keys
        self.services_prefix = keys.kind_prefix("Service")
        self.status_prefix = keys.status_prefix("Service") or ""
        self.tasks_prefix = keys.kind_prefix("Task")
        self.nodes_prefix = keys.kind_prefix("Node")
        self.agents_prefix = keys.agents_prefix()
        self.heartbeats_prefix = keys.heartbeats_prefix()
        self.routes_prefix = keys.kind_prefix("Route")
        # (namespace, backend service) -> the keys of the Routes that send to it.
        self.routes_by_service: dict[ServiceKey, set[str]] = defaultdict(set)
        self.tasks_by_service: dict[ServiceKey, set[str]] = defaultdict(set)
        self.tasks_by_node: dict[str, set[str]] = defaultdict(set)
        self.task_key_by_id: dict[str, str] = {}
        # Node -> the keys of its copies of secrets and configs (agents/<node>/secrets/...).
        self.copies_by_node: dict[str, set[str]] = defaultdict(set)
        # Node -> its agent's load report (agents/<node>/load), parsed; unreadable ones left out.
        self._load: dict[str, LoadReport] = {}
        # Task keys waiting for the scheduler, in arrival order (placement order).
        self.waiting: dict[str, None] = {}
        # Task key -> the Task (with its effective status), rebuilt only when the task
        # or its report changes.
        self._task_memo: dict[str, Task] = {}
        # Nodes merged with their heartbeats, by name, each rebuilt only after its node or
        # heartbeat changed; and the list of them all, rebuilt after any such change.
        self._node_memo: dict[str, Resource] = {}
        self._nodes: list[Resource] | None = None
        self._node_ids: frozenset[str] | None = None
        # Called with a task key whenever that task or its agent's report changed.
        self._task_listeners: list[Callable[[str], None]] = []
        # Called with a service spec key whenever that spec changed.
        self._service_listeners: list[Callable[[str], None]] = []
        self._report_handlers: list[ReportHandler] = []
        # Called with the key after any change under any prefix the view watches.
        self._change_listeners: list[Callable[[str], None]] = []
        self.caches: dict[str, dict[str, Any]] = {}
        self.informers: dict[str, Any] = {}
        self._attached = False

    def informer_specs(self) -> list[InformerSpec]:
        return [InformerSpec.resources(self.store, "Service"),
                InformerSpec(self.status_prefix, plain_decode),
                InformerSpec.resources(self.store, "Task"),
                InformerSpec.resources(self.store, "Node"),
                InformerSpec(self.agents_prefix, AgentKeyDecoder(self.store.keys)),
                InformerSpec(self.heartbeats_prefix, decode_agent_key),
                InformerSpec.resources(self.store, "Route")]

    def attach(self, informers: dict[str, Any]) -> None:
        """Hook the indexes to the runner's informers (once per process)."""
        if self._attached:
            return
        self._attached = True
        for prefix, informer in informers.items():
            self.caches[prefix] = informer.cache
        self.informers = informers
        informers[self.tasks_prefix].add_handler(self._on_task)
        informers[self.agents_prefix].add_handler(self._on_agent_key)
        informers[self.heartbeats_prefix].add_handler(self._on_heartbeat)
        informers[self.nodes_prefix].add_handler(self._on_node)
        informers[self.services_prefix].add_handler(self._on_service)
        informers[self.routes_prefix].add_handler(self._on_route)
        for informer in informers.values():
            informer.add_handler(self._on_any)

    # -- indexes ----------------------------------------------------------

    def on_task_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(task key)`` whenever a task, or its agent's report, changes."""
        self._task_listeners.append(listener)

    def on_service_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(service spec key)`` whenever a service's spec changes."""
        self._service_listeners.append(listener)

    def on_report(self, handler: ReportHandler) -> None:
        """Call ``handler(task as stored or None, old report, new report)`` whenever an
        agent's report of a task changes, once the first listing is over (it repeats
        old news)."""
        self._report_handlers.append(handler)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(key)`` after any change of any key the view watches (the
        dashboard: it redraws from the view, whatever changed)."""
        self._change_listeners.append(listener)

    def _on_any(self, key: str, old: Any, new: Any) -> None:
        for listener in self._change_listeners:
            listener(key)

    def _task_changed(self, key: str) -> None:
        self._task_memo.pop(key, None)
        for listener in self._task_listeners:
            listener(key)

    def _on_task(self, key: str, old: Any, new: Any) -> None:
        if old is not None:
            self._unindex(key, old)
        if new is not None:
            self._index(key, new)
        self._task_changed(key)

    def _index(self, key: str, task: Resource) -> None:
        spec = task.get("spec") or {}
        if is_waiting(task):
            self.waiting[key] = None
        ns = task["metadata"].get("namespace", "default")
        self.tasks_by_service[(ns, spec.get("serviceName", ""))].add(key)
        if spec.get("nodeName"):
            self.tasks_by_node[spec["nodeName"]].add(key)
        self.task_key_by_id[task["metadata"]["name"]] = key

    def _unindex(self, key: str, task: Resource) -> None:
        spec = task.get("spec") or {}
        self.waiting.pop(key, None)
        self._task_memo.pop(key, None)
        ns = task["metadata"].get("namespace", "default")
        skey = (ns, spec.get("serviceName", ""))
        self.tasks_by_service[skey].discard(key)
        if not self.tasks_by_service[skey]:
            del self.tasks_by_service[skey]
        node = spec.get("nodeName")
        if node:
            self.tasks_by_node[node].discard(key)
            if not self.tasks_by_node[node]:
                del self.tasks_by_node[node]
        self.task_key_by_id.pop(task["metadata"]["name"], None)

    def _on_node(self, key: str, old: Any, new: Any) -> None:
        self._node_changed(key.rsplit("/", 1)[-1])

    def _node_changed(self, name: str) -> None:
        self._node_memo.pop(name, None)
        self._nodes = None
        self._node_ids = None

    def _on_service(self, key: str, old: Any, new: Any) -> None:
        for listener in self._service_listeners:
            listener(key)

    def _on_route(self, key: str, old: Any, new: Any) -> None:
        for skey in route_services(old):
            self.routes_by_service[skey].discard(key)
            if not self.routes_by_service[skey]:
                del self.routes_by_service[skey]
        for skey in route_services(new):
            self.routes_by_service[skey].add(key)

    def _on_heartbeat(self, key: str, old: Any, new: Any) -> None:
        """Forget the node's merged view."""
        node = self.store.keys.parse_heartbeat(key)
        if node is not None:
            self._node_changed(node)

    def _on_agent_key(self, key: str, old: Any, new: Any) -> None:
        """Index a copy; else forget the task's merged view and tell the report handlers."""
        copy = self.store.keys.parse_copy(key)
        if copy is not None:
            self._index_copy(copy.node, key, new is not None)
            return
        parsed = self.store.keys.parse_agent(key)
        if parsed is None:
            return
        if parsed.sort == "load" and parsed.task_id is None:
            self._index_load(parsed.node, new)
            return
        if parsed.sort != "tasks" or parsed.task_id is None:
            return
        task_key = self.task_key_by_id.get(parsed.task_id)
        if task_key is not None:
            self._task_changed(task_key)
        if not self._report_handlers or not self.informers[self.agents_prefix].synced.is_set():
            return
        task = self.caches[self.tasks_prefix].get(task_key) if task_key else None
        for handler in self._report_handlers:
            handler(task, old, new)

    def _index_load(self, node: str, value: Any) -> None:
        report = parse_report(value) if value is not None else None
        if report is None:
            self._load.pop(node, None)
        else:
            self._load[node] = report

    def _index_copy(self, node: str, key: str, present: bool) -> None:
        if present:
            self.copies_by_node[node].add(key)
            return
        self.copies_by_node[node].discard(key)
        if not self.copies_by_node[node]:
            del self.copies_by_node[node]

    # -- reading ----------------------------------------------------------

    def service(self, ns: str, name: str) -> Resource | None:
        found = self.caches[self.services_prefix].get(self.store.keys.spec("Service", name, ns))
        if found is None:
            return None
        status = self.caches[self.status_prefix].get(
            self.store.keys.status("Service", name, ns) or "")
        return {**found, "status": status} if status is not None else found

    def stored_service(self, ns: str, name: str) -> Resource | None:
        """The service's spec resource as cached (no status; do not mutate it), its
        ``spec.ports`` with the ports its Routes expose on it added."""
        found: Resource | None = self.caches[self.services_prefix].get(
            self.store.keys.spec("Service", name, ns))
        routes = self.routes_to(ns, name)
        if found is None or not routes or not isinstance(found.get("spec"), dict):
            return found
        return {**found, "spec": {**found["spec"], "ports": exposed_ports(found, routes)}}

    def spec_version(self, ns: str, name: str) -> Any:
        """What ``stored_service`` was made from: the service's resourceVersion and its
        Routes' (None: no such service). Equal versions, equal services."""
        found = self.caches[self.services_prefix].get(self.store.keys.spec("Service", name, ns))
        if found is None:
            return None
        revisions: dict[str, int] = self.informers[self.routes_prefix].revisions
        routes = tuple(sorted((k, revisions.get(k, 0))
                              for k in self.routes_by_service.get((ns, name), ())))
        return found["metadata"].get("resourceVersion"), routes

    def routes_to(self, ns: str, name: str) -> list[Resource]:
        """The Routes that send to the service (cached; do not mutate them)."""
        cache = self.caches[self.routes_prefix]
        return [cache[k] for k in sorted(self.routes_by_service.get((ns, name), ()))
                if k in cache]

    def route(self, ns: str, name: str) -> Resource | None:
        found: Resource | None = self.caches[self.routes_prefix].get(
            self.store.keys.spec("Route", name, ns))
        return found

    def routes(self) -> list[Resource]:
        return list(self.caches[self.routes_prefix].values())

    def status_revision(self, ns: str, name: str) -> int:
        """The mod_revision of a service's status key as cached (0: none)."""
        key = self.store.keys.status("Service", name, ns) or ""
        revisions: dict[str, int] = self.informers[self.status_prefix].revisions
        return revisions.get(key, 0)

    def services(self) -> list[Resource]:
        return list(self.caches[self.services_prefix].values())

    def report(self, node: str | None, task_id: str) -> Resource | None:
        if not node:
            return None
        found = self.caches[self.agents_prefix].get(self.store.keys.observed(node, task_id))
        return found if isinstance(found, dict) else None

    def load_reports(self) -> dict[str, LoadReport]:
        """node -> its agent's last load report (parsed once per change), fresh or not:
        a reader keeps those ``kubeless.api.load.is_fresh`` at its own ``now``."""
        return dict(self._load)

    def copy_keys_on(self, node: str) -> list[str]:
        """The keys of the node's copies of secrets and configs (their ``CopyMark`` is in
        the ``agents/`` cache)."""
        return list(self.copies_by_node.get(node, ()))

    def heartbeat(self, node: str) -> Resource | None:
        found = self.caches[self.heartbeats_prefix].get(self.store.keys.heartbeat(node))
        return found if isinstance(found, dict) else None

    def task(self, key: str) -> Task | None:
        """The task under ``key`` with its agent's report (made once per change of either)."""
        found = self._task_memo.get(key)
        if found is None:
            stored = self.caches[self.tasks_prefix].get(key)
            if stored is None:
                return None
            report = self.report(stored["spec"].get("nodeName"), stored["metadata"]["name"])
            found = self._task_memo[key] = Task.of(stored, report)
        return found

    def _tasks(self, keys: Any) -> list[Task]:
        return [t for t in map(self.task, keys) if t is not None]

    def tasks_of(self, ns: str, name: str) -> list[Task]:
        return self._tasks(list(self.tasks_by_service.get((ns, name), ())))

    def tasks_on(self, node: str) -> list[Task]:
        return self._tasks(list(self.tasks_by_node.get(node, ())))

    def all_tasks(self) -> list[Task]:
        return self._tasks(list(self.caches[self.tasks_prefix]))

    def waiting_tasks(self) -> list[Task]:
        """Tasks the scheduler must place, oldest first."""
        return self._tasks(list(self.waiting))

    def node(self, name: str) -> Resource | None:
        """The node with its heartbeat as status (cached; do not mutate it)."""
        found = self._node_memo.get(name)
        if found is None:
            stored = self.caches[self.nodes_prefix].get(self.store.keys.spec("Node", name))
            if stored is None:
                return None
            found = self._node_memo[name] = with_heartbeat(stored, self.heartbeat(name))
        return found

    def nodes(self) -> list[Resource]:
        """Every node with its heartbeat as status (cached; do not mutate the nodes)."""
        if self._nodes is None:
            self._nodes = [self._merged(key, n) for key, n in
                           self.caches[self.nodes_prefix].items()]
        return list(self._nodes)

    def node_ids(self) -> frozenset[str]:
        """The names of every node (cached)."""
        if self._node_ids is None:
            self._node_ids = frozenset(n["metadata"]["name"]
                                       for n in self.caches[self.nodes_prefix].values())
        return self._node_ids

    def _merged(self, key: str, stored: Resource) -> Resource:
        name = stored["metadata"]["name"]
        found = self._node_memo.get(name)
        if found is None:
            found = self._node_memo[name] = with_heartbeat(stored, self.heartbeat(name))
        return found

    def service_of_task_key(self, key: str) -> ServiceKey | None:
        task = self.caches[self.tasks_prefix].get(key)
        if task is None:
            return None
        return task["metadata"].get("namespace", "default"), task["spec"].get("serviceName", "")


def route_services(route: Any) -> set[ServiceKey]:
    """(namespace, service) of each backend of a Route as cached (none for None)."""
    if not isinstance(route, dict):
        return set()
    ns = (route.get("metadata") or {}).get("namespace") or "default"
    return {(ns, str(b["service"])) for b in backends(route) if isinstance(b.get("service"), str)}


def is_waiting(task: Resource) -> bool:
    """A task the scheduler must place (or check, for global tasks)."""
    return ((task.get("status") or {}).get("state") == "pending"
            and (task.get("spec") or {}).get("desiredState") == "running")

