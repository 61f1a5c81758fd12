"""A Node merged with its heartbeat: ready, down, and ready while its agent restarts."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless.api.nodes import DOWN, READY, with_heartbeat

NODE: dict[str, Any] = {"metadata": {"name": "n1"}, "spec": {}, "status": {"message": "old"}}


@pytest.mark.parametrize("name, heartbeat, state, message", [
    ("no heartbeat: down", None, DOWN, "old"),
    ("a live agent: ready, no message", {"address": "10.0.0.1"}, READY, None),
    ("an agent stopped gracefully: still ready, and it says so",
     {"address": "10.0.0.1", "stoppedAt": "2026-01-01T00:00:00Z"}, READY,
     "agent stopped at 2026-01-01T00:00:00Z; ready until its heartbeat lease expires, "
     "unless it restarts"),
])
def test_with_heartbeat(name: str, heartbeat: dict[str, Any] | None, state: str,
                        message: str | None) -> None:
    status = with_heartbeat(NODE, heartbeat)["status"]
    assert status["state"] == state, name
    assert status.get("message") == message, name
