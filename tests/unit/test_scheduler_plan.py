"""plan_placements: spread, preferences, limits, unschedulable reasons, global tasks, properties."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.scheduler.filters import DEFAULT_PIPELINE
from controllers.scheduler.nodeinfo import build_nodeinfos
from controllers.scheduler.plan import Plan, plan_placements
from controllers.scheduler.request import TaskRequest
from kubeless.api.tasks import Task
from lab.synthetic import make_node
from lab.synthetic import make_task as make_stored

Resource = dict[str, Any]


def make_task(name: str, **kwargs: Any) -> Task:
    """A synthetic task as the scheduler receives it (a Task with no agent report)."""
    return Task.of(make_stored(name, **kwargs))


def pending(n: int, service: str = "web", **kwargs: Any) -> list[Task]:
    return [make_task(f"{service}-{i}", service=service, slot=i + 1, **kwargs) for i in range(n)]


def placed(plan: Plan) -> Counter[str]:
    return Counter(a.node_id for a in plan.assignments)


def test_ten_replicas_on_three_empty_nodes() -> None:
    nodes = [make_node(n) for n in ("n1", "n2", "n3")]
    tasks = pending(10)
    plan = plan_placements(tasks, nodes, tasks)
    assert [a.node_id for a in plan.assignments] == ["n1", "n2", "n3"] * 3 + ["n1"]
    assert placed(plan) == {"n1": 4, "n2": 3, "n3": 3}
    assert plan.assignments[3].scores == {"service_tasks": 1, "total_tasks": 1}
    assert plan.unschedulable == []


def test_existing_tasks_of_the_service_are_respected() -> None:
    nodes = [make_node(n) for n in ("n1", "n2", "n3")]
    running = [make_task(f"old{i}", node="n1", state="running") for i in range(2)]
    tasks = pending(4)
    plan = plan_placements(tasks, nodes, running + tasks)
    assert placed(plan) == {"n2": 2, "n3": 2}


def test_total_load_breaks_ties() -> None:
    nodes = [make_node(n) for n in ("n1", "n2", "n3")]
    other = [make_task("db", service="db", node="n1", state="running"),
             make_task("db2", service="db", node="n2", state="starting")]
    plan = plan_placements(pending(1), nodes, other)
    assert plan.assignments[0].node_id == "n3"
    assert plan.assignments[0].scores == {"service_tasks": 0, "total_tasks": 0}


def test_stopped_tasks_do_not_count() -> None:
    nodes = [make_node(n) for n in ("n1", "n2")]
    old = [make_task("a", node="n1", state="failed"),
           make_task("b", node="n1", state="running", desired="shutdown")]
    plan = plan_placements(pending(1), nodes, old)
    assert plan.assignments[0].node_id == "n1"


def test_spread_preference_over_zones_and_unlabelled_nodes() -> None:
    nodes = [make_node("n1", labels={"zone": "eu"}), make_node("n2", labels={"zone": "eu"}),
             make_node("n3", labels={"zone": "us"}), make_node("n4"), make_node("n5")]
    plan = plan_placements(pending(6, preferences=["node.labels.zone"]), nodes, [])
    assert placed(plan) == {"n1": 1, "n2": 1, "n3": 2, "n4": 1, "n5": 1}
    groups = Counter(a.scores["group"] for a in plan.assignments)
    assert groups == {"zone=eu": 2, "zone=us": 2, "zone=(none)": 2}


def test_spread_preference_counts_existing_tasks_per_zone() -> None:
    nodes = [make_node("n1", labels={"zone": "eu"}), make_node("n2", labels={"zone": "eu"}),
             make_node("n3", labels={"zone": "us"})]
    running = [make_task(f"old{i}", node="n3", state="running") for i in range(3)]
    plan = plan_placements(pending(5, preferences=["node.labels.zone"]), nodes, running)
    # eu catches up with us' 3 first (ties go to eu, the first value), then us gets one.
    assert placed(plan) == {"n1": 2, "n2": 2, "n3": 1}


def test_nested_preferences() -> None:
    nodes = [make_node(f"n{i}", labels={"zone": z, "rack": r})
             for i, (z, r) in enumerate([("eu", "a"), ("eu", "a"), ("eu", "b"), ("us", "c")])]
    plan = plan_placements(pending(4, preferences=["node.labels.zone", "node.labels.rack"]),
                           nodes, [])
    assert placed(plan) == {"n0": 1, "n2": 1, "n3": 2}
    assert plan.assignments[0].scores["group"] == "zone=eu,rack=a"


def test_max_replicas_per_node() -> None:
    nodes = [make_node("n1"), make_node("n2")]
    plan = plan_placements(pending(3, max_replicas=1), nodes, [])
    assert placed(plan) == {"n1": 1, "n2": 1}
    assert [u.reason for u in plan.unschedulable] == [
        "no suitable node (max replicas per node reached on 2 nodes)"]


def test_host_port_conflicts() -> None:
    nodes = [make_node("n1"), make_node("n2")]
    other = [make_task("x", service="proxy", node="n1", state="running", host_ports=[80])]
    plan = plan_placements(pending(2, host_ports=[80]), nodes, other)
    assert [a.node_id for a in plan.assignments] == ["n2"]
    assert [u.reason for u in plan.unschedulable] == [
        "no suitable node (host-mode port already in use on 2 nodes)"]


def test_reservations_accumulate_within_a_batch() -> None:
    plan = plan_placements(pending(3, memory="512Mi"), [make_node("n1", memory="1Gi")], [])
    assert placed(plan) == {"n1": 2}
    assert [u.reason for u in plan.unschedulable] == [
        "no suitable node (insufficient memory on 1 node)"]


def test_unschedulable_reason_text() -> None:
    nodes = [make_node("n1"), make_node("n2"),
             make_node("n3", labels={"zone": "eu"}, memory="1Gi")]
    tasks = pending(1, constraints=["node.labels.zone==eu"], memory="2Gi")
    plan = plan_placements(tasks, nodes, [])
    assert plan.assignments == []
    assert plan.unschedulable[0].reason == (
        "no suitable node (constraints not satisfied on 2 nodes, insufficient memory on 1 node)")


def test_invalid_constraint_is_unschedulable() -> None:
    plan = plan_placements(pending(1, constraints=["node.ip==1.2.3.4"]), [make_node("n1")], [])
    assert plan.unschedulable[0].reason.startswith(
        "invalid placement: constraint 'node.ip==1.2.3.4': unknown attribute \"node.ip\"")


def test_global_tasks_are_checked_on_their_node() -> None:
    nodes = [make_node("n1", memory="1Gi"), make_node("n2", state="down"),
             make_node("n3", labels={"zone": "eu"})]
    tasks = [make_task(f"g-{n}", service="agent", slot=None, node=n, memory="1Gi",
                       constraints=["node.labels.zone!=us"])
             for n in ("n1", "n2", "n3", "gone")]
    plan = plan_placements(tasks, nodes, tasks)  # pending global tasks are in all_tasks too
    assert [(a.task.id, a.node_id) for a in plan.assignments] == [
        ("g-n1", "n1"), ("g-n3", "n3")]
    assert [(u.task.id, u.reason) for u in plan.unschedulable] == [
        ("g-n2", "no suitable node (not ready on 1 node)"),
        ("g-gone", "no suitable node (node gone not found)")]


def test_global_tasks_go_before_replicated_ones() -> None:
    nodes = [make_node("n1", memory="1Gi")]
    replicated = pending(1, memory="1Gi")
    fixed = [make_task("g", service="agent", slot=None, node="n1", memory="1Gi")]
    plan = plan_placements(replicated + fixed, nodes, [])
    assert [a.task.id for a in plan.assignments] == ["g"]


def test_many_small_services_spread_like_one_tree() -> None:
    """The cheap path for small groups picks what the tree would."""
    nodes = [make_node(f"n{i:02d}", labels={"zone": "eu" if i % 2 else "us"}) for i in range(40)]
    tasks = [t for s in range(30) for t in pending(2, service=f"s{s}")]
    plan = plan_placements(tasks, nodes, [])
    assert max(placed(plan).values()) - min(placed(plan).values()) <= 1
    assert len(placed(plan)) == 40
    for s in range(30):
        assert len({a.node_id for a in plan.assignments
                    if a.task.service_name == f"s{s}"}) == 2


# --- properties -------------------------------------------------------------------------

ZONES = st.sampled_from([None, "eu", "us"])


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[Resource], list[Task], list[Task]]:
    nodes = [make_node(f"n{i}", state=draw(st.sampled_from(["ready", "ready", "down"])),
                       availability=draw(st.sampled_from(["active", "active", "drain", "pause"])),
                       labels={"zone": z} if (z := draw(ZONES)) else {},
                       cpus=draw(st.sampled_from([0, 1, 2, 4])),
                       memory=draw(st.sampled_from([0, 1 << 30, 4 << 30])))
             for i in range(draw(st.integers(1, 8)))]
    services: list[dict[str, Any]] = []
    for s in range(draw(st.integers(1, 3))):
        services.append(dict(
            service=f"s{s}",
            cpus=draw(st.sampled_from([None, 0.5, 1.0])),
            memory=draw(st.sampled_from([None, "256Mi", "1Gi"])),
            constraints=draw(st.sampled_from([(), ("node.labels.zone==eu",),
                                              ("node.labels.zone!=us",)])),
            preferences=draw(st.sampled_from([(), ("node.labels.zone",)])),
            max_replicas=draw(st.sampled_from([0, 1, 2])),
            host_ports=draw(st.sampled_from([(), (80,)]))))
    existing = [make_task(f"old{i}", node=f"n{draw(st.integers(0, len(nodes) - 1))}",
                          state="running", **draw(st.sampled_from(services)))
                for i in range(draw(st.integers(0, 6)))]
    to_place = []
    for i in range(draw(st.integers(1, 25))):
        kwargs: dict[str, Any] = dict(draw(st.sampled_from(services)))
        if draw(st.integers(0, 5)) == 0:
            kwargs["node"] = f"n{draw(st.integers(0, len(nodes)))}"
        to_place.append(make_task(f"new{i}", slot=i + 1, **kwargs))
    return nodes, existing, to_place


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_every_assignment_passes_every_filter(
        cluster: tuple[list[Resource], list[Task], list[Task]]) -> None:
    nodes, existing, to_place = cluster
    plan = plan_placements(to_place, nodes, existing + to_place)
    assert len(plan.assignments) + len(plan.unschedulable) == len(to_place)
    infos = build_nodeinfos(nodes, existing)
    for assignment in plan.assignments:
        request = TaskRequest.of(assignment.task.stored)
        info = infos[assignment.node_id]
        assert DEFAULT_PIPELINE.first_failure(request, info) is None, assignment
        info.add(request.usage)


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_no_node_exceeds_its_capacity(
        cluster: tuple[list[Resource], list[Task], list[Task]]) -> None:
    nodes, _, to_place = cluster
    plan = plan_placements(to_place, nodes, to_place)
    infos = build_nodeinfos(nodes, [])
    for assignment in plan.assignments:
        infos[assignment.node_id].add(TaskRequest.of(assignment.task.stored).usage)
    for info in infos.values():
        assert info.reserved_memory <= info.memory or info.reserved_memory == 0
        assert info.reserved_nano_cpus <= info.nano_cpus or info.reserved_nano_cpus == 0


@settings(max_examples=200, deadline=None)
@given(n_nodes=st.integers(1, 30), n_tasks=st.integers(0, 200),
       small_services=st.integers(0, 20))
def test_spread_is_even_from_empty(n_nodes: int, n_tasks: int, small_services: int) -> None:
    nodes = [make_node(f"n{i}") for i in range(n_nodes)]
    tasks = pending(n_tasks)
    others = [make_task(f"o{s}", service=f"other{s}") for s in range(small_services)]
    plan = plan_placements(others + tasks, nodes, [])
    counts = Counter(a.node_id for a in plan.assignments
                     if a.task.service_name == "web")
    per_node = [counts.get(f"n{i}", 0) for i in range(n_nodes)]
    assert max(per_node) - min(per_node) <= 1
    assert plan.unschedulable == []
