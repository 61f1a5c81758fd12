"""NodeAggregates kept task by task give the same NodeInfos as build_nodeinfos from scratch."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.scheduler.aggregates import NodeAggregates
from controllers.scheduler.nodeinfo import NodeInfo, build_nodeinfos
from controllers.scheduler.request import task_key
from kubeless.api.tasks import Task
from lab.synthetic import make_node, make_task

Resource = dict[str, Any]
NODES = [make_node(f"n{i}", cpus=8, memory="16Gi") for i in range(4)]


def facts(info: NodeInfo) -> tuple[Any, ...]:
    return (info.id, info.nano_cpus, info.memory, info.reserved_nano_cpus, info.reserved_memory,
            info.host_ports, info.service_tasks, info.total_tasks)


def same(a: dict[str, NodeInfo], b: dict[str, NodeInfo]) -> bool:
    return {k: facts(v) for k, v in a.items()} == {k: facts(v) for k, v in b.items()}


TASK = st.builds(
    lambda name, service, node, state, desired, cpus, port: Task.of(make_task(
        name, service=service, node=node, state=state, desired=desired, cpus=cpus,
        memory="64Mi" if cpus else None, host_ports=[port] if port else [])),
    name=st.sampled_from([f"t{i}" for i in range(8)]),
    service=st.sampled_from(["web", "db"]),
    node=st.sampled_from([None, "n0", "n1", "n3", "gone"]),
    state=st.sampled_from(["pending", "assigned", "running", "failed", "orphaned"]),
    desired=st.sampled_from(["running", "running", "shutdown"]),
    cpus=st.sampled_from([None, 0.5, 1]),
    port=st.sampled_from([0, 0, 8080]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(TASK, st.booleans(), st.booleans()), max_size=30))
def test_incremental_sums_match_a_full_rebuild(changes: list[tuple[Task, bool, bool]]) -> None:
    """Any sequence of puts and deletes, waiting tasks left out as the scheduler leaves
    out the tasks it places."""
    aggregates = NodeAggregates()
    tasks: dict[str, Task] = {}
    waiting: set[str] = set()
    for task, deleted, waits in changes:
        key = task.id
        if deleted:
            tasks.pop(key, None)
            waiting.discard(key)
            aggregates.update(key, None)
        else:
            tasks[key] = task
            (waiting.add if waits else waiting.discard)(key)
            aggregates.update(key, task, waits)
        exclude = {task_key(tasks[k].stored) for k in waiting}
        assert same(aggregates.infos(NODES), build_nodeinfos(NODES, tasks.values(), exclude))


def test_infos_are_fresh_copies() -> None:
    aggregates = NodeAggregates()
    aggregates.update("a", Task.of(make_task("a", node="n0", state="running", host_ports=[80])))
    first = aggregates.infos(NODES)
    first["n0"].add_task(make_task("b", node="n0", state="running", host_ports=[81]))
    assert facts(aggregates.infos(NODES)["n0"]) == facts(
        build_nodeinfos(NODES, [Task.of(make_task("a", node="n0", state="running",
                                                  host_ports=[80]))])["n0"])
    assert len(aggregates) == 1
