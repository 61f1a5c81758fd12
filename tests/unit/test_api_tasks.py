"""The Task model: the effective status, each accessor, the start-first pair."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeless.api.tasks import (REPLACES_ANNOTATION, TASK_STATES, Task, effective_state,
                                start_first_pair)

Resource = dict[str, Any]


def stored(name: str = "t1", *, state: str = "assigned", node: str | None = "n1",
           slot: Any = 1, desired: Any = "running", version: Any = 3, ts: Any = 100.0,
           replaces: str | None = None, created: Any = None) -> Resource:
    spec: Resource = {"serviceName": "web", "serviceUid": "u1", "specVersion": version,
                      "desiredState": desired}
    if slot is not None:
        spec["slot"] = slot
    if node is not None:
        spec["nodeName"] = node
    meta: Resource = {"name": name, "namespace": "prod"}
    if replaces:
        meta["annotations"] = {REPLACES_ANNOTATION: replaces}
    if created is not None:
        meta["creationTimestamp"] = created
    return {"kind": "Task", "metadata": meta, "spec": spec,
            "status": {"state": state, "timestamp": ts}}


# -- the effective status ------------------------------------------------------------

STATUS_CASES: dict[str, tuple[Resource, Resource | None, str, Any]] = {
    # name: (stored, report, effective state, effective timestamp)
    "no report: own status": (stored(), None, "assigned", 100.0),
    "report further along wins, with its fields": (
        stored(), {"state": "running", "timestamp": 200.0, "nodeName": "n1"}, "running", 200.0),
    "a stale report never undoes orphaned": (
        stored(state="orphaned"), {"state": "running", "timestamp": 200.0}, "orphaned", 100.0),
    "a report from another node is ignored": (
        stored(), {"state": "running", "timestamp": 200.0, "nodeName": "n2"}, "assigned", 100.0),
    "a report without a timestamp keeps the own one": (
        stored(), {"state": "running"}, "running", 100.0),
}


@pytest.mark.parametrize("case", list(STATUS_CASES))
def test_effective_status(case: str) -> None:
    task, report, state, ts = STATUS_CASES[case]
    t = Task.of(task, report)
    assert (t.state, t.status.get("timestamp")) == (state, ts)
    assert t.stored is task and "effectiveState" not in task  # nothing written into the dict


@settings(max_examples=200, deadline=None)
@given(own=st.sampled_from(TASK_STATES), reported=st.none() | st.sampled_from(TASK_STATES),
       node=st.sampled_from([None, "n1", "n2"]))
def test_state_is_effective_state(own: str, reported: str | None, node: str | None) -> None:
    task = stored(state=own)
    report = None if reported is None else {"state": reported, **({"nodeName": node} if node
                                                                 else {})}
    assert Task.of(task, report).state == effective_state(task, report)


# -- accessors -----------------------------------------------------------------------

def test_identity_and_placement() -> None:
    t = Task.of(stored(created="2026-01-02T03:04:05+00:00"))
    assert (t.id, t.namespace, t.service_name, t.service_uid) == ("t1", "prod", "web", "u1")
    assert (t.slot, t.node, t.spec_version, t.desired, t.wants_running) == \
        (1, "n1", 3, "running", True)
    assert t.created_time == 1767323045.0 and t.status_time == 100.0


ODD_CASES: dict[str, tuple[Resource, str, Any]] = {
    # name: (stored, accessor, value)
    "a global task has no slot": (stored(slot=None), "slot", None),
    "a boolean is no slot": (stored(slot=True), "slot", None),
    "an unplaced task has no node": (stored(node=None), "node", None),
    "an empty node name is no node": (stored(node=""), "node", None),
    "an unknown spec version is -1": (stored(version=None), "spec_version", -1),
    "desired state defaults to running": (stored(desired=None), "desired", "running"),
    "desired shutdown is not wanted running": (stored(desired="shutdown"), "wants_running", False),
    "no annotation replaces nothing": (stored(), "replaces", None),
    "an RFC 3339 time with Z": (stored(ts="1970-01-01T00:01:40Z"), "status_time", 100.0),
    "an unreadable time is none": (stored(ts="soon"), "status_time", None),
}


@pytest.mark.parametrize("case", list(ODD_CASES))
def test_accessor_edges(case: str) -> None:
    task, accessor, value = ODD_CASES[case]
    assert getattr(Task.of(task), accessor) == value


UP_CASES: dict[str, tuple[str, Any, str, bool, bool, bool]] = {
    # name: (state, health, desired, is_done, is_up, occupies)
    "running, no healthcheck": ("running", None, "running", False, True, True),
    "running, health starting": ("running", "starting", "running", False, False, True),
    "running, unhealthy": ("running", "unhealthy", "running", False, False, True),
    "running, healthy": ("running", "healthy", "running", False, True, True),
    "assigned": ("assigned", None, "running", False, False, True),
    "told to stop": ("running", None, "shutdown", False, True, False),
    "failed": ("failed", None, "running", True, False, False),
    "orphaned": ("orphaned", None, "running", True, False, False),
}


@pytest.mark.parametrize("case", list(UP_CASES))
def test_done_up_occupies(case: str) -> None:
    state, health, desired, done, up, occupies = UP_CASES[case]
    report: Resource = {"state": state, **({"health": health} if health else {})}
    t = Task.of(stored(state="assigned", desired=desired), report)
    assert (t.is_done, t.is_up, t.occupies) == (done, up, occupies)


def test_identity_equality() -> None:
    a = stored()
    assert Task.of(a) != Task.of(a)  # equal only to itself: tasks are told apart by identity
    first = Task.of(a)
    assert first == first and len({first, Task.of(a)}) == 2


# -- the start-first pair ------------------------------------------------------------

OLD = Task.of(stored("old", state="running", version=1))


def new(replaces: str | None = "old", *, version: int = 2, state: str = "starting") -> Task:
    return Task.of(stored("new", state=state, version=version, replaces=replaces))


PAIR_CASES: dict[str, tuple[list[Task], bool]] = {
    "new replaces old": ([new(), OLD], True),
    "either order": ([OLD, new()], True),
    "no annotation": ([new(None), OLD], False),
    "names another task": ([new("other"), OLD], False),
    "an older version": ([new(version=0), OLD], False),
    "the same version (a rebalance's move)": ([new(version=1), OLD], True),
    "the new one ended": ([new(state="failed"), OLD], False),
    "three claimants": ([new(), OLD, Task.of(stored("third"))], False),
    "one claimant": ([OLD], False),
}


@pytest.mark.parametrize("case", list(PAIR_CASES))
def test_start_first_pair(case: str) -> None:
    claimants, is_pair = PAIR_CASES[case]
    pair = start_first_pair(claimants)
    assert (pair is not None) == is_pair
    if pair is not None:
        assert (pair[0].id, pair[1].id) == ("new", "old")
