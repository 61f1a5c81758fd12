"""Where a process serves Prometheus ``/metrics``, and how Prometheus finds it.

Every kubeless process (an agent, a controllers process, or a manager node's
process running both) serves its metrics over plain HTTP, without
authentication, at ``http://ADDR:PORT/metrics``; ADDR defaults to 127.0.0.1
everywhere, so nothing is exposed unless asked (``--metrics-addr``).

Each process says where it can be scraped (``scrape_address``: the bound
address, or the node's advertise address when bound to every address):

    agents/<node>/heartbeat   "metrics": "HOST:PORT"   (the agent's process)
    managers/<identity>       {"metrics": "HOST:PORT"} (a controllers process;
                              the value was the bare identity before, and is
                              read either way)

``targets`` turns those into Prometheus' file-based discovery format (one
target per process, ``job`` kubeless-agent, kubeless-controllers, or
kubeless-manager when one process serves both), which
``kubeless prometheus targets`` writes and manifests/prometheus/prometheus.yml
reads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("kubeless.metrics")

DEFAULT_ADDR = "127.0.0.1"
WILDCARDS = ("", "0.0.0.0", "::", "[::]")
AGENT_JOB, CONTROLLERS_JOB, MANAGER_JOB = "kubeless-agent", "kubeless-controllers", \
    "kubeless-manager"


class MetricsBindError(Exception):
    """The metrics server could not listen (one line: the address and why)."""


def serve(addr: str, port: int, what: str) -> None:
    """Serve the process's default registry at ``http://addr:port/metrics``; logged."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=addr)
    except OSError as err:
        raise MetricsBindError(f"cannot serve metrics on {host_port(addr, port)}: "
                               f"{err.strerror or err}") from None
    log.info("%s metrics: http://%s/metrics (http without TLS)", what, host_port(addr, port))


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def scrape_address(bind: str, port: int, advertise: str) -> str:
    """Where Prometheus scrapes a process bound to ``bind``: that address, or
    ``advertise`` (the node's address) when it listens on every address."""
    return host_port(advertise if bind in WILDCARDS else bind, port)


def manager_value(identity: str, metrics: str | None) -> bytes:
    """The value of ``managers/<identity>``."""
    value: dict[str, Any] = {"identity": identity}
    if metrics:
        value["metrics"] = metrics
    return json.dumps(value, sort_keys=True).encode()


def manager_metrics(raw: bytes) -> str | None:
    """The metrics address in a ``managers/<identity>`` value (None: none said)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None  # a bare identity: an older process
    found = value.get("metrics") if isinstance(value, dict) else None
    return found if isinstance(found, str) and found else None


def targets(heartbeats: Mapping[str, Mapping[str, Any]],
            managers: Mapping[str, str | None]) -> list[dict[str, Any]]:
    """Prometheus file_sd target groups: node -> heartbeat, identity -> metrics address.

    One group per process (hollow nodes share their process's address), sorted;
    a manager whose controllers share its agent's address is one kubeless-manager
    target."""
    by_addr: dict[str, dict[str, Any]] = {}
    for node, beat in sorted(heartbeats.items()):
        addr = beat.get("metrics")
        if isinstance(addr, str) and addr and addr not in by_addr:
            by_addr[addr] = {"job": AGENT_JOB, "node": node}
    for identity, addr in sorted(managers.items()):
        if not addr:
            continue
        if addr in by_addr and by_addr[addr]["job"] == AGENT_JOB:
            by_addr[addr]["job"] = MANAGER_JOB
        elif addr not in by_addr:
            by_addr[addr] = {"job": CONTROLLERS_JOB, "node": identity}
    return [{"targets": [addr], "labels": labels} for addr, labels in sorted(by_addr.items())]
