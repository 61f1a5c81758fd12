"""Control-plane metrics beyond the framework's: tasks, nodes, services, placement latency.

Task, node and service figures (``service_figures``: desired and running
tasks of each long-running service, and whether its rollout is paused) are computed from the cluster view when Prometheus
scrapes (a custom collector), so they cost nothing between scrapes and are
always current. Latencies are observed where the event happens: creation
to assignment in the scheduler, creation to running here, by a handler of
the view's reports (``observe_report``), when an agent first reports a task
running. ``register_view`` hooks both to the process's view.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from kubeless.api import workload
from kubeless.api.tasks import Task, created_at

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from controllers.view import ClusterView

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)

PLACED = Counter("kubeless_scheduler_placements_total", "Tasks the scheduler assigned to a node.")
UNSCHEDULABLE = Gauge("kubeless_scheduler_unschedulable_tasks",
                      "Tasks no node accepts, as of the last scheduling pass.")
PLAN_SECONDS = Histogram("kubeless_scheduler_plan_duration_seconds",
                         "CPU time of one scheduling pass (plan only, no writes).",
                         buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5))
TIME_TO_ASSIGN = Histogram("kubeless_task_creation_to_assignment_seconds",
                           "From a task's creation to its assignment to a node.",
                           buckets=_LATENCY_BUCKETS)
TIME_TO_RUNNING = Histogram("kubeless_task_creation_to_running_seconds",
                            "From a task's creation to its agent first reporting it running.",
                            buckets=_LATENCY_BUCKETS)


PAUSED_STATES = ("paused", "rollback_paused")


def service_figures(service: dict[str, Any], tasks: list[Task]) -> tuple[int, int, int] | None:
    """(desired tasks, running tasks, rollout paused 0/1) of a long-running service;
    None for a job (its tasks complete: running fewer than replicas is no fault).
    Desired is ``replicas``, or for a global service the tasks replication wants
    running (one per eligible node)."""
    if workload.is_job(service):
        return None
    wanted = [t for t in tasks if t.wants_running]
    if workload.is_global(service):
        desired = len(wanted)
    else:
        desired = max(int((service.get("spec") or {}).get("replicas", 1) or 0), 0)
    running = sum(1 for t in wanted if t.state == "running")
    update = (service.get("status") or {}).get("updateStatus") or {}
    paused = int(isinstance(update, dict) and update.get("state") in PAUSED_STATES)
    return desired, running, paused


class ViewCollector(Collector):
    """kubeless_tasks{state}, kubeless_nodes{state}, and per service
    kubeless_service_desired_tasks, kubeless_service_running_tasks and
    kubeless_service_rollout_paused, counted at scrape time."""

    def __init__(self, view: ClusterView) -> None:
        self.view = view

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tasks = GaugeMetricFamily("kubeless_tasks", "Tasks by effective state.",
                                  labels=["state"])
        nodes = GaugeMetricFamily("kubeless_nodes", "Nodes by state and availability.",
                                  labels=["state", "availability"])
        if self.view.caches:
            for state, n in sorted(Tally(t.state for t in self.view.all_tasks()).items()):
                tasks.add_metric([state], n)
            for (state, avail), n in sorted(Tally(
                    ((x.get("status") or {}).get("state", "down"),
                     (x.get("spec") or {}).get("availability", "active"))
                    for x in self.view.nodes()).items()):
                nodes.add_metric([state, avail], n)
        yield tasks
        yield nodes
        yield from self.services()

    def services(self) -> Iterator[GaugeMetricFamily]:
        labels = ["namespace", "service"]
        desired = GaugeMetricFamily("kubeless_service_desired_tasks",
                                    "Tasks a long-running service wants running (replicas, "
                                    "or one per eligible node for a global one).", labels=labels)
        running = GaugeMetricFamily("kubeless_service_running_tasks",
                                    "Tasks of a long-running service wanted and running.",
                                    labels=labels)
        paused = GaugeMetricFamily("kubeless_service_rollout_paused",
                                   "1 while the service's rollout (or rollback) is paused.",
                                   labels=labels)
        if self.view.caches:
            for stored in self.view.services():
                meta = stored.get("metadata") or {}
                ns, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
                figures = service_figures(self.view.service(ns, name) or stored,
                                          self.view.tasks_of(ns, name))
                if figures is not None:
                    for family, value in zip((desired, running, paused), figures):
                        family.add_metric([ns, name], value)
        yield desired
        yield running
        yield paused

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def observe_report(task: dict[str, Any] | None, old: Any, new: Any) -> None:
    """Creation to running, when an agent first reports a task running."""
    if not isinstance(new, dict) or new.get("state") != "running":
        return
    if isinstance(old, dict) and old.get("state") == "running":
        return
    created = created_at(task) if task else None
    if created is not None:
        TIME_TO_RUNNING.observe(max(0.0, time.time() - created))


_registered: set[int] = set()


def register_view(view: ClusterView) -> None:
    """Count the view's tasks and nodes at scrape time; observe its reports (once per view)."""
    if id(view) not in _registered:
        _registered.add(id(view))
        REGISTRY.register(ViewCollector(view))
        view.on_report(observe_report)
