"""Run every benchmark and print its figures (``make bench``).

``python -m bench [NAME...]`` runs only the named ones.
"""

from __future__ import annotations

import sys

from bench import (autoscale_docker, autoscaler, control_plane, foundation, jobs, mesh, rollout,
                   scheduler, workloads)

SUITES = {"foundation": foundation.main, "control_plane": control_plane.main,
          "rollout": rollout.main, "workloads": workloads.main, "mesh": mesh.main,
          "scheduler": scheduler.main, "jobs": jobs.main, "autoscaler": autoscaler.main,
          "autoscale_docker": autoscale_docker.main}


def main(argv: list[str]) -> None:
    wanted = argv or list(SUITES)
    unknown = [w for w in wanted if w not in SUITES]
    if unknown:
        sys.exit(f"unknown benchmark {unknown[0]!r}; known: {', '.join(SUITES)}")
    for name in wanted:
        print(f"== {name}", flush=True)
        SUITES[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
