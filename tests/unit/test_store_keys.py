"""The keyspace's parsing of agents/ and heartbeats/ keys: node, sort, task id."""

from __future__ import annotations

import pytest

from kubeless.store.keys import AgentKey, Keyspace

AGENT_KEYS: dict[str, tuple[str, AgentKey | None]] = {
    "a leave request": ("/k/v1/agents/n1/leave", AgentKey("n1", "leave")),
    "a report": ("/k/v1/agents/n1/tasks/t1", AgentKey("n1", "tasks", "t1")),
    "an assignment": ("/k/v1/agents/n1/assignments/t1", AgentKey("n1", "assignments", "t1")),
    "too deep": ("/k/v1/agents/n1/tasks/t1/x", None),
    "too short": ("/k/v1/agents/n1", None),
    "another prefix": ("/other/v1/agents/n1/leave", None),
    "a heartbeat is not an agents key": ("/k/v1/heartbeats/n1", None),
    "not an agents key": ("/k/v1/tasks/default/web/t1", None),
}


@pytest.mark.parametrize("case", list(AGENT_KEYS))
def test_parse_agent_key(case: str) -> None:
    key, expected = AGENT_KEYS[case]
    assert Keyspace("/k").parse_agent(key) == expected


HEARTBEAT_KEYS: dict[str, tuple[str, str | None]] = {
    "a heartbeat": ("/k/v1/heartbeats/n1", "n1"),
    "the prefix itself": ("/k/v1/heartbeats/", None),
    "too deep": ("/k/v1/heartbeats/n1/x", None),
    "another prefix": ("/other/v1/heartbeats/n1", None),
    "an agents key": ("/k/v1/agents/n1/leave", None),
}


@pytest.mark.parametrize("case", list(HEARTBEAT_KEYS))
def test_parse_heartbeat_key(case: str) -> None:
    key, expected = HEARTBEAT_KEYS[case]
    assert Keyspace("/k").parse_heartbeat(key) == expected


def test_heartbeats_live_apart_from_what_a_node_must_not_read() -> None:
    """One range grant on heartbeats/ covers every heartbeat and nothing under agents/
    (another node's assignments), spec/ or secrets/."""
    keys = Keyspace("/k")
    beat = keys.heartbeat("n1")
    assert beat.startswith(keys.heartbeats_prefix())
    assert keys.parse_heartbeat(beat) == "n1"
    for other in (keys.agent("n1"), keys.kind_prefix("Node"), keys.secrets_prefix(),
                  keys.endpoints_prefix(), keys.cluster()):
        assert not other.startswith(keys.heartbeats_prefix())
        assert not beat.startswith(other)


WATCH_PREFIXES: dict[str, tuple[list[str], str]] = {
    "one node: its own key": (["n1"], "/k/v1/heartbeats/n1"),
    "hollow nodes: their common start": (["h-0", "h-1", "h-10"], "/k/v1/heartbeats/h-"),
}


@pytest.mark.parametrize("case", list(WATCH_PREFIXES))
def test_an_agent_watches_only_its_own_heartbeats(case: str) -> None:
    from kubeless_agent.heartbeat import watch_prefix

    nodes, expected = WATCH_PREFIXES[case]
    assert watch_prefix(Keyspace("/k"), nodes) == expected
