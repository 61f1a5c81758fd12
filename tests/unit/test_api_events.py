"""Events as plain data: ids that aggregate repeats, merging, filters, kubectl's texts."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from kubeless.api import events as ev

T0 = "2026-12-02T16:00:00.000Z"
NOW = datetime(2026, 12, 2, 16, 3, 0, tzinfo=timezone.utc)


def event(**fields: object) -> ev.Event:
    base: dict[str, object] = {"kind": "Task", "name": "k3v9", "namespace": "default",
                               "reason": "Failed", "message": "exit code 1",
                               "component": "agent", "host": "node-1", "service": "web",
                               "type_": "Warning", "timestamp": T0}
    base.update(fields)
    return ev.new_event(**base)  # type: ignore[arg-type]


def test_a_first_occurrence_counts_one_and_names_its_service() -> None:
    e = event()
    assert e["count"] == 1 and e["firstTimestamp"] == e["lastTimestamp"] == T0
    assert e["involvedObject"] == {"kind": "Task", "name": "k3v9", "namespace": "default"}
    assert e["service"] == "web" and e["source"] == {"component": "agent", "host": "node-1"}
    assert e["metadata"]["namespace"] == "default" and len(e["metadata"]["name"]) == 20


def test_repeats_share_one_id_and_anything_else_does_not() -> None:
    same = {event()["metadata"]["name"], event(timestamp="2026-12-02T17:00:00Z",
                                               host="node-2")["metadata"]["name"]}
    assert len(same) == 1  # time and host are not part of what repeats
    others = {event(**{k: v})["metadata"]["name"] for k, v in
              [("reason", "Started"), ("message", "exit code 2"), ("name", "other"),
               ("type_", "Normal"), ("component", "scheduler"), ("namespace", "prod")]}
    assert len(others) == 6 and not others & same


def test_a_node_event_is_cluster_scoped() -> None:
    e = event(kind="Node", name="node-2", namespace="", service=None)
    assert e["metadata"]["namespace"] == ev.CLUSTER_SCOPE
    assert "namespace" not in e["involvedObject"] and "service" not in e


def test_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="Normal, Warning"):
        event(type_="Error")


@given(st.text(max_size=2000))
def test_messages_are_one_bounded_line(text: str) -> None:
    line = ev.one_line(text)
    assert "\n" not in line and "\r" not in line and len(line) <= 500


def test_repeated_adds_counts_and_keeps_the_later_time() -> None:
    first = event()
    later = event(timestamp="2026-12-02T16:02:00.000Z")
    merged = ev.repeated(ev.repeated(first, later), event(timestamp="2026-12-02T16:01:00.000Z"))
    assert merged["count"] == 3
    assert merged["firstTimestamp"] == T0 and merged["lastTimestamp"] == "2026-12-02T16:02:00.000Z"
    assert first["count"] == 1  # pure


def test_frequency_and_last_seen_as_kubectl_writes_them() -> None:
    merged = ev.repeated(ev.repeated(event(), event(timestamp="2026-12-02T16:02:30Z")),
                         event(timestamp="2026-12-02T16:02:30Z"))
    assert ev.frequency(merged, NOW) == "x3 over 3m"
    assert ev.last_seen(merged, NOW) == "30s"
    assert ev.frequency(event(), NOW) == ""


@pytest.mark.parametrize("text, expected", [
    ("service/web", ("Service", "web")), ("svc/web", ("Service", "web")),
    ("task/k3v9", ("Task", "k3v9")), ("node/n-1", ("Node", "n-1")), ("Service/web", ("Service", "web")),
])
def test_parse_for(text: str, expected: tuple[str, str]) -> None:
    assert ev.parse_for(text) == expected


@pytest.mark.parametrize("text", ["web", "route/shop", "service/", "/web"])
def test_parse_for_refuses_with_one_line(text: str) -> None:
    with pytest.raises(ValueError, match="expected KIND/NAME") as err:
        ev.parse_for(text)
    assert "\n" not in str(err.value)


def test_a_service_s_events_include_its_tasks_but_not_another_namespace_s() -> None:
    task_event = event()
    service_event = event(kind="Service", name="web", service=None, reason="Scaled")
    other = event(name="x", service="api")
    elsewhere = event(namespace="prod")
    node = event(kind="Node", name="node-1", namespace="", service=None)
    chosen = [e for e in (task_event, service_event, other, elsewhere, node)
              if ev.for_object(e, "Service", "web", "default")]
    assert chosen == [task_event, service_event]
    assert ev.for_object(node, "Node", "node-1", "default")  # nodes have no namespace
    assert ev.for_object(task_event, "Task", "k3v9", None)


def test_types_and_order() -> None:
    normal = event(type_="Normal", timestamp="2026-12-02T16:02:00Z")
    warning = event(timestamp="2026-12-02T16:01:00Z")
    assert ev.of_types([normal, warning], ["warning"]) == [warning]
    assert ev.of_types([normal, warning], []) == [normal, warning]
    assert ev.by_time([normal, warning]) == [warning, normal]
    assert ev.object_text(warning) == "task/k3v9"
