"""kubeless.api.load: the load report's stored form, reading, freshness; ClusterView's index."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.view import ClusterView
from kubeless import store
from kubeless.api.load import (HostLoad, TaskLoad, connections_per_task, fresh_reports,
                               is_fresh, parse_report, report_value, reserved_cpus)

NOW = 1_764_690_000.0


def stored(node: str = "n1", timestamp: float = NOW, period: float = 10.0,
           **extra: Any) -> dict[str, Any]:
    value = report_value(node, timestamp, period, HostLoad(0.8, 1000, 2, 4000),
                         {"t1": TaskLoad("default", "web", 0.53, 12345)}, {"t9": 3.2})
    return {**value, **extra}


def test_a_report_reads_back_what_was_written() -> None:
    report = parse_report(stored())
    assert report is not None
    assert report.node == "n1" and report.period == 10.0
    assert report.host == HostLoad(0.8, 1000, 2, 4000)
    assert report.tasks == {"t1": TaskLoad("default", "web", 0.53, 12345)}
    assert report.connections == {"t9": 3.2}


@pytest.mark.parametrize("value", [
    None, "text", [], {"node": "n1"}, {"timestamp": NOW, "period": 10},
    {"node": "n1", "timestamp": "soon", "period": 10},
    {"node": "n1", "timestamp": NOW, "period": 0},
    {"node": "n1", "timestamp": NOW, "period": float("nan")},
], ids=["none", "text", "list", "no-time", "no-node", "bad-time", "zero-period", "nan-period"])
def test_what_is_not_a_report_reads_as_none(value: Any) -> None:
    assert parse_report(value) is None


def test_unreadable_tasks_and_rates_are_left_out() -> None:
    report = parse_report(stored(tasks={"ok": {"cpu": 1, "memory": 2}, "bad": {"cpu": "x"},
                                        "neg": {"cpu": -1, "memory": 2}, "no": 5},
                                 connections={"a": 1.5, "b": "fast", "c": True}, host=None))
    assert report is not None
    assert set(report.tasks) == {"ok"} and report.connections == {"a": 1.5}
    assert report.host == HostLoad(0.0, 0, 0.0, 0)


@pytest.mark.parametrize("age, fresh", [(0, True), (29.9, True), (30.0, True), (30.1, False),
                                        (-29, True), (-31, False)],
                         ids=["now", "under-3-periods", "at-3-periods", "older", "clock-ahead",
                              "far-ahead"])
def test_a_report_is_fresh_within_three_periods(age: float, fresh: bool) -> None:
    report = parse_report(stored(timestamp=NOW - age))
    assert report is not None and is_fresh(report, NOW) is fresh


def test_fresh_reports_keeps_fresh_readable_ones() -> None:
    values = {"n1": stored("n1"), "n2": stored("n2", timestamp=NOW - 100), "n3": "junk"}
    assert set(fresh_reports(values, NOW)) == {"n1"}


def test_connections_are_summed_over_every_node() -> None:
    reports = [parse_report(stored("n1", connections={"t1": 1.0, "t2": 2.0})),
               parse_report(stored("n2", connections={"t1": 0.5}))]
    assert connections_per_task(r for r in reports if r) == {"t1": 1.5, "t2": 2.0}


async def test_the_cluster_view_keeps_each_nodes_last_report() -> None:
    rstore = store.connect("127.0.0.1:1", "/load-view-test")  # never dialled here
    try:
        view = ClusterView(rstore)
        keys = rstore.keys
        view._on_agent_key(keys.load("n1"), None, stored("n1"))
        view._on_agent_key(keys.load("n2"), None, "junk")
        reports = view.load_reports()
        assert set(reports) == {"n1"} and reports["n1"].tasks["t1"].cpu == 0.53
        view._on_agent_key(keys.load("n1"), stored("n1"), None)
        assert view.load_reports() == {}
    finally:
        await rstore.etcd.close()


@pytest.mark.parametrize("reservations, cpus", [
    ({"cpus": 0.25}, 0.25), ({"cpus": "500m"}, 0.5), ({}, 1.0), ({"cpus": 0}, 1.0),
    ({"cpus": "lots"}, 1.0), (None, 1.0),
], ids=["number", "millicores", "none", "zero", "unreadable", "no-resources"])
def test_cpu_is_a_percentage_of_the_reservation_or_one_cpu(reservations: Any,
                                                           cpus: float) -> None:
    template = {"resources": {"reservations": reservations}} if reservations is not None else {}
    assert reserved_cpus({"spec": {"template": template}}) == cpus
