"""Who this node is: its id, hostname, address, labels, capacity and platform.

The node id is ``--node-name``, or the hostname made a DNS-1123 label. What
this module returns is plain data; registration and heartbeat write it.
Reading /proc/meminfo is the only I/O, and callers may override it.
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass, field, replace
from typing import Any

from kubeless.api import label_key_error, label_value_error, name_error
from kubeless.api.names import dns_label


def default_node_name() -> str:
    return dns_label(socket.gethostname())


def parse_labels(text: str | None) -> dict[str, str]:
    """``zone=eu,ssd=true`` -> {"zone": "eu", "ssd": "true"}; ValueError on bad input."""
    labels: dict[str, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise ValueError(f"label {part!r}: expected key=value")
        problem = label_key_error(key) or label_value_error(value)
        if problem:
            raise ValueError(f"label {part!r}: {problem}")
        labels[key] = value
    return labels


def memory_bytes(meminfo: str = "/proc/meminfo") -> int:
    """Total memory in bytes (0 when /proc/meminfo cannot be read)."""
    try:
        with open(meminfo, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str
    hostname: str
    address: str = "127.0.0.1"
    labels: dict[str, str] = field(default_factory=dict)
    cpus: float = 0.0
    memory: int = 0
    os: str = "linux"
    arch: str = "x86_64"
    runtime: str = "fake"
    role: str = "worker"  # at registration only; users (node promote/demote) own it after

    def __post_init__(self) -> None:
        problem = name_error(self.node_id)
        if problem:
            raise ValueError(f"node name: {problem}")

    @classmethod
    def detect(cls, node_id: str | None = None, *, address: str = "127.0.0.1",
               labels: dict[str, str] | None = None, cpus: float | None = None,
               memory: int | None = None, runtime: str = "fake") -> NodeIdentity:
        """This host's identity, with the given overrides."""
        hostname = socket.gethostname()
        return cls(node_id=node_id or dns_label(hostname), hostname=hostname, address=address,
                   labels=dict(labels or {}), cpus=cpus if cpus else float(os.cpu_count() or 1),
                   memory=memory if memory else memory_bytes(),
                   os=platform.system().lower() or "linux",
                   arch=platform.machine() or "unknown", runtime=runtime)

    def hollow(self, index: int) -> NodeIdentity:
        """Hollow node ``<id>-<index>``, whose hostname is its id."""
        name = f"{self.node_id}-{index}"
        return replace(self, node_id=name, hostname=name)

    def node_resource(self) -> dict[str, Any]:
        """The Node resource registration creates when it is absent."""
        meta: dict[str, Any] = {"name": self.node_id}
        if self.labels:
            meta["labels"] = dict(self.labels)
        return {"apiVersion": "kubeless.io/v1", "kind": "Node", "metadata": meta,
                "spec": {"role": self.role, "availability": "active"},
                "status": self.last_seen()}

    def last_seen(self) -> dict[str, Any]:
        """What the Node keeps of its agent while the heartbeat is gone (node ls of a down node)."""
        return {"hostname": self.hostname, "address": self.address}

    def heartbeat(self, started_at: str) -> dict[str, Any]:
        """The value of ``heartbeats/<id>`` (docs/MODEL.md)."""
        cpus: float | int = int(self.cpus) if float(self.cpus).is_integer() else self.cpus
        return {"hostname": self.hostname, "address": self.address,
                "capacity": {"cpus": cpus, "memory": self.memory},
                "platform": {"os": self.os, "arch": self.arch},
                "runtime": self.runtime, "startedAt": started_at}
