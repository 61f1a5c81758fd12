"""Task states, and the Task model: what every role agrees a task is and how it stands.

States follow Swarm's order; a task's state only moves forward. The
controllers write a task's own status (pending, assigned, orphaned...),
the agent of its node reports what the runtime observed (accepted ...
running, complete, failed, rejected, shutdown) under its own prefix; the
state a user sees and controllers decide on is the later of the two
(``effective_state``), so a stale report can never undo "orphaned".

``Task`` is the one reading of a task: the stored resource (never
changed) with its effective status, computed once when the view is made
(``Task.of``), and every fact the controllers decide on (effective state,
slot, node, spec version, desired state, "wanted running", "occupies its
node", "replaces"), each defined here once. ``start_first_pair`` names
the pair a start-first update leaves in one slot. Building store writes
from a task is the controllers' (they copy ``Task.stored``).
"""

from __future__ import annotations

import math
import secrets
import string
from datetime import datetime
from typing import Any, Final, Sequence

Resource = dict[str, Any]

TASK_STATES = ("new", "pending", "assigned", "accepted", "preparing", "starting", "running",
               "complete", "shutdown", "failed", "rejected", "remove", "orphaned")
_ORDER = {s: i for i, s in enumerate(TASK_STATES)}

# Past "running": the task's container is gone or will never start.
TERMINAL_STATES = frozenset({"complete", "shutdown", "failed", "rejected", "remove", "orphaned"})
# States that count against a slot: the task runs or is on its way to running.
ACTIVE_STATES = frozenset({"new", "pending", "assigned", "accepted", "preparing", "starting",
                           "running"})
DESIRED_STATES = ("running", "shutdown", "remove")
# The annotation of a start-first replacement: the id of the task it replaces.
REPLACES_ANNOTATION = "kubeless.io/replaces"
# Health states under which a running task is not yet (or no longer) up.
NOT_UP_HEALTH = ("starting", "unhealthy")

_ID_ALPHABET = string.ascii_lowercase + string.digits
TASK_ID_LENGTH = 25


def state_index(state: str | None) -> int:
    return _ORDER.get(state or "new", 0)


def later_state(a: str | None, b: str | None) -> str:
    """The further along of two states (unknown states count as new)."""
    return (a or "new") if state_index(a) >= state_index(b) else (b or "new")


def effective_state(task: dict[str, Any], report: dict[str, Any] | None) -> str:
    """The state of a task given its own status and its agent's report (if any)."""
    own = (task.get("status") or {}).get("state")
    if report is None or report.get("nodeName", task["spec"].get("nodeName")) != \
            task["spec"].get("nodeName"):
        return own or "new"
    return later_state(own, report.get("state"))


def effective_status(task: dict[str, Any], report: dict[str, Any] | None) -> dict[str, Any]:
    """The task's status merged with its agent's report, whichever is further along."""
    own = dict(task.get("status") or {})
    state = effective_state(task, report)
    if report is not None and state == report.get("state") and state != own.get("state"):
        merged = {**own, **report}
        merged["state"] = state
        return merged
    own["state"] = state
    return own


def is_terminal(state: str | None) -> bool:
    return state in TERMINAL_STATES


def new_task_id() -> str:
    """25 lowercase alphanumerics, like Swarm's task ids."""
    number = secrets.randbits(130)  # 36**25 < 2**130: one draw from the OS, not 25
    chars = []
    for _ in range(TASK_ID_LENGTH):
        number, digit = divmod(number, 36)
        chars.append(_ID_ALPHABET[digit])
    return "".join(chars)


def task_display_name(task: dict[str, Any]) -> str:
    """``web.2`` for a replicated task, ``web.<node>`` for a global one (as docker service ps)."""
    spec = task.get("spec") or {}
    slot = spec.get("slot")
    suffix = slot if slot is not None else spec.get("nodeName", "?")
    return f"{spec.get('serviceName', '?')}.{suffix}"


def container_name(task: dict[str, Any]) -> str:
    """``<service>.<slot>.<task-id>`` (or ``<service>.<node-id>.<task-id>``), as Swarm names them."""
    return f"{task_display_name(task)}.{task['metadata']['name']}"


def created_at(resource: dict[str, Any]) -> float | None:
    """metadata.creationTimestamp as unix seconds, or None when absent or unreadable."""
    return parse_time((resource.get("metadata") or {}).get("creationTimestamp"))


