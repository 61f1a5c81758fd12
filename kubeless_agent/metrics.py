"""Prometheus metrics of an agent process (one set per process, hollow nodes included).

Counts are per process, not per node, so 1,000 hollow nodes add no label
cardinality. ``kubeless.cluster.metrics_endpoint.serve`` exposes them at ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TASKS = Gauge("kubeless_agent_tasks", "Tasks this process runs, by observed state", ["state"])
TASK_REPORTS = Counter("kubeless_agent_task_reports",
                       "Task reports written to etcd (puts and deletes)")
REPORT_TXNS = Counter("kubeless_agent_report_transactions",
                      "Transactions that carried task reports")
RUNTIME_ERRORS = Counter("kubeless_agent_runtime_errors",
                         "Runtime calls that failed", ["operation"])
LEASE_LOSSES = Counter("kubeless_agent_heartbeat_lease_losses",
                       "Heartbeat leases lost (etcd unreachable for a TTL, or revoked)")
CONTAINER_START_SECONDS = Histogram(
    "kubeless_agent_container_start_seconds",
    "From a task's start call until it runs (healthy, when it has a healthcheck)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
NODES = Gauge("kubeless_agent_nodes", "Nodes this process runs (more than one: hollow nodes)")


def task_state_changed(old: str | None, new: str | None) -> None:
    """Move one task between the ``kubeless_agent_tasks`` states (None: not counted)."""
    if old == new:
        return
    if old is not None:
        TASKS.labels(state=old).dec()
    if new is not None:
        TASKS.labels(state=new).inc()


# -- load (kubeless_agent.load): set only by an agent of real nodes, not hollow ones ------

TASK_CPU = Gauge("kubeless_agent_task_cpu_cores",
                 "Cores a running task used, averaged over the last load period",
                 ["namespace", "service", "task"])
TASK_MEMORY = Gauge("kubeless_agent_task_memory_bytes",
                    "Memory a running task uses (docker: without the inactive page cache)",
                    ["namespace", "service", "task"])
HOST_CPU = Gauge("kubeless_agent_host_cpu_cores",
                 "Cores busy on the host, averaged over the last load period")
HOST_CPUS = Gauge("kubeless_agent_host_cpus", "CPUs online on the host")
HOST_MEMORY = Gauge("kubeless_agent_host_memory_bytes",
                    "Memory in use on the host (MemTotal - MemAvailable)")
HOST_MEMORY_TOTAL = Gauge("kubeless_agent_host_memory_total_bytes", "The host's MemTotal")
LOAD_REPORT_FAILURES = Counter("kubeless_agent_load_report_failures",
                               "Load report writes that failed (tried again the next period)")
