"""kubeless top's rows and tables, from load reports and tasks (pure)."""

from __future__ import annotations

from typing import Any

from kubeless.api.load import HostLoad, LoadReport, TaskLoad
from kubeless_cli.top_cmd import (cpu_text, memory_text, node_rows, node_table, service_rows,
                                  service_table, sorted_rows, task_rows, task_table)

NOW = 1_764_690_000.0


def report(node: str, tasks: dict[str, TaskLoad], connections: dict[str, float] | None = None
           ) -> LoadReport:
    return LoadReport(node, NOW, 10.0, HostLoad(1.5, 3 << 30, 2, 8 << 30), tasks,
                      connections or {})


def task(tid: str, service: str, slot: int | None, node: str, cpus: float | None = None,
         ns: str = "default") -> dict[str, Any]:
    template: dict[str, Any] = {"image": "x"}
    if cpus is not None:
        template["resources"] = {"reservations": {"cpus": cpus}}
    spec = {"serviceName": service, "nodeName": node, "template": template}
    if slot is not None:
        spec["slot"] = slot
    return {"metadata": {"name": tid, "namespace": ns}, "spec": spec}


REPORTS = {
    "n1": report("n1", {"t1": TaskLoad("default", "web", 0.53, 12 << 20),
                        "t2": TaskLoad("default", "web", 0.25, 8 << 20),
                        "t9": TaskLoad("prod", "db", 0.1, 1 << 30)}, {"t1": 2.0}),
    "n2": report("n2", {"t3": TaskLoad("default", "agent", 0.0, 512 << 10)},
                 {"t1": 1.5, "t2": 0.5}),
}
TASKS = {"t1": task("t1", "web", 1, "n1", cpus=0.5), "t2": task("t2", "web", 2, "n1"),
         "t3": task("t3", "agent", None, "n2"), "t9": task("t9", "db", 1, "n1", ns="prod")}


def test_task_rows_name_percent_and_connections() -> None:
    rows = {r.id: r for r in task_rows(REPORTS, TASKS, "default")}
    assert set(rows) == {"t1", "t2", "t3"}  # prod's is another namespace
    t1 = rows["t1"]
    assert (t1.task, t1.node, t1.cpuPercent, t1.connections) == ("web.1", "n1",
                                                                 100 * 0.53 / 0.5, 3.5)
    assert rows["t2"].cpuPercent == 25.0  # no reservation: of one CPU
    assert rows["t3"].task == "agent.n2"  # global: service.node
    assert {r.id for r in task_rows(REPORTS, TASKS, None)} == {"t1", "t2", "t3", "t9"}
    unknown = task_rows(REPORTS, {}, "prod")[0]
    assert (unknown.task, unknown.cpuPercent) == ("db.?", 10.0)


def test_service_rows_sum_and_mean() -> None:
    web = {r.service: r for r in service_rows(task_rows(REPORTS, TASKS, "default"))}["web"]
    assert (web.tasks, web.cpu, web.cpuMean, web.memory, web.memoryMean, web.connections) == \
        (2, 0.78, 0.39, 20 << 20, 10 << 20, 4.0)
    assert web.cpuPercent == (106.0 + 25.0) / 2


def test_node_rows_against_capacity() -> None:
    n1 = node_rows(REPORTS)[0]
    assert (n1.node, n1.cpuPercent, n1.memoryPercent, n1.tasks) == ("n1", 75.0, 37.5, 3)


def test_sorting_and_units() -> None:
    rows = task_rows(REPORTS, TASKS, None)
    assert [r.id for r in sorted_rows(rows, "cpu")] == ["t1", "t2", "t9", "t3"]
    assert [r.id for r in sorted_rows(rows, "memory")][0] == "t9"
    assert [cpu_text(c) for c in (0.53, 0.0, 2.0004)] == ["530m", "0m", "2000m"]
    assert [memory_text(m) for m in (12 << 20, 3 << 30, 2048, 900)] == \
        ["12Mi", "3Gi", "2Ki", "900"]


def test_tables() -> None:
    rows = task_rows(REPORTS, TASKS, "default")
    text = task_table(rows, all_namespaces=False)
    assert text.splitlines()[0].split() == ["TASK", "ID", "NODE", "CPU(cores)", "CPU%",
                                            "MEMORY(bytes)", "CONN/s"]
    assert text.splitlines()[1].split() == ["web.1", "t1", "n1", "530m", "106%", "12Mi", "3.5"]
    assert task_table(rows, all_namespaces=True).startswith("NAMESPACE")
    assert "web" in service_table(service_rows(rows), all_namespaces=False)
    assert node_table(node_rows(REPORTS)).splitlines()[1].split() == \
        ["n1", "1500m", "75%", "2", "3Gi", "38%", "3"]
