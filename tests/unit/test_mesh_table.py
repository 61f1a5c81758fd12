"""The userspace path's choices, as pure functions (no sockets): which backends a service
document names, and the order of attempts per connection (``table.Rotation``: a group by
weight, round robin inside it, a memory of refusals)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from kubeless_agent.mesh.published import Group, shares
from kubeless_agent.mesh.table import Backend, Rotation, backends_for


def ep(task: str, address: str, host_port: int, target: int = 80,
       protocol: str = "tcp") -> dict[str, Any]:
    return {"task": task, "slot": 1, "node": "n-" + address, "address": address,
            "ports": [{"target": target, "published": host_port, "protocol": protocol}]}


A, B, C = Backend("10.0.0.1", 32768), Backend("10.0.0.2", 32769), Backend("10.0.0.3", 32770)
X, Y = Backend("10.0.1.1", 32768), Backend("10.0.1.2", 32769)


def test_backends_skip_endpoints_without_that_target_or_address() -> None:
    d = {"endpoints": [ep("t1", "127.0.0.2", 32768, target=81), {"task": "t2", "ports": []},
                       ep("t3", "", 1), ep("t4", "127.0.0.4", 32771, protocol="udp"),
                       ep("t5", "127.0.0.5", 32772)]}
    assert [b.task for b in backends_for(d, 80)] == ["t5"]
    assert [b.task for b in backends_for(d, 80, "udp")] == ["t4"]


def rotation(*groups: Group, cursors: dict[str, int] | None = None) -> Rotation:
    return Rotation(shares(groups), cursors)


def firsts(r: Rotation, draws: list[float]) -> list[Backend]:
    return [r.order(d, {}, 0.0)[0] for d in draws]


@pytest.mark.parametrize("weights", [(90, 10), (50, 50), (1, 3), (70, 20, 10)])
def test_groups_are_drawn_by_weight(weights: tuple[int, ...]) -> None:
    groups = [Group(f"default/s{i}", w, (Backend(f"10.0.{i}.1", 80),))
              for i, w in enumerate(weights)]
    r = rotation(*groups)
    draws = random.Random(17)
    n = 20_000
    seen = Counter(r.order(draws.random(), {}, 0.0)[0].address for _ in range(n))
    for i, w in enumerate(weights):
        assert abs(seen[f"10.0.{i}.1"] / n - w / sum(weights)) < 0.02, seen


def test_the_draw_splits_the_unit_interval_in_order() -> None:
    r = rotation(Group("default/a", 90, (A,)), Group("default/b", 10, (X,)))
    assert firsts(r, [0.0, 0.5, 0.8999, 0.9001, 0.9999]) == [A, A, A, X, X]


@pytest.mark.parametrize("dead", [
    Group("default/zero", 0, (X, Y)),  # weight 0
    Group("default/empty", 50, ()),  # no healthy task
])
def test_a_group_with_no_weight_or_no_backend_gets_nothing(dead: Group) -> None:
    r = rotation(Group("default/a", 10, (A, B)), dead)
    draws = random.Random(1)
    orders = [r.order(draws.random(), {}, 0.0) for _ in range(1000)]
    assert all(set(o) == {A, B} for o in orders)


def test_nothing_live_no_attempts() -> None:
    assert rotation().order(0.3, {}, 0.0) == []
    assert rotation(Group("default/a", 0, (A,)), Group("default/b", 5, ())).order(0.3, {}, 0.0) == []


def test_round_robin_inside_a_group() -> None:
    r = rotation(Group("default/a", 1, (A, B, C)), Group("default/b", 1, (X, Y)))
    assert firsts(r, [0.1] * 6) == [A, B, C, A, B, C]
    assert firsts(r, [0.9] * 3) == [X, Y, X]
    assert r.order(0.1, {}, 0.0) == [A, B, C, X, Y]  # the other group after the drawn one
    assert r.order(0.9, {}, 0.0) == [Y, X, A, B, C]


def test_cursors_survive_a_new_weight() -> None:
    r = rotation(Group("default/a", 90, (A, B, C)), Group("default/b", 10, (X,)))
    firsts(r, [0.1])
    again = rotation(Group("default/a", 50, (A, B, C)), Group("default/b", 50, (X,)),
                     cursors=r.cursors_by_service())
    assert firsts(again, [0.1, 0.1]) == [B, C]


def test_a_backend_that_just_failed_goes_last_until_its_memory_ends() -> None:
    group = Group("default/a", 1, (A, B, C))
    assert rotation(group, cursors={"default/a": 1}).order(0.5, {B: 10.0}, now=5.0) == [C, A, B]
    assert rotation(group, cursors={"default/a": 1}).order(0.5, {B: 10.0}, now=10.0) == [B, C, A]


def test_a_group_whose_backends_all_refused_is_not_drawn_until_their_memory_ends() -> None:
    r = rotation(Group("default/a", 90, (A, B)), Group("default/b", 10, (X,)))
    failed = {A: 10.0, B: 10.0}
    assert all(r.order(d, failed, now=5.0) == [X, A, B] for d in (0.0, 0.5, 0.95))
    assert r.order(0.0, failed, now=10.0)[0] in (A, B)


def test_all_failed_still_tried_in_order() -> None:
    r = rotation(Group("default/a", 1, (A, B)), Group("default/b", 1, (X,)))
    assert r.order(0.2, {A: 9.0, B: 9.0, X: 9.0}, now=1.0) == [A, B, X]
