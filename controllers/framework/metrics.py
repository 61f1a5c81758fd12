"""Prometheus metrics of the controller framework, labelled by controller.

The runner updates them; whoever serves ``/metrics`` exports
``prometheus_client``'s default registry. Plain per-controller counters
(``ControllerStats``, in runner.py) carry the same numbers for tests and
for ``describe``-style output.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_TOTAL = Counter(
    "kubeless_controller_reconcile_total", "Reconciles run, whatever their outcome.",
    ["controller"])
RECONCILE_ERRORS = Counter(
    "kubeless_controller_reconcile_errors_total",
    "Reconciles that raised (conflicts included) and were requeued with backoff.",
    ["controller"])
RECONCILE_DURATION = Histogram(
    "kubeless_controller_reconcile_duration_seconds", "How long a reconcile took.",
    ["controller"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
WORKQUEUE_DEPTH = Gauge(
    "kubeless_controller_workqueue_depth", "Keys ready in the controller's work queue.",
    ["controller"])
IS_LEADER = Gauge(
    "kubeless_controller_is_leader", "1 while this process leads the controller.",
    ["controller"])
