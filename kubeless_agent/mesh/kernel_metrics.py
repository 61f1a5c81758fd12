"""Prometheus metrics of the mesh's data path (the agent's registry: the process default).

``PATH``: 1 for the path this agent forwards with (``kernel`` or ``userspace``).
Rule syncs of the kernel path: their duration and failures. Connections per
published port and endpoint come from the counter of each endpoint's chain in
the node's table, read at scrape time (``ENDPOINT_CONNECTIONS``, a collector the
kernel meshes of this process add themselves to). The count is carried over
each table replacement, so it only goes up while the agent runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

PATH = Gauge("kubeless_agent_mesh_path",
             "1 for the data path the routing mesh forwards with (kernel, userspace)",
             ["path"])
RULE_SYNC_SECONDS = Histogram(
    "kubeless_agent_mesh_rule_sync_seconds",
    "Time to build and apply the node's nftables table (kernel path)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
RULE_SYNC_FAILURES = Counter("kubeless_agent_mesh_rule_sync_failures",
                             "Failed applications of the node's nftables table (retried)")

ENDPOINT_LABELS = ["port", "protocol", "owner", "service", "endpoint"]
Sample = tuple[tuple[str, ...], float]  # ENDPOINT_LABELS values, connections


class EndpointConnections(Collector):
    """``kubeless_agent_mesh_kernel_connections``: read from each source at scrape time."""

    def __init__(self) -> None:
        self.sources: dict[int, Callable[[], Iterable[Sample]]] = {}

    def add(self, source: Callable[[], Iterable[Sample]]) -> int:
        key = id(source)
        self.sources[key] = source
        return key

    def discard(self, key: int) -> None:
        self.sources.pop(key, None)

    def describe(self) -> list[Any]:
        return [self._family()]

    def collect(self) -> Iterable[Any]:
        family = self._family()
        for source in list(self.sources.values()):
            for labels, value in source():
                family.add_metric(list(labels), value)
        yield family

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "kubeless_agent_mesh_kernel_connections",
            "Connections the kernel path sent to each endpoint of a published port "
            "(the endpoint chain's counter)", labels=ENDPOINT_LABELS)


ENDPOINT_CONNECTIONS = EndpointConnections()
REGISTRY.register(ENDPOINT_CONNECTIONS)


def use_path(path: str) -> None:
    for name in ("kernel", "userspace"):
        PATH.labels(name).set(1 if name == path else 0)
