"""States read as docker writes them in every table (Ready, Running, Shutdown), stored
lowercase in -o yaml|json; and service ps heads a slot with the task wanted running."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from kubeless.api import resolve_kind
from kubeless_cli.node_cmds import node_rows
from kubeless_cli.printers import render, table
from kubeless_cli.service_cmds import ps_rows
from tests.support.builders import NOW, node
from tests.support.builders import task as view_task


def task(name: str, **kwargs: Any) -> dict[str, Any]:
    """A Task resource as the CLI reads it from etcd (the builders' is the controllers')."""
    t: dict[str, Any] = view_task(name, **kwargs).stored
    return t

NOW_DT = datetime.fromtimestamp(NOW, timezone.utc)


def test_get_nodes_says_ready_as_node_ls_does() -> None:
    nodes = [node("n1"), node("n2", state="down", availability="drain")]
    rows = table(resolve_kind("Node"), nodes, now=NOW_DT).splitlines()[1:]
    assert [r.split()[:3] for r in rows] == [["n1", "Ready", "Active"], ["n2", "Down", "Drain"]]
    assert [r[2:4] for r in node_rows(nodes, set(), set(), None)] == \
        [["Ready", "Active"], ["Down", "Drain"]]


def test_get_tasks_capitalises_desired_and_observed_states() -> None:
    tasks = [task("t1", slot=1, state="complete", desired="shutdown")]
    row = table(resolve_kind("Task"), tasks, now=NOW_DT).splitlines()[1].split()
    assert "Shutdown" in row and "Complete" in row


def test_yaml_and_json_keep_the_stored_lowercase() -> None:
    nodes = [node("n1")]
    assert json.loads(render(resolve_kind("Node"), nodes, "json", single=True))[
        "status"]["state"] == "ready"
    assert "state: ready" in render(resolve_kind("Node"), nodes, "yaml", single=True)


def created(t: dict[str, Any], seconds: float) -> dict[str, Any]:
    t["metadata"]["creationTimestamp"] = datetime.fromtimestamp(seconds, timezone.utc).isoformat()
    return t


def test_after_a_start_first_update_the_running_task_heads_its_slot() -> None:
    # the old task was created first but changed state (to shutdown) last
    old = created(task("old", slot=1, state="shutdown", desired="shutdown", ts=NOW - 5), NOW - 600)
    new = created(task("new", slot=1, state="running", desired="running", ts=NOW - 30), NOW - 40)
    other = created(task("two", slot=2, ts=NOW - 500), NOW - 600)
    rows = ps_rows([old, other, new], NOW)
    assert [(r[0], r[1], r[4], r[5].split()[0]) for r in rows] == [
        ("new", "web.1", "Running", "Running"),
        ("old", " \\_ web.1", "Shutdown", "Shutdown"),
        ("two", "web.2", "Running", "Running")]


def test_history_is_newest_first_under_the_head() -> None:
    tasks = [created(task(f"t{i}", slot=1, state="failed", desired="shutdown", ts=NOW - i),
                     NOW - 100 * i) for i in (3, 1, 2)]
    tasks.append(created(task("t0", slot=1, state="starting", ts=NOW - 50), NOW - 10))
    assert [r[0] for r in ps_rows(tasks, NOW)] == ["t0", "t1", "t2", "t3"]
