"""What a node's heartbeat says beyond its identity: its runtime's state and its logs port.

``advertise`` puts ``logsPort`` (where ``kubeless_agent.logs`` serves task
logs on the node's address; with ``logsTLS: true`` when it serves them over
TLS only, the field absent otherwise), ``runtimeState`` / ``runtimeMessage``
(``up``, ``down`` or ``unknown``: the runtime's ``runtime_state()``, always
up but for docker's) and ``engineVersion`` (the runtime's
``engine_version()``: the Docker Engine's version, ``process <kubeless
version>``, ``fake``; node ls's ENGINE VERSION) into the node's heartbeat,
and puts them again whenever the runtime's state changes (a Docker Engine
that goes away or comes back, perhaps upgraded).

``secrets_fields`` is ``secretsKey``: the public half of the X25519 key the
agent process made in memory at start (``kubeless.cluster.sealing``; never on
a disk, shared by the hollow nodes of one process). The managers seal each
node's copies of secrets to it, so a copy opens only in the running agent it
was sealed for; a restarted agent has a new key, and its copies are sealed again.

``mesh_fields`` is ``meshPath``: the routing mesh's data path on this node,
``kernel`` (an nftables table) or ``userspace`` (the agent's relay).

``dns_fields`` is the node's ``dns`` field: where the agent serves cluster
DNS, the nameserver its containers get, the upstreams it forwards to, and
``error``, every reason it cannot serve all of that ("" when none), so
``node inspect`` and ``describe node`` show a DNS that does not work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from kubeless.cluster.sealing import public_text

from kubeless_agent.dns.resolvconf import show
from kubeless_agent.runtime import Runtime


class HeartbeatFields(Protocol):
    def update(self, node_id: str, fields: dict[str, Any]) -> None: ...


def runtime_fields(state: dict[str, str], engine_version: str) -> dict[str, Any]:
    return {"runtimeState": state.get("state", "unknown"),
            "runtimeMessage": state.get("message") or "", "engineVersion": engine_version}


def advertise(heartbeats: HeartbeatFields, node_id: str, runtime: Runtime,
              logs_port: int | None, logs_tls: bool = False) -> None:
    fields: dict[str, Any] = {}
    if logs_port:
        fields["logsPort"] = logs_port
        if logs_tls:
            fields["logsTLS"] = True
    fields.update(runtime_fields(runtime.runtime_state(), runtime.engine_version()))
    runtime.watch_state(lambda state: heartbeats.update(
        node_id, runtime_fields(state, runtime.engine_version())))
    heartbeats.update(node_id, fields)


def secrets_fields(key: X25519PrivateKey) -> dict[str, Any]:
    """``{"secretsKey": <public text>}``: what the managers seal this node's copies to."""
    return {"secretsKey": public_text(key)}


def mesh_fields(path: str) -> dict[str, Any]:
    """``{"meshPath": "kernel" | "userspace"}`` for the heartbeat."""
    return {"meshPath": path}


def dns_fields(serving: Iterable[tuple[str, int]], unbound: Mapping[tuple[str, int], str],
               nameserver: str | None, upstreams: Iterable[tuple[str, int]],
               problems: Iterable[str]) -> dict[str, Any]:
    """``{"dns": {serving, nameserver, upstreams, error}}`` for the heartbeat."""
    errors = [f"cannot serve on {show(a)}: {why}" for a, why in sorted(unbound.items())]
    errors += [p for p in problems if p]
    return {"dns": {"serving": [show(a) for a in serving], "nameserver": nameserver or "",
                    "upstreams": [show(u) for u in upstreams], "error": "; ".join(errors)}}
