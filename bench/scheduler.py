"""Scheduler: time plan_placements on a synthetic cluster (``python -m bench scheduler``).

``python -m bench.scheduler [nodes] [tasks]`` (default 1,000 nodes, 10,000
tasks) prints the CPU seconds spent inside ``plan_placements`` only (building
the synthetic data, lab/synthetic.py, is not counted). The cluster: nodes in
three zones plus unlabelled ones, a few down or drained; services of 50
replicas, a third with reservations, some with a zone constraint, a zone
spread preference, max replicas per node or a host-mode port; half as many
tasks already running as are placed.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from lab.synthetic import make_node, make_task

from controllers.scheduler.plan import plan_placements
from kubeless.api.tasks import Task

Resource = dict[str, Any]
ZONES = ("eu", "us", "ap")


def synthetic_nodes(n_nodes: int) -> list[Resource]:
    return [make_node(f"node-{i:05d}", labels={"zone": ZONES[i % 3]} if i % 10 else {},
                      role="manager" if i < 3 else "worker",
                      availability="drain" if i % 97 == 5 else "active",
                      state="down" if i % 53 == 7 else "ready", cpus=16, memory=64 << 30)
            for i in range(n_nodes)]


def synthetic_task(i: int, service: int, node: str | None, state: str) -> Resource:
    return make_task(
        f"t{service}x{i}x{state}", service=f"svc{service}", slot=i + 1, node=node, state=state,
        cpus=0.25 if service % 3 == 0 else None, memory="256Mi" if service % 3 == 0 else None,
        constraints=[f"node.labels.zone!={ZONES[service % 3]}", "node.role!=manager"]
        if service % 4 == 1 else (),
        preferences=["node.labels.zone"] if service % 5 == 2 else (),
        max_replicas=2 if service % 7 == 3 else 0,
        host_ports=[8000 + service % 1000] if service % 11 == 4 else ())


def bench_place(n_nodes: int, n_tasks: int, replicas: int = 50) -> float:
    """CPU seconds plan_placements takes to place ``n_tasks`` on ``n_nodes``."""
    nodes = synthetic_nodes(n_nodes)
    pending = [Task.of(synthetic_task(i % replicas, i // replicas, None, "pending"))
               for i in range(n_tasks)]
    running = [Task.of(synthetic_task(i % replicas, 100_000 + i // replicas,
                                      f"node-{(i * 7) % n_nodes:05d}", "running"))
               for i in range(n_tasks // 2)]
    all_tasks = running + pending
    started = time.process_time()
    plan_placements(pending, nodes, all_tasks)
    return time.process_time() - started


def main(argv: list[str] | None = None) -> None:
    args = [int(a) for a in (argv or [])[:2]]
    n_nodes, n_tasks = (args + [1000, 10_000][len(args):])[:2]
    print(f"placed {n_tasks} tasks on {n_nodes} nodes in {bench_place(n_nodes, n_tasks):.3f}s CPU")


if __name__ == "__main__":
    main(sys.argv[1:])
