"""What a Service's mode means, in one place (pure: plain dicts in, plain data out).

Four modes, as Swarm 20.10 has them: ``replicated`` (``replicas`` tasks kept
running), ``global`` (one task per eligible node), ``replicated-job``
(``replicas`` completions in total, ``maxConcurrent`` at once) and
``global-job`` (one run per eligible node). A job's task that exits 0 is
complete and never restarted; a failed one follows the restart policy.

- ``problems``: the rules across fields the CRD schema cannot say (which
  fields belong to which mode); validation.py reports them with their paths;
- accessors every reader shares: ``mode_of``, ``is_job``, ``is_global``,
  ``max_concurrent``, ``schedule_of``, ``run_history_limit``, ``autoscale_of``, ``rebalances``.

A cron schedule's grammar is ``kubeless.api.cron``'s; the HPA rule is the
autoscaler's; job progress is the replication controller's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubeless.api import cron

Resource = dict[str, Any]
MODES = ("replicated", "global", "replicated-job", "global-job")
JOB_MODES = frozenset({"replicated-job", "global-job"})
GLOBAL_MODES = frozenset({"global", "global-job"})
DEFAULT_RUN_HISTORY = 3  # runs whose tasks are kept, as Kubernetes' CronJob keeps 3


def _spec(service: Resource) -> Resource:
    spec = service.get("spec")
    return spec if isinstance(spec, dict) else {}


def mode_of(service: Resource) -> str:
    mode = _spec(service).get("mode")
    return mode if isinstance(mode, str) and mode in MODES else "replicated"


def is_job(service: Resource) -> bool:
    return mode_of(service) in JOB_MODES


def is_global(service: Resource) -> bool:
    """One task per eligible node (global, global-job), rather than numbered slots."""
    return mode_of(service) in GLOBAL_MODES


def max_concurrent(service: Resource) -> int:
    """A replicated job's tasks running at once: ``maxConcurrent``, or every completion."""
    spec = _spec(service)
    replicas = max(int(spec.get("replicas", 1) or 0), 0)
    limit = int(spec.get("maxConcurrent") or 0)
    return min(limit, replicas) if limit > 0 else replicas


def schedule_of(service: Resource) -> str | None:
    """A job's cron schedule, or None (a job without one runs once per spec)."""
    schedule = _spec(service).get("schedule")
    return schedule if isinstance(schedule, str) and schedule and is_job(service) else None


def run_history_limit(service: Resource) -> int:
    limit = _spec(service).get("runHistoryLimit")
    return int(limit) if isinstance(limit, int) and limit >= 0 else DEFAULT_RUN_HISTORY


def autoscale_of(service: Resource) -> Resource | None:
    """The ``autoscale`` block when the autoscaler owns ``replicas``, else None."""
    scale = _spec(service).get("autoscale")
    return scale if isinstance(scale, dict) and mode_of(service) == "replicated" else None


def rebalances(service: Resource) -> bool:
    placement = _spec(service).get("placement")
    return isinstance(placement, dict) and placement.get("rebalance") is True \
        and mode_of(service) == "replicated"


def problems(service: Resource) -> Iterator[tuple[list[str | int], str]]:
    """(path, message) for each field that does not belong to the service's mode."""
    spec = _spec(service)
    mode = mode_of(service)
    job = mode in JOB_MODES
    for field in ("schedule", "runHistoryLimit"):
        if field in spec and not job:
            yield (["spec", field], f"only a job has a {field} (mode replicated-job or "
                                    f"global-job), not mode {mode}")
    schedule = spec.get("schedule")
    if job and isinstance(schedule, str):
        problem = cron.error(schedule)
        if problem is not None:
            yield (["spec", "schedule"], problem)
    if "maxConcurrent" in spec and mode != "replicated-job":
        yield (["spec", "maxConcurrent"], f"only mode replicated-job has maxConcurrent, "
                                          f"not mode {mode}")
    scale = spec.get("autoscale")
    if scale is not None and mode != "replicated":
        yield (["spec", "autoscale"], f"only mode replicated autoscales, not mode {mode}")
    elif isinstance(scale, dict):
        low, high = scale.get("min", 1), scale.get("max")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            yield (["spec", "autoscale", "min"], f"{low} is above max ({high})")
        if not scale.get("targetCPU") and not scale.get("targetConnections"):
            yield (["spec", "autoscale"], "needs targetCPU or targetConnections: what to "
                                          "scale on")
    placement = spec.get("placement")
    if isinstance(placement, dict) and placement.get("rebalance") is True \
            and mode != "replicated":
        yield (["spec", "placement", "rebalance"], f"only mode replicated rebalances, "
                                                   f"not mode {mode}")
