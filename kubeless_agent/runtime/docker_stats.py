"""A container's usage from the Docker Engine's stats (pure).

``GET /containers/<id>/stats?stream=false&one_shot=true`` answers at once with the
container's counters (without ``one_shot`` the engine waits a second to fill
``precpu_stats``; the load publisher keeps its own previous sample instead):

- CPU: ``cpu_stats.cpu_usage.total_usage``, nanoseconds used since the container
  started; two samples over wall time give cores busy (``kubeless_agent.load.rates``);
- memory: ``memory_stats.usage`` minus the inactive page cache, as ``docker stats``
  shows it (cgroup v1: ``total_inactive_file``; v2: ``inactive_file``).

A container that is not running answers empty stats: no usage.
"""

from __future__ import annotations

from typing import Any

from kubeless_agent.runtime import Usage

NANOSECONDS = 1e9


def memory_in_use(memory_stats: dict[str, Any]) -> int | None:
    """``usage`` minus the inactive file cache (the docker CLI's figure); None without one."""
    usage = memory_stats.get("usage")
    if not isinstance(usage, int):
        return None
    stats = memory_stats.get("stats") or {}
    for name in ("total_inactive_file", "inactive_file"):  # cgroup v1, then v2
        inactive = stats.get(name)
        if isinstance(inactive, int) and inactive < usage:
            return usage - inactive
    return usage


def usage_of(stats: Any) -> Usage | None:
    """(CPU seconds used in total, memory bytes in use), or None for empty stats."""
    if not isinstance(stats, dict):
        return None
    total = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
    memory = memory_in_use(stats.get("memory_stats") or {})
    if not isinstance(total, int) or memory is None:
        return None
    return total / NANOSECONDS, memory
