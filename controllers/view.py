"""The cluster as controllers read it: informer caches plus the indexes they need.

One ``ClusterView`` per controllers process watches five prefixes (service
specs, service statuses, tasks, nodes, and everything agents write) and
keeps indexes current from informer events: tasks by service and by node,
agents' reports by task id, heartbeats by node. Readers get snapshots in
the shape the pure decision functions take: tasks carry ``effectiveState``
and ``effectiveStatus`` (their own status merged with their agent's
report), nodes carry their heartbeat as ``status``.

Assignment keys (``agents/<node>/assignments/``) duplicate tasks; they are
not decoded, only marked, so the cache stays small.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from kubeless.api import ApiError, validate
from kubeless.api.nodes import with_heartbeat
from kubeless.api.tasks import created_at, effective_status
from kubeless.store import CorruptValue, KeyValue, ResourceStore
from kubeless.store.codec import decode
from kubeless.store.resources import copy_data

from controllers import metrics
from controllers.framework import InformerSpec
from controllers.framework.runner import plain_decode

Resource = dict[str, Any]
ServiceKey = tuple[str, str]  # namespace, name

ASSIGNMENT = "assignment"  # what an assignment key decodes to in the view's cache


def decode_agent_key(kv: KeyValue) -> Any:
    """Heartbeats and reports as data; assignments only as a marker (they repeat tasks)."""
    if "/assignments/" in kv.key:
        return ASSIGNMENT
    value = decode(kv.key, kv.value)
    if not isinstance(value, dict):
        raise CorruptValue(kv.key, "not a mapping")
    return value


class ClusterView:
    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        keys = store.keys
        self.services_prefix = keys.kind_prefix("Service")
        self.status_prefix = keys.status_prefix("Service") or ""
        self.tasks_prefix = keys.kind_prefix("Task")
        self.nodes_prefix = keys.kind_prefix("Node")
        self.agents_prefix = keys.root + "agents/"
        self.tasks_by_service: dict[ServiceKey, set[str]] = defaultdict(set)
        self.tasks_by_node: dict[str, set[str]] = defaultdict(set)
        self.task_key_by_id: dict[str, str] = {}
        # Task keys waiting for the scheduler, in arrival order (placement order).
        self.waiting: dict[str, None] = {}
        # Task key -> the task with effectiveState/effectiveStatus, rebuilt only when
        # the task or its report changes. Shared: readers must not mutate it.
        self._effective: dict[str, Resource] = {}
        # Nodes merged with their heartbeats, by name, each rebuilt only after its node or
        # heartbeat changed; and the list of them all, rebuilt after any such change.
        self._node_memo: dict[str, Resource] = {}
        self._nodes: list[Resource] | None = None
        self._node_ids: frozenset[str] | None = None
        # Service spec key -> (resourceVersion, the validated spec or its ApiError).
        self._validated: dict[str, tuple[Any, Resource | ApiError]] = {}
        # Called with a task key whenever that task or its agent's report changed.
        self._task_listeners: list[Callable[[str], None]] = []
        self.caches: dict[str, dict[str, Any]] = {}
        self.informers: dict[str, Any] = {}
        self._attached = False

    def informer_specs(self) -> list[InformerSpec]:
        return [InformerSpec.resources(self.store, "Service"),
                InformerSpec(self.status_prefix, plain_decode),
                InformerSpec.resources(self.store, "Task"),
                InformerSpec.resources(self.store, "Node"),
                InformerSpec(self.agents_prefix, decode_agent_key)]

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
        informers[self.nodes_prefix].add_handler(self._on_node)
        informers[self.services_prefix].add_handler(self._on_service)

    # -- indexes ----------------------------------------------------------

    def on_task_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(task key)`` whenever a task, or its agent's report, changes."""
        self._task_listeners.append(listener)

    def _task_changed(self, key: str) -> None:
        self._effective.pop(key, None)
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
        self._effective.pop(key, None)
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
        self._validated.pop(key, None)

    def _on_agent_key(self, key: str, old: Any, new: Any) -> None:
        """Forget the task's merged view (or the nodes'); observe creation-to-running
        when an agent first reports a task running."""
        if "/tasks/" in key:
            task_key = self.task_key_by_id.get(key.rsplit("/", 1)[-1])
            if task_key is not None:
                self._task_changed(task_key)
        elif key.endswith("/heartbeat"):
            self._node_changed(key[len(self.agents_prefix):].split("/", 1)[0])
        if not isinstance(new, dict) or new.get("state") != "running":
            return
        if not self.informers[self.agents_prefix].synced.is_set():
            return  # the first listing repeats old news
        if isinstance(old, dict) and old.get("state") == "running":
            return
        parts = self.agent_key_parts(key)
        task_key = self.task_key_by_id.get(parts[2] or "") if parts else None
        task = self.caches[self.tasks_prefix].get(task_key) if task_key else None
        created = created_at(task) if task else None
        if created is not None:
            metrics.TIME_TO_RUNNING.observe(max(0.0, time.time() - created))

    # -- reading ----------------------------------------------------------

    def agent_key_parts(self, key: str) -> tuple[str, str, str | None] | None:
        """(node, "heartbeat"|"tasks"|"assignments", task id or None) of an agents/ key."""
        if not key.startswith(self.agents_prefix):
            return None
        parts = key[len(self.agents_prefix):].split("/")
        if len(parts) == 2:
            return parts[0], parts[1], None
        if len(parts) == 3:
            return parts[0], parts[1], parts[2]
        return None

    def service(self, ns: str, name: str) -> Resource | None:
        found = self.caches[self.services_prefix].get(self.store.keys.spec("Service", name, ns))
        if found is None:
            return None
        status = self.caches[self.status_prefix].get(
            self.store.keys.status("Service", name, ns) or "")
        return {**found, "status": status} if status is not None else found

    def validated(self, ns: str, name: str) -> Resource | ApiError | None:
        """The service's spec (no status) checked and defaulted by ``validate``, with the
        cached resourceVersion; its ApiError when invalid; None when absent. Validated
        once per resourceVersion; each call returns a fresh copy the caller may change."""
        key = self.store.keys.spec("Service", name, ns)
        stored = self.caches[self.services_prefix].get(key)
        if stored is None:
            return None
        version = stored["metadata"].get("resourceVersion")
        found = self._validated.get(key)
        if found is None or found[0] != version:
            checked: Resource | ApiError
            try:
                doc = validate({k: v for k, v in stored.items() if k != "status"})
            except ApiError as err:
                checked = err
            else:
                doc["metadata"]["resourceVersion"] = version
                checked = doc
            found = self._validated[key] = (version, checked)
        return found[1] if isinstance(found[1], ApiError) else copy_data(found[1])

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

    def heartbeat(self, node: str) -> Resource | None:
        found = self.caches[self.agents_prefix].get(self.store.keys.heartbeat(node))
        return found if isinstance(found, dict) else None

    def with_effective(self, task: Resource) -> Resource:
        report = self.report(task["spec"].get("nodeName"), task["metadata"]["name"])
        status = effective_status(task, report)
        return {**task, "effectiveState": status["state"], "effectiveStatus": status}

    def effective(self, key: str) -> Resource | None:
        """The task under ``key`` with its effective state (cached; do not mutate)."""
        found = self._effective.get(key)
        if found is None:
            task = self.caches[self.tasks_prefix].get(key)
            if task is None:
                return None
            found = self._effective[key] = self.with_effective(task)
        return found

    def _effective_of(self, keys: Any) -> list[Resource]:
        return [t for t in map(self.effective, keys) if t is not None]

    def tasks_of(self, ns: str, name: str) -> list[Resource]:
        return self._effective_of(list(self.tasks_by_service.get((ns, name), ())))

    def tasks_on(self, node: str) -> list[Resource]:
        return self._effective_of(list(self.tasks_by_node.get(node, ())))

    def all_tasks(self) -> list[Resource]:
        return self._effective_of(list(self.caches[self.tasks_prefix]))

    def waiting_tasks(self) -> list[Resource]:
        """Tasks the scheduler must place, oldest first."""
        return self._effective_of(list(self.waiting))

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


def is_waiting(task: Resource) -> bool:
    """A task the scheduler must place (or check, for global tasks)."""
    return ((task.get("status") or {}).get("state") == "pending"
            and (task.get("spec") or {}).get("desiredState") == "running")


def view_for(store: ResourceStore) -> ClusterView:
    """The one ClusterView of a store (controllers of a process share it); kept on
    the store itself, so it lives and dies with it."""
    view: ClusterView | None = getattr(store, "_cluster_view", None)
    if view is None:
        view = ClusterView(store)
        setattr(store, "_cluster_view", view)
    return view
