"""Replication leaves a start-first rollout's pair alone (controllers/replication/slots.py)."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.ops import CreateTask, DeleteTask, Op, UpdateTask
from controllers.replication import reconcile_service
from kubeless.api.tasks import REPLACES_ANNOTATION, Task, start_first_pair
from tests.support.builders import NOW, ids, in_eu, node, service, task

Resource = dict[str, Any]
NODES = [node("n1"), node("n2")]


def decide(svc: Resource, tasks: list[Task]) -> list[tuple[str, Any, Any]]:
    ops: list[Op] = reconcile_service(svc, tasks, NODES, NOW, new_id=ids(), eligible=in_eu).ops
    out: list[tuple[str, Any, Any]] = []
    for op in ops:
        if isinstance(op, CreateTask):
            out.append(("create", op.task["spec"].get("slot"), None))
        elif isinstance(op, UpdateTask):
            out.append(("update", op.task["metadata"]["name"], op.task["spec"]["desiredState"]))
        elif isinstance(op, DeleteTask):
            out.append(("delete", op.task["metadata"]["name"], None))
    return out


def new(name: str, replaces: str | None, *, slot: int = 1, state: str = "running",
        version: int = 2) -> Task:
    return task(name, slot=slot, node="n2", state=state, version=version,
                annotations={REPLACES_ANNOTATION: replaces} if replaces else None)


OLD = task("old", slot=1, node="n1")

CASES: dict[str, tuple[Resource, list[Task], list[tuple[str, Any, Any]]]] = {
    "the pair, new one pending: left alone": (
        service(1, generation=2), [OLD, new("n", "old", state="pending")], []),
    "the pair, both running: left alone (the rollout stops the old one)": (
        service(1, generation=2), [OLD, new("n", "old")], []),
    "no replaces annotation: the usual rule, newer spec stays": (
        service(1, generation=2), [OLD, new("n", None)], [("update", "old", "shutdown")]),
    "replaces another task: the usual rule": (
        service(1, generation=2), [OLD, new("n", "zzz")], [("update", "old", "shutdown")]),
    "the new one is older: the usual rule": (
        service(1, generation=2), [OLD, new("n", "old", version=0)],
        [("update", "n", "shutdown")]),
    "the same version (a rebalance's move): left alone": (
        service(1, generation=2), [OLD, new("n", "old", version=1)], []),
    "the new one failed: the old one stays, the new one is stopped": (
        service(1, generation=2), [OLD, new("n", "old", state="failed")],
        [("update", "n", "shutdown")]),
    "the old one ended: the new one stays": (
        service(1, generation=2), [task("old", slot=1, node="n1", state="failed"),
                                   new("n", "old", state="pending")],
        [("update", "old", "shutdown")]),
    "three claimants: the usual rule": (
        service(1, generation=2), [OLD, new("n", "old"), task("x", slot=1, node="n1")],
        [("update", "x", "shutdown"), ("update", "old", "shutdown")]),
    "a pair counts as one slot when filling": (
        service(2, generation=2), [OLD, new("n", "old")], [("create", 2, None)]),
    "scaling a pair's slot away stops both": (
        service(1, generation=2), [task("a", slot=1, node="n1"), task("old", slot=2, node="n2"),
                                   new("n", "old", slot=2)],
        [("update", "old", "shutdown"), ("update", "n", "shutdown")]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_pairs(case: str) -> None:
    svc, tasks, expected = CASES[case]
    assert sorted(decide(svc, tasks)) == sorted(expected)


def test_start_first_pair_returns_new_then_old() -> None:
    pair = start_first_pair([new("n", "old"), OLD])
    assert pair is not None and pair[0].id == "n"
    pair = start_first_pair([OLD, new("n", "old")])
    assert pair is not None and pair[1].id == "old"
