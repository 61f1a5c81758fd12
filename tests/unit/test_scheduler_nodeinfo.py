"""NodeInfo aggregates: which tasks occupy a node, and add/remove bookkeeping."""

from __future__ import annotations

import pytest

from controllers.scheduler.nodeinfo import NodeInfo, build_nodeinfos
from kubeless.api.tasks import Task
from lab.synthetic import make_node, make_task


@pytest.mark.parametrize(
    ("state", "desired", "node", "expected"),
    [
        pytest.param("running", "running", "n1", True, id="running"),
        pytest.param("assigned", "running", "n1", True, id="assigned"),
        pytest.param("pending", "running", "n1", True, id="pending-global"),
        pytest.param("pending", "running", None, False, id="pending-without-node"),
        pytest.param("running", "shutdown", "n1", False, id="being-stopped"),
        pytest.param("failed", "running", "n1", False, id="failed"),
        pytest.param("orphaned", "running", "n1", False, id="orphaned"),
        pytest.param("complete", "running", "n1", False, id="complete"),
    ],
)
def test_occupies(state: str, desired: str, node: str | None, expected: bool) -> None:
    assert Task.of(make_task("t", state=state, desired=desired, node=node)).occupies is expected


def test_occupies_reads_effective_state_over_own_status() -> None:
    task = Task.of(make_task("t", node="n1", state="running"), {"state": "failed"})
    assert not task.occupies


def test_add_and_remove_task() -> None:
    info = NodeInfo.of(make_node("n1", cpus=2, memory="1Gi"))
    a = make_task("a", node="n1", state="running", cpus=0.5, memory="64Mi", host_ports=[80])
    b = make_task("b", service="db", node="n1", state="running", cpus=0.25, memory=1000)
    info.add_task(a)
    info.add_task(b)
    assert (info.nano_cpus, info.memory) == (2_000_000_000, 1 << 30)
    assert info.reserved_nano_cpus == 750_000_000
    assert info.reserved_memory == (64 << 20) + 1000
    assert info.host_ports == {("tcp", 80): 1}
    assert info.service_tasks == {("default", "web"): 1, ("default", "db"): 1}
    assert info.total_tasks == 2
    info.remove_task(a)
    assert info.reserved_nano_cpus == 250_000_000
    assert info.host_ports == {}
    assert info.service_tasks == {("default", "db"): 1}
    assert info.total_tasks == 1


def test_build_counts_only_occupying_tasks_on_known_nodes() -> None:
    nodes = [make_node("n1"), make_node("n2")]
    tasks = [make_task("a", node="n1", state="running"),
             make_task("b", node="n1", state="failed"),
             make_task("c", node="gone", state="running"),
             make_task("d", node="n2", state="running", desired="shutdown"),
             make_task("e", node="n2", state="pending"),
             make_task("f", state="pending")]
    infos = build_nodeinfos(nodes, [Task.of(t) for t in tasks], exclude={("default", "e")})
    assert (infos["n1"].total_tasks, infos["n2"].total_tasks) == (1, 0)


def test_unreadable_reservation_still_counts_the_task() -> None:
    info = NodeInfo.of(make_node("n1"))
    info.add_task(make_task("a", node="n1", state="running", memory="lots"))
    assert (info.total_tasks, info.reserved_memory) == (1, 0)
