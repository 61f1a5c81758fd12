"""A Node as users see it: the stored resource merged with its agent's heartbeat.

The Node resource (role, availability, labels) is stored by registration
and changed by users; what the node is (hostname, address, capacity,
platform) and whether it is alive come from the heartbeat key, which exists
only while the agent's lease does. ``with_heartbeat`` merges the two into
``status`` the way every reader (CLI, scheduler, health) needs it. A
heartbeat whose agent stopped gracefully (``stoppedAt``) still means ready:
the node is restarting and keeps its tasks; the message says so.
"""

from __future__ import annotations

import copy
from typing import Any

READY, DOWN = "ready", "down"


def with_heartbeat(node: dict[str, Any], heartbeat: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``node`` whose status says ready (with the heartbeat's facts) or down."""
    out = copy.copy(node)
    status = dict(node.get("status") or {})
    if heartbeat is None:
        status["state"] = DOWN
        status.setdefault("message", "heartbeat lease expired")
    else:
        status.update({k: v for k, v in heartbeat.items() if k != "state"})
        status["state"] = READY
        status.pop("message", None)
        if heartbeat.get("stoppedAt"):
            status["message"] = (f"agent stopped at {heartbeat['stoppedAt']}; ready until its "
                                 "heartbeat lease expires, unless it restarts")
    out["status"] = status
    return out


def is_ready(node: dict[str, Any]) -> bool:
    return (node.get("status") or {}).get("state") == READY
