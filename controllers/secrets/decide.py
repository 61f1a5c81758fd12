"""The secrets controller's decision: which copies one node should hold, from plain data.

A node holds a copy of a Secret or Config (``agents/<node>/secrets|configs/<ns>/<name>``)
while a task there uses it: assigned to the node, wanted running, not ended, its
frozen template referencing it (``kubeless.api.file_refs.referenced``, in the
task's namespace). ``plan_node`` compares that with the copies the node holds
and says what to write:

- put a copy that is missing, or stale: made from another source (its uid
  changed: the Secret was removed and made again) or, for a secret, sealed to
  another key than the one the node's heartbeat advertises now (a restarted
  agent);
- delete a copy no task there uses, a copy whose source is gone, and every
  copy of a node that is gone;
- a secret on a node that advertises no key (down, or an agent from before
  secrets) gets no copy: one it holds already is left as it is (sealed to a
  key only that agent process held; it comes back with the same key after a
  lapse of its lease, and ended tasks delete it anyway);
- a secret that must be (re)sealed while this process cannot open it (no
  CA key) is *undeliverable*: the controller says so, once.

Sealing is the controller's: a put says what to seal (the source, the node's
public key), never carries a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kubeless.api.file_refs import referenced
from kubeless.api.tasks import Task
from kubeless.cluster.sealing import key_id

# kind ("Secret" or "Config"), namespace, name
Ref = tuple[str, str, str]


@dataclass(frozen=True)
class Source:
    """A stored Secret or Config, as much of it as a copy is made from."""

    kind: str
    namespace: str
    name: str
    uid: str
    payload: str  # a Secret's ``spec.sealed`` (to the cluster's key), a Config's ``spec.data``

    @property
    def ref(self) -> Ref:
        return self.kind, self.namespace, self.name

    def __repr__(self) -> str:  # the payload stays out of log lines and tracebacks
        return f"Source({self.kind}/{self.namespace}/{self.name}, uid={self.uid!r})"


@dataclass(frozen=True)
class Held:
    """A copy a node holds: from which source (uid), sealed to which key (a key id;
    "" for a config), at which mod_revision."""

    uid: str
    recipient: str
    revision: int


@dataclass(frozen=True)
class PutCopy:
    node: str
    source: Source
    recipient: str  # the node's public key text (a secret), "" (a config)
    revision: int  # the copy's mod_revision when read (0: absent)

    @property
    def ref(self) -> Ref:
        return self.source.ref


@dataclass(frozen=True)
class DeleteCopy:
    node: str
    ref: Ref
    revision: int
    why: str  # "unused", "source gone", "node gone"


@dataclass
class NodePlan:
    puts: list[PutCopy] = field(default_factory=list)
    deletes: list[DeleteCopy] = field(default_factory=list)
    undeliverable: list[Source] = field(default_factory=list)  # secrets we cannot open

    def __bool__(self) -> bool:
        return bool(self.puts or self.deletes or self.undeliverable)


def uses_files(task: Task) -> bool:
    """Whether the task is one whose references its node must hold copies of."""
    return bool(task.node) and task.wants_running and not task.is_done


def task_refs(template: object) -> set[tuple[str, str]]:
    """(kind, name) the template references; none when it is unreadable (a task written
    by hand: its node gets nothing rather than the controller failing on every pass)."""
    if not isinstance(template, dict):
        return set()
    try:
        return referenced(template)
    except (KeyError, TypeError, ValueError, AttributeError):
        return set()


def needed(tasks: Iterable[Task]) -> set[Ref]:
    """Every Secret and Config the tasks that use files reference, in their namespaces."""
    out: set[Ref] = set()
    for task in tasks:
        if uses_files(task):
            out.update((kind, task.namespace, name)
                       for kind, name in task_refs(task.spec.get("template")))
    return out


def plan_node(node: str, *, exists: bool, public_key: str | None, tasks: Iterable[Task],
              sources: Mapping[Ref, Source], held: Mapping[Ref, Held],
              can_open: bool) -> NodePlan:
    """What to write so ``node`` holds exactly the copies its tasks use (module docstring).
    ``public_key``: the key its heartbeat advertises (None: none); ``can_open``: whether
    this process holds the cluster's secrets key."""
    plan = NodePlan()
    if not exists:
        plan.deletes = [DeleteCopy(node, ref, h.revision, "node gone")
                        for ref, h in sorted(held.items())]
        return plan
    want = needed(t for t in tasks if t.node == node)
    for ref, h in sorted(held.items()):
        if ref not in want:
            plan.deletes.append(DeleteCopy(node, ref, h.revision, "unused"))
        elif ref not in sources:
            plan.deletes.append(DeleteCopy(node, ref, h.revision, "source gone"))
    for ref in sorted(want):
        source = sources.get(ref)
        if source is None:
            continue  # the agent waits ("waiting for secret ..."); nothing to copy
        current = held.get(ref)
        if source.kind == "Config":
            if current is None or current.uid != source.uid:
                plan.puts.append(PutCopy(node, source, "", current.revision if current else 0))
            continue
        if not public_key:
            continue
        if current is not None and current.uid == source.uid and \
                current.recipient == key_id(public_key):
            continue
        if not can_open:
            plan.undeliverable.append(source)
            continue
        plan.puts.append(PutCopy(node, source, public_key, current.revision if current else 0))
    return plan