def parse_time(value: Any) -> float | None:
    """Unix seconds from a number or a string (a number, or RFC 3339); None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str) or not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Task:
    """A stored Task resource with its effective status (see the module docstring).

    ``stored`` is the resource as stored and ``status`` its own status merged
    with its agent's report; both are shared with the cache that made the
    Task: read them, never change them (copy ``stored`` to write the task).
    ``spec`` and the effective ``state`` are read once, when the Task is made.
    The attributes are final (mypy refuses an assignment); two Tasks are
    equal only when they are the same object. A plain slotted class, not a
    frozen dataclass: the view makes one per change of a task or its report
    (10,000 tasks), and a frozen dataclass takes twice as long to make.
    """

    __slots__ = ("stored", "status", "spec", "state")

    def __init__(self, stored: Resource, status: Resource) -> None:
        self.stored: Final[Resource] = stored
        self.status: Final[Resource] = status
        self.spec: Final[Resource] = stored.get("spec") or {}
        # The effective state: the later of its own and its agent's.
        self.state: Final[str] = status.get("state") or "new"

    @classmethod
    def of(cls, stored: Resource, report: Resource | None = None) -> Task:
        """The task with its agent's ``report`` (None: no report, its own status stands)."""
        return cls(stored, effective_status(stored, report))

    def __repr__(self) -> str:
        return f"Task({self.id!r}, {self.state!r})"

    # -- what the task is --------------------------------------------------------

    @property
    def metadata(self) -> Resource:
        return self.stored.get("metadata") or {}

    @property
    def id(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "default")

    @property
    def service_name(self) -> str:
        return str(self.spec.get("serviceName", ""))

    @property
    def service_uid(self) -> str | None:
        return self.spec.get("serviceUid") or None

    @property
    def annotations(self) -> dict[str, str]:
        return self.metadata.get("annotations") or {}

    @property
    def slot(self) -> int | None:
        """The slot of a replicated task (None: a global task, or an unreadable slot)."""
        return _int_or_none(self.spec.get("slot"))

    @property
    def node(self) -> str | None:
        node = self.spec.get("nodeName")
        return node if isinstance(node, str) and node else None

    @property
    def spec_version(self) -> int:
        """The service generation the task was made from (-1: unknown)."""
        version = _int_or_none(self.spec.get("specVersion"))
        return -1 if version is None else version

    @property
    def replaces(self) -> str | None:
        """The id of the task this one replaces in a start-first update, if any."""
        return self.annotations.get(REPLACES_ANNOTATION) or None

    @property
    def desired(self) -> str:
        return str(self.spec.get("desiredState") or "running")

    @property
    def wants_running(self) -> bool:
        return (self.spec.get("desiredState") or "running") == "running"

    # -- how it stands -----------------------------------------------------------

    @property
    def own_state(self) -> str:
        """The state the controllers wrote (``status.state`` as stored)."""
        return str((self.stored.get("status") or {}).get("state") or "new")

    @property
    def is_done(self) -> bool:
        """Terminal: the container is gone or will never start."""
        return self.state in TERMINAL_STATES

    @property
    def is_up(self) -> bool:
        """Running, and not held back by a healthcheck (starting or unhealthy)."""
        return self.state == "running" and self.status.get("health") not in NOT_UP_HEALTH

    @property
    def occupies(self) -> bool:
        """Whether it holds its node's resources, ports and counts: it has a node,
        its effective state is active, and it is still meant to run."""
        spec = self.spec
        return (bool(spec.get("nodeName")) and self.state in ACTIVE_STATES
                and (spec.get("desiredState") or "running") == "running")

    @property
    def status_time(self) -> float | None:
        """When the task last changed state (its end time, once terminal)."""
        return parse_time(self.status.get("timestamp")) or \
            parse_time((self.stored.get("status") or {}).get("timestamp"))

    @property
    def created_time(self) -> float | None:
        return created_at(self.stored)


def start_first_pair(claimants: Sequence[Task]) -> tuple[Task, Task] | None:
    """(new, old) when ``claimants`` (a slot's tasks wanted running) are exactly the pair
    a start-first replacement leaves: two tasks, neither ended, one replacing the other
    (``kubeless.io/replaces``) from the same spec version or a newer one (an update's
    is newer; a rebalance moves a task at the version it has). Else None."""
    if len(claimants) != 2 or any(t.is_done for t in claimants):
        return None
    for new, old in ((claimants[0], claimants[1]), (claimants[1], claimants[0])):
        if new.replaces and new.replaces == old.id and new.spec_version >= old.spec_version:
            return new, old
    return None
