"""Metrics of the autoscaler beyond the framework's reconcile counters."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DECISIONS = Counter("kubeless_autoscaler_decisions_total",
                    "Replicas the autoscaler wrote, by service and direction (up, down).",
                    ["namespace", "service", "direction"])
DESIRED = Gauge("kubeless_autoscaler_desired_replicas",
                "Replicas the autoscaler last decided on, per autoscaled service.",
                ["namespace", "service"])
