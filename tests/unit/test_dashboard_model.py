"""The dashboard's page model (controllers.dashboard.model) and its server's pure rules:
view data in, rows out; no etcd, no event loop."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from controllers.dashboard import DEFAULT_PORT, port_from_env
from controllers.dashboard.model import event_row, snapshot, update_text
from controllers.dashboard.server import host_allowed, parse_request
from tests.support.builders import NOW, node, service, task


def ready(name: str, address: str) -> dict[str, object]:
    n = node(name)
    n["status"] = {"state": "ready", "address": address}
    n["spec"]["role"] = "manager"
    return n


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(**over: object) -> dict[str, object]:
    """An Event as docs/MODEL.md "Events" shows it."""
    return {"apiVersion": "kubeless.io/v1", "kind": "Event",
            "metadata": {"name": "a" * 20, "namespace": "default"},
            "involvedObject": {"kind": "Task", "namespace": "default", "name": "t1"},
            "service": "web", "type": "Warning", "reason": "Failed",
            "message": "web.1 (t1) exited with code 2",
            "source": {"component": "agent", "host": "n1"}, "count": 7,
            "firstTimestamp": rfc3339(NOW - 180), "lastTimestamp": rfc3339(NOW), **over}


def test_nodes_say_state_availability_role_address_and_the_tasks_they_hold() -> None:
    doc = snapshot([ready("n1", "10.0.0.1"), node("n2", state="down", availability="drain")],
                   [], [task("t1", slot=1, node="n1"), task("t2", slot=2, node="n1"),
                        task("t3", slot=3, node="n1", state="failed"),
                        task("t4", slot=4, node="n2", desired="shutdown")], [], NOW)
    assert doc["nodes"] == [
        {"name": "n1", "state": "ready", "availability": "active", "role": "manager",
         "address": "10.0.0.1", "tasks": 2, "message": ""},
        {"name": "n2", "state": "down", "availability": "drain", "role": "worker",
         "address": "", "tasks": 0, "message": ""}]


def test_a_service_row_counts_its_running_tasks_against_its_replicas() -> None:
    svc = service(3)
    svc["status"] = {"updateStatus": {"state": "updating", "updated": 1, "total": 3}}
    doc = snapshot([], [svc], [task("t1", slot=1, node="n1"), task("t2", slot=2, node="n1"),
                               task("t3", slot=3, state="pending"),
                               task("t0", slot=1, node="n1", desired="shutdown")], [], NOW)
    assert doc["services"] == [
        {"namespace": "default", "name": "web", "mode": "replicated", "running": 2,
         "desired": 3, "replicas": "2/3", "update": "updating 1/3", "updateState": "updating",
         "ports": "*:8080->80/tcp"}]


def test_a_global_service_wants_what_replication_counted() -> None:
    svc = service(mode="global")
    svc["status"] = {"replicas": 4}
    row = snapshot([], [svc], [], [], NOW)["services"][0]
    assert (row["mode"], row["replicas"]) == ("global", "0/4")


@pytest.mark.parametrize("update, text", [
    ({}, ""),
    ({"state": "completed"}, "completed"),
    ({"state": "updating", "updated": 2, "total": 3, "failed": 1}, "updating 2/3 (1 failed)"),
    ({"state": "paused", "message": "update paused: 2 tasks failed"},
     "paused: update paused: 2 tasks failed"),
    ({"state": "rollback_completed"}, "rollback completed"),
], ids=["none", "completed", "progress", "paused", "rollback"])
def test_rollout_progress(update: dict[str, object], text: str) -> None:
    assert update_text(update) == text


def test_tasks_in_service_ps_order_with_age_and_error() -> None:
    old = task("old", slot=1, node="n1", state="failed", ts=NOW - 600)
    old.status["error"] = "exited with code 2"  # (the builder's status is a fresh dict)
    doc = snapshot([], [], [task("new", slot=1, node="n1", ts=NOW - 30), old,
                            task("g", node="n2")], [], NOW)
    rows = [(r["name"], r["state"], r["desired"], r["age"], r["error"]) for r in doc["tasks"]]
    assert rows == [("web.n2", "running", "running", "100s", ""),  # global: slot None sorts 0
                    ("web.1", "running", "running", "30s", ""),
                    ("web.1", "failed", "running", "10m", "exited with code 2")]
    assert doc["tasksOmitted"] == 0


def test_only_the_latest_rows_are_sent() -> None:
    tasks = [task(f"t{i}", slot=i, node="n1") for i in range(1, 6)]
    events = [event(metadata={"name": str(i)}, lastTimestamp=NOW - i) for i in range(4)]
    doc = snapshot([], [], tasks, events, NOW, max_tasks=3, max_events=2)
    assert [r["slot"] for r in doc["tasks"]] == [1, 2, 3] and doc["tasksOmitted"] == 2
    assert [r["since"] for r in doc["events"]] == [NOW, NOW - 1] and doc["eventsOmitted"] == 2


def test_an_event_row_as_kubeless_events_shows_it() -> None:
    assert event_row(event(), NOW) == {
        "type": "Warning", "reason": "Failed", "object": "task/t1", "namespace": "default",
        "message": "web.1 (t1) exited with code 2", "count": 7, "repeat": "x7 over 3m",
        "source": "agent", "since": NOW, "age": "0s"}


def test_an_unreadable_event_still_makes_a_row() -> None:
    row = event_row({"count": "many", "lastTimestamp": "yesterday", "source": "x"}, NOW)
    assert (row["type"], row["object"], row["repeat"], row["since"]) == ("Normal", "/", "", NOW)
    assert event_row(event(firstTimestamp=None), NOW)["repeat"] == "x7 over <unknown>"


# -- the server's pure rules -------------------------------------------------------

def test_parse_request() -> None:
    got = parse_request(b"GET /events?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8484\r\nAccept: */*")
    assert got is not None and (got.method, got.path, got.host) == ("GET", "/events",
                                                                    "127.0.0.1:8484")
    assert parse_request(b"garbage") is None
    assert parse_request(b"GET / SPDY/3") is None


@pytest.mark.parametrize("host, bind, allowed", [
    ("127.0.0.1:8484", "127.0.0.1", True), ("localhost:8484", "127.0.0.1", True),
    ("localhost", "127.0.0.1", True), ("[::1]:8484", "::1", True),
    ("evil.example:8484", "127.0.0.1", False),  # DNS rebinding onto loopback
    ("", "127.0.0.1", False),
    ("dash.example.com", "0.0.0.0", True),  # bound elsewhere: the operator's choice
], ids=["ip", "localhost-port", "localhost", "ipv6", "rebinding", "no-host", "exposed"])
def test_host_allowed(host: str, bind: str, allowed: bool) -> None:
    assert host_allowed(host, bind) is allowed


def test_port_from_env() -> None:
    assert port_from_env({}) == DEFAULT_PORT
    assert port_from_env({"KUBELESS_DASHBOARD_PORT": "0"}) == 0
    assert port_from_env({"KUBELESS_DASHBOARD_PORT": "x"}) == DEFAULT_PORT
