"""Store operations that controllers' decision functions return.

Decisions never touch etcd: they return these plain values, and the
controller's applier turns them into one transaction (or a few), each write
comparing the resourceVersion the decision read plus the leader fence.
Task dicts are full Task resources (see docs/MODEL.md); an update or delete
carries the ``metadata.resourceVersion`` it was decided from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Resource = dict[str, Any]


@dataclass(frozen=True)
class CreateTask:
    task: Resource


@dataclass(frozen=True)
class UpdateTask:
    """Replace a task (desired state, status, assignment) read at its resourceVersion."""

    task: Resource
    reason: str = ""


@dataclass(frozen=True)
class DeleteTask:
    task: Resource


@dataclass(frozen=True)
class AssignTask:
    """Bind a pending task to a node: the task update and the node's assignment key together."""

    task: Resource  # already carrying spec.nodeName and status.state "assigned"
    node_id: str


@dataclass(frozen=True)
class WriteServiceStatus:
    namespace: str
    name: str
    status: dict[str, Any]
    status_revision: int | None = None  # compare the status key's mod_revision when known


Op = CreateTask | UpdateTask | DeleteTask | AssignTask | WriteServiceStatus
