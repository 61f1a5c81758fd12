"""The keyspace's parsing of agents/ keys: node, sort, task id."""

from __future__ import annotations

import pytest

from kubeless.store.keys import AgentKey, Keyspace

AGENT_KEYS: dict[str, tuple[str, AgentKey | None]] = {
    "heartbeat": ("/k/v1/agents/n1/heartbeat", AgentKey("n1", "heartbeat")),
    "a report": ("/k/v1/agents/n1/tasks/t1", AgentKey("n1", "tasks", "t1")),
    "an assignment": ("/k/v1/agents/n1/assignments/t1", AgentKey("n1", "assignments", "t1")),
    "too deep": ("/k/v1/agents/n1/tasks/t1/x", None),
    "too short": ("/k/v1/agents/n1", None),
    "another prefix": ("/other/v1/agents/n1/heartbeat", None),
    "not an agents key": ("/k/v1/tasks/default/web/t1", None),
}


@pytest.mark.parametrize("case", list(AGENT_KEYS))
def test_parse_agent_key(case: str) -> None:
    key, expected = AGENT_KEYS[case]
    assert Keyspace("/k").parse_agent(key) == expected
