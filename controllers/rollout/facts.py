"""What the rollout reads off a service and its tasks: config, versions, slots, failures.

A task is *current* when it was frozen from the service's present content
(template, placement, ports) and is no older than the generation at which
``forceUpdate`` last changed: comparing content means a scale or an
update-config change replaces nothing and a rollback finds the tasks it
rolls back to already current (Swarm compares specs the same way);
comparing generations for ``forceUpdate`` makes ``service update --force``
replace every task. ``placement.rebalance`` is no content: it says how tasks
may move later, not what they are, so turning it on or off replaces none.
Tasks are grouped into slots (the slot number, or the node of a global
service) with their *claimants* (tasks wanting to run).
Reading one task (state, version, "replaces", times) is the Task model's
(``kubeless.api.tasks``), as is the start-first pair (``Slot.pair`` adds
the rollout's condition: the new task is the current target; a rebalance's pair
has both current).

Deciding what to do with these facts is ``decide``'s.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from kubeless.api.tasks import Task, start_first_pair
from kubeless.api.units import parse_duration

Resource = dict[str, Any]
SlotKey = int | str
FAILURE_STATES = frozenset({"failed", "rejected", "complete"})
CONTENT_FIELDS = ("template", "placement", "ports")
NOT_CONTENT = "rebalance"  # in placement: how tasks move, not what they are


def _seconds(text: Any, default: float) -> float:
    try:
        return parse_duration(str(text))
    except ValueError:
        return default


@dataclass(frozen=True)
class UpdateConfig:
    """spec.update or spec.rollback, parsed (Swarm's defaults)."""

    parallelism: int = 1
    delay: float = 0.0
    failure_action: str = "pause"
    monitor: float = 5.0
    max_failure_ratio: float = 0.0
    order: str = "stop-first"

    @classmethod
    def of(cls, raw: Resource | None) -> UpdateConfig:
        raw = raw or {}
        return cls(parallelism=max(int(raw.get("parallelism", 1)), 0),
                   delay=_seconds(raw.get("delay", "0s"), 0.0),
                   failure_action=str(raw.get("failureAction", "pause")),
                   monitor=_seconds(raw.get("monitor", "5s"), 5.0),
                   max_failure_ratio=float(raw.get("maxFailureRatio", 0) or 0),
                   order=str(raw.get("order", "stop-first")))


def content(spec: Resource) -> Resource:
    """The part of a service (or task) spec that a task is made of."""
    out: Resource = {f: spec.get(f) or ({} if f != "ports" else []) for f in CONTENT_FIELDS}
    out["placement"] = _placement(out["placement"])
    return out


def _placement(placement: Resource) -> Resource:
    if NOT_CONTENT not in placement:
        return placement  # the usual case: no copy
    return {k: v for k, v in placement.items() if k != NOT_CONTENT}


def fingerprint(spec: Resource) -> str:
    """Names a rollout's target: the content plus forceUpdate."""
    body = {**content(spec), "forceUpdate": int(spec.get("forceUpdate") or 0)}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def current_test(spec: Resource, force_base: int) -> Callable[[Task], bool]:
    """Whether a task is current: its version first (cheap), then its content, field
    by field (``content`` without building a dict per task)."""
    want = content(spec)
    template, placement, ports = want["template"], want["placement"], want["ports"]

    def test(t: Task) -> bool:
        if t.spec_version < force_base:
            return False
        s = t.spec
        return bool((s.get("template") or {}) == template
                    and _placement(s.get("placement") or {}) == placement
                    and (s.get("ports") or []) == ports)
    return test


def slot_key(task: Task) -> SlotKey | None:
    """The slot number, or the node of a global task (None: an unplaced global task)."""
    key: SlotKey | None = task.slot
    return task.node if key is None else key


def pair_candidates(tasks: list[Task]) -> list[Task]:
    """The tasks of the slots where a start-first pair may be: those holding a task
    that wants to run and replaces another that still wants to (no other slot has one)."""
    if not any(t.replaces for t in tasks):
        return []  # no task replaces another: no pair anywhere
    claimants = [t for t in tasks if t.wants_running]
    names = {t.id for t in claimants}
    keys = {slot_key(t) for t in claimants if t.replaces in names}
    keys.discard(None)
    return [t for t in tasks if slot_key(t) in keys] if keys else []


@dataclass
class Slot:
    """One slot (or global node): its tasks, split by version, claimants apart."""

    key: SlotKey
    tasks: list[Task] = field(default_factory=list)
    old: list[Task] = field(default_factory=list)   # old claimants
    new: list[Task] = field(default_factory=list)   # current claimants
    current: list[Task] = field(default_factory=list)  # every current task, any desired

    @property
    def held(self) -> bool:
        return bool(self.old or self.new)

    def pair(self) -> tuple[Task, Task] | None:
        """(new, old) of a start-first replacement in progress: the slot's claimants are a
        start-first pair whose new task is current (an update's, whose old task is not,
        or a rebalance's, whose old task is current too)."""
        claimants = self.old + self.new
        if len(claimants) != 2 or not self.new:
            return None
        pair = start_first_pair(claimants)
        return pair if pair is not None and any(pair[0] is t for t in self.new) else None


def slots_of(tasks: list[Task], is_current: Callable[[Task], bool]) -> list[Slot]:
    by_key: dict[SlotKey, Slot] = {}
    for t in tasks:
        key = slot_key(t)
        if key is None:
            continue  # an unplaced global task: replication's to sort out
        slot = by_key.setdefault(key, Slot(key))
        slot.tasks.append(t)
        cur = is_current(t)
        if cur:
            slot.current.append(t)
        if t.wants_running:
            (slot.new if cur else slot.old).append(t)
    return sorted(by_key.values(), key=lambda s: (isinstance(s.key, str), str(s.key).zfill(12)))


def in_flight(task: Task) -> bool:
    """A current claimant on its way: neither up yet nor ended."""
    return not task.is_done and not task.is_up


def failed_within(task: Task, monitor: float, since: float) -> bool:
    """The task failed, was rejected or exited within ``monitor`` of its creation, after
    ``since``: a failure of the rollout."""
    if task.state not in FAILURE_STATES:
        return False
    ended = task.status_time
    created = task.created_time
    if ended is None or ended < since:
        return False
    return created is None or ended - created <= monitor
