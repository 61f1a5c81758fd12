"""What a node's heartbeat says beyond its identity: its runtime's state and its logs port.

``advertise`` puts ``logsPort`` (where ``kubeless_agent.logs`` serves task
logs on the node's address) and ``runtimeState`` / ``runtimeMessage``
(``up``, ``down`` or ``unknown``, from a runtime that has
``runtime_state()``) into the node's heartbeat, and puts it again whenever
the runtime's state changes (a Docker Engine that goes away or comes back).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class HeartbeatFields(Protocol):
    def update(self, node_id: str, fields: dict[str, Any]) -> None: ...


def runtime_fields(state: dict[str, str]) -> dict[str, Any]:
    return {"runtimeState": state.get("state", "unknown"),
            "runtimeMessage": state.get("message") or ""}


def advertise(heartbeats: HeartbeatFields, node_id: str, runtime: Any,
              logs_port: int | None) -> None:
    fields: dict[str, Any] = {}
    if logs_port:
        fields["logsPort"] = logs_port
    state_of: Callable[[], dict[str, str]] | None = getattr(runtime, "runtime_state", None)
    if state_of is not None:
        fields.update(runtime_fields(state_of()))
        runtime.watch_state(lambda state: heartbeats.update(node_id, runtime_fields(state)))
    else:
        fields.update(runtimeState="up", runtimeMessage="")
    heartbeats.update(node_id, fields)
