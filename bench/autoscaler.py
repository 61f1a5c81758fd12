"""Autoscaler: time the HPA rule over a synthetic cluster (``python -m bench autoscaler``).

``python -m bench.autoscaler [services] [tasks per service]`` (default 1,000
services of 10 tasks) evaluates every service as one autoscaler pass does:
the reports indexed by task once (``LoadIndex``), then per service
``task_usage`` and ``decide`` with a recommendation history, and prints passes over all
services per second and the CPU time per service. The load: 100 nodes, each
reporting the tasks placed on it; services alternate between busy, idle, within
tolerance, missing a report, and scaling on connections too. Building the data
is not counted.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from lab.synthetic import make_task

from controllers.autoscaler.decide import LoadIndex, Policy, decide, remember, task_usage
from kubeless.api.load import LoadReport, parse_report
from kubeless.api.tasks import Task

Resource = dict[str, Any]
NOW = 1_800_000_000.0
NODES = 100
BUSY = (1.2, 0.02, 0.36, 0.5)  # cores per task by service % 4: up, down, steady, up


def synthetic(n_services: int, per_service: int
              ) -> tuple[list[tuple[Policy, int, list[Task]]], list[LoadReport]]:
    services, reports = [], {f"node-{n:03d}": {"tasks": {}, "connections": {}}
                             for n in range(NODES)}
    for s in range(n_services):
        block: Resource = {"min": 1, "max": 50, "targetCPU": 50, "scaleDownDelay": "5m"}
        if s % 5 == 0:
            block["targetConnections"] = 20
        policy = Policy.of({"spec": {"mode": "replicated", "autoscale": block}})
        assert policy is not None
        tasks = []
        for i in range(per_service):
            node = f"node-{(s * per_service + i) % NODES:03d}"
            stored = make_task(f"s{s}t{i}", service=f"svc{s}", slot=i + 1, node=node,
                               state="running", cpus=0.5 if s % 2 else None)
            tasks.append(Task.of(stored))
            if s % 7 == 3 and i == 0:
                continue  # one task without a report
            reports[node]["tasks"][stored["metadata"]["name"]] = {  # type: ignore[index]
                "namespace": "default", "service": f"svc{s}", "cpu": BUSY[s % 4],
                "memory": 1 << 20}
            reports[node]["connections"][stored["metadata"]["name"]] = 5.0 + s % 40  # type: ignore[index]
        services.append((policy, per_service, tasks))
    parsed = [parse_report({"node": node, "timestamp": NOW - 1, "period": 10.0, "host": {},
                            **body}) for node, body in reports.items()]
    return services, [r for r in parsed if r is not None]


def bench_decide(n_services: int, per_service: int, passes: int = 5) -> tuple[float, int]:
    """CPU seconds per pass over every service, and how many services changed replicas."""
    services, reports = synthetic(n_services, per_service)
    history: dict[int, Any] = {}
    changed = 0
    started = time.process_time()
    index = LoadIndex(reports)  # once per set of reports, as the controller keeps it
    for p in range(passes):
        now = NOW + 15 * p
        for i, (policy, current, tasks) in enumerate(services):
            usage = task_usage(tasks, index, now)
            decision = decide(policy, current, usage, history.get(i, ()), now)
            history[i] = remember(history.get(i, ()), decision, policy, now)
            changed += p == 0 and decision.direction is not None
    return (time.process_time() - started) / passes, changed


def main(argv: list[str] | None = None) -> None:
    args = [int(a) for a in (argv or [])[:2]]
    n_services, per_service = (args + [1000, 10][len(args):])[:2]
    seconds, changed = bench_decide(n_services, per_service)
    print(f"autoscaler: {n_services} services x {per_service} tasks, {NODES} nodes' reports: "
          f"{seconds:.3f}s CPU per pass ({n_services / seconds:,.0f} decisions/s, "
          f"{seconds / n_services * 1e6:.0f} us each; {changed} would scale)")


if __name__ == "__main__":
    main(sys.argv[1:])
