"""Metrics of the endpoints controller beyond the framework's reconcile counters."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WRITES = Counter("kubeless_endpoints_writes_total",
                 "Endpoints keys written (put: content changed; delete: service gone).", ["op"])
ENDPOINTS = Histogram("kubeless_endpoints_per_service",
                      "Endpoints in a service's endpoints key, observed at each write.",
                      buckets=(0, 1, 2, 5, 10, 20, 50, 100, 500, 1000, 5000))
