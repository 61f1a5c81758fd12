"""``kubeless top tasks|services|nodes``: what the nodes' load reports say, as kubectl top.

Every node's agent publishes a load report (``agents/<node>/load``, every
``--load-period``, default 10s; ``kubeless.api.load``). ``top`` reads the report of
every Node, keeps the fresh ones (a stale report is left out: its agent stopped, or
its figures are old) and the Tasks they name, and prints:

- tasks: each running task's CPU in cores (``530m``), as a percentage of its
  reservation (or of one CPU when it reserves none: what the autoscaler's
  ``targetCPU`` is of), its memory (``12Mi``) and the new connections per second
  every node's mesh sent it;
- services: the sum over their measured tasks, the mean per task, the task count and
  the mean CPU% (the figure the autoscaler compares with ``targetCPU``);
- nodes: the host's CPU and memory against what it has, and how many tasks it measured.

``-n``/``-A`` pick the namespace (nodes have none), ``--sort-by cpu|memory`` orders
the rows (most first), ``-o json`` prints the rows as data. With no fresh report it
says so and exits 0. The tables are built by pure functions of the reports and tasks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import click

from kubeless.api.load import LoadReport, connections_per_task, fresh_reports, reserved_cpus
from kubeless.api.tasks import task_display_name
from kubeless_cli.context import USAGE, CliError, Context, current_namespace, pass_context
from kubeless_cli.flags import flag
from kubeless_cli.printers import format_rows

Resource = dict[str, Any]
WHAT = {"tasks": "tasks", "task": "tasks", "services": "services", "service": "services",
        "svc": "services", "nodes": "nodes", "node": "nodes"}
NO_REPORTS = "no load reports yet (agents publish them every 10s)"
ID_PREFIX = 12  # as service ps shows task ids


@dataclass(frozen=True)
class TaskRow:
    namespace: str
    service: str
    task: str  # web.1, or web.<node> for a global task
    id: str
    node: str
    cpu: float  # cores
    cpuPercent: float  # of its reservation, else of one CPU
    memory: int  # bytes
    connections: float  # new connections per second, every node's mesh


@dataclass(frozen=True)
class ServiceRow:
    namespace: str
    service: str
    tasks: int
    cpu: float
    cpuMean: float
    cpuPercent: float  # the mean of its tasks'
    memory: int
    memoryMean: int
    connections: float


@dataclass(frozen=True)
class NodeRow:
    node: str
    cpu: float
    cpus: float
    cpuPercent: float
    memory: int
    memoryTotal: int
    memoryPercent: float
    tasks: int


# -- the rows (pure) ---------------------------------------------------------------------

def task_rows(reports: Mapping[str, LoadReport], tasks: Mapping[str, Resource],
              namespace: str | None) -> list[TaskRow]:
    """One row per task measured in a report (of ``namespace``; None: every one)."""
    connections = connections_per_task(reports.values())
    rows = []
    for node, report in sorted(reports.items()):
        for tid, load in sorted(report.tasks.items()):
            if namespace is not None and load.namespace != namespace:
                continue
            task = tasks.get(tid)
            shown = task_display_name(task) if task else f"{load.service}.?"
            reserved = reserved_cpus(task) if task else 1.0
            rows.append(TaskRow(load.namespace, load.service, shown, tid, node, load.cpu,
                                100 * load.cpu / reserved, load.memory,
                                connections.get(tid, 0.0)))
    return rows


def service_rows(tasks: list[TaskRow]) -> list[ServiceRow]:
    groups: dict[tuple[str, str], list[TaskRow]] = {}
    for row in tasks:
        groups.setdefault((row.namespace, row.service), []).append(row)
    rows = []
    for (ns, name), members in sorted(groups.items()):
        n = len(members)
        cpu, memory = sum(r.cpu for r in members), sum(r.memory for r in members)
        rows.append(ServiceRow(ns, name, n, cpu, cpu / n,
                               sum(r.cpuPercent for r in members) / n, memory, memory // n,
                               sum(r.connections for r in members)))
    return rows


def node_rows(reports: Mapping[str, LoadReport]) -> list[NodeRow]:
    rows = []
    for node, r in sorted(reports.items()):
        host = r.host
        rows.append(NodeRow(node, host.cpu, host.cpus, _percent(host.cpu, host.cpus),
                            host.memory, host.memory_total,
                            _percent(host.memory, host.memory_total), len(r.tasks)))
    return rows


def _percent(part: float, whole: float) -> float:
    return 100 * part / whole if whole > 0 else 0.0


def sorted_rows(rows: list[Any], by: str | None) -> list[Any]:
    """Most first by ``cpu`` or ``memory``; as they are (by name) otherwise."""
    return sorted(rows, key=lambda r: -getattr(r, by)) if by else rows


def cpu_text(cores: float) -> str:
    """Millicores, as kubectl top: 0.53 -> ``530m``."""
    return f"{round(cores * 1000)}m"


def memory_text(size: int) -> str:
    """Binary units, whole: ``12Mi``, ``1Gi``, ``512Ki``, ``900`` (bytes)."""
    for unit, factor in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size >= factor:
            return f"{round(size / factor)}{unit}"
    return str(size)


def rate_text(per_second: float) -> str:
    return f"{per_second:.1f}"


def task_table(rows: list[TaskRow], all_namespaces: bool) -> str:
    head = ["TASK", "ID", "NODE", "CPU(cores)", "CPU%", "MEMORY(bytes)", "CONN/s"]
    body = [[r.task, r.id[:ID_PREFIX], r.node, cpu_text(r.cpu), f"{r.cpuPercent:.0f}%",
             memory_text(r.memory), rate_text(r.connections)] for r in rows]
    return _with_namespace(head, body, [r.namespace for r in rows], all_namespaces)


def service_table(rows: list[ServiceRow], all_namespaces: bool) -> str:
    head = ["SERVICE", "TASKS", "CPU(cores)", "CPU/TASK", "CPU%", "MEMORY(bytes)",
            "MEMORY/TASK", "CONN/s"]
    body = [[r.service, str(r.tasks), cpu_text(r.cpu), cpu_text(r.cpuMean),
             f"{r.cpuPercent:.0f}%", memory_text(r.memory), memory_text(r.memoryMean),
             rate_text(r.connections)] for r in rows]
    return _with_namespace(head, body, [r.namespace for r in rows], all_namespaces)


def node_table(rows: list[NodeRow]) -> str:
    head = ["NODE", "CPU(cores)", "CPU%", "CPUS", "MEMORY(bytes)", "MEMORY%", "TASKS"]
    return format_rows(head, [[r.node, cpu_text(r.cpu), f"{r.cpuPercent:.0f}%",
                               f"{r.cpus:g}", memory_text(r.memory),
                               f"{r.memoryPercent:.0f}%", str(r.tasks)] for r in rows])


def _with_namespace(head: list[str], body: list[list[str]], namespaces: list[str],
                    all_namespaces: bool) -> str:
    if not all_namespaces:
        return format_rows(head, body)
    return format_rows(["NAMESPACE", *head], [[ns, *row] for ns, row in zip(namespaces, body)])


# -- reading -------------------------------------------------------------------------------

async def read_reports(rstore: Any, now: float) -> dict[str, LoadReport]:
    """node -> its fresh load report, for every Node."""
    nodes = await rstore.list("Node")
    names = [n["metadata"]["name"] for n in nodes.items]
    kvs, _ = await rstore.etcd.get_many([rstore.keys.load(n) for n in names])
    values = {}
    for node in names:
        kv = kvs.get(rstore.keys.load(node))
        if kv is not None:
            try:
                values[node] = json.loads(kv.value)
            except ValueError:
                continue  # not a report: left out, as a stale one is
    return fresh_reports(values, now)


async def read_tasks(rstore: Any, reports: Mapping[str, LoadReport]) -> dict[str, Resource]:
    """task id -> the Task, for the tasks the reports measure (missing ones left out)."""
    from kubeless.store import CorruptValue

    keys = {rstore.keys.spec("Task", tid, load.namespace, load.service): tid
            for report in reports.values() for tid, load in report.tasks.items()}
    kvs, _ = await rstore.etcd.get_many(list(keys))
    found = {}
    for key, kv in kvs.items():
        try:
            found[keys[key]] = rstore.decode("Task", kv)
        except CorruptValue:  # shown without its slot
            continue
    return found


# -- the command ---------------------------------------------------------------------------

@click.command()
@click.argument("what", metavar="tasks|services|nodes")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("-A", "--all-namespaces", help="Every namespace.")
@click.option("--sort-by", type=click.Choice(("cpu", "memory")), help="Most first by this.")
@click.option("-o", "--output", type=click.Choice(("json",)), help="Output format.")
@pass_context
def top(ctx: Context, what: str, namespace: str | None, all_namespaces: bool,
        sort_by: str | None, output: str | None) -> None:
    """CPU, memory and connections of running tasks, services and nodes, from the load
    reports agents publish."""
    kind = WHAT.get(what.lower())
    if kind is None:
        raise CliError(f"kubeless top {what}: expected tasks, services or nodes", USAGE)
    ns = None if all_namespaces else current_namespace(namespace)

    async def run(rstore: Any) -> tuple[dict[str, LoadReport], dict[str, Resource]]:
        reports = await read_reports(rstore, time.time())
        tasks = await read_tasks(rstore, reports) if kind != "nodes" and reports else {}
        return reports, tasks

    reports, tasks = ctx.run(run)
    if not reports:
        click.echo("[]" if output == "json" else NO_REPORTS)
        return
    rows: list[Any]
    if kind == "nodes":
        rows = node_rows(reports)
    else:
        rows = task_rows(reports, tasks, ns)
        rows = service_rows(rows) if kind == "services" else rows
    rows = sorted_rows(rows, sort_by)
    if output == "json":
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
    elif not rows:
        where = "" if ns is None else f" in namespace {ns}"
        click.echo(f"no running {kind} measured{where}")
    elif kind == "nodes":
        click.echo(node_table(rows), nl=False)
    elif kind == "services":
        click.echo(service_table(rows, all_namespaces), nl=False)
    else:
        click.echo(task_table(rows, all_namespaces), nl=False)
