"""What /proc says of the host and of a process runtime task (Linux only).

Host: ``/proc/stat``'s first line (the jiffies every CPU spent, by kind) and its
``cpuN`` lines (the CPUs online), ``/proc/meminfo``'s ``MemTotal`` and
``MemAvailable`` (used = total - available, as ``free`` counts it: page cache the
kernel can drop is not used). ``busy_cores`` turns two readings into cores busy:
the share of non-idle jiffies times the CPUs, so no clock tick length or wall
time is involved.

A process runtime task runs in a session of its own (its wrapper shell is the session
leader: session id = its pid), so its usage is its session's: the sum over every
process of that session of utime + stime + cutime + cstime (the children it reaped
are in cutime) in seconds, and of RSS in bytes. Orphans stay in the session; a
dead orphan's time goes to whoever reaps it (``kubeless_agent.load.rates`` drops that
period's rate rather than spike).

The parsers are pure; ``read_host`` and ``session_usage`` read files (blocking: call
them off the event loop).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # jiffies per second (utime, stime)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")  # bytes per page (rss)
# The cpu line's numbers: user nice system idle iowait irq softirq steal guest guest_nice.
COUNTED = 8  # up to steal: guest and guest_nice are already in user and nice
IDLE_COLUMNS = (3, 4)  # idle, iowait


@dataclass(frozen=True)
class CpuTimes:
    busy: int  # jiffies every CPU spent doing something
    total: int  # jiffies in all, idle included


@dataclass(frozen=True)
class HostReading:
    cpu: CpuTimes
    cpus: int
    memory_used: int  # bytes
    memory_total: int  # bytes


def parse_cpu_times(stat: str) -> CpuTimes:
    """The aggregate ``cpu`` line of /proc/stat (ValueError when there is none)."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            numbers = [int(f) for f in fields[1:]][:COUNTED]
            idle = sum(numbers[i] for i in IDLE_COLUMNS if i < len(numbers))
            return CpuTimes(sum(numbers) - idle, sum(numbers))
    raise ValueError("/proc/stat has no cpu line")


def cpu_count(stat: str) -> int:
    """The CPUs online: /proc/stat's ``cpuN`` lines."""
    return sum(1 for line in stat.splitlines()
               if line.startswith("cpu") and line[3:4].isdigit()) or 1


def parse_meminfo(meminfo: str) -> tuple[int, int]:
    """(used, total) bytes: ``MemTotal - MemAvailable`` and ``MemTotal``."""
    values = {}
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    total = values.get("MemTotal", 0)
    available = values.get("MemAvailable", values.get("MemFree", 0))
    return max(total - available, 0), total


def busy_cores(before: CpuTimes, after: CpuTimes, cpus: float) -> float | None:
    """Cores busy on average between two readings (None when no jiffy passed)."""
    total = after.total - before.total
    busy = after.busy - before.busy
    if total <= 0 or busy < 0:
        return None
    return min(busy / total, 1.0) * cpus


def read_host(proc: Path = Path("/proc")) -> HostReading:
    stat = (proc / "stat").read_text()
    used, total = parse_meminfo((proc / "meminfo").read_text())
    return HostReading(parse_cpu_times(stat), cpu_count(stat), used, total)


@dataclass(frozen=True)
class ProcStat:
    session: int
    cpu_ticks: int  # utime + stime + cutime + cstime
    rss_pages: int


def parse_proc_stat(text: str) -> ProcStat | None:
    """One /proc/<pid>/stat line (the command may hold spaces and parentheses: split
    after the last ``)``); None when unreadable."""
    fields = text.rpartition(")")[2].split()
    try:  # field n of proc(5) is fields[n - 3]
        return ProcStat(int(fields[3]), sum(int(f) for f in fields[11:15]), int(fields[21]))
    except (IndexError, ValueError):
        return None


def session_usage(sessions: Collection[int], proc: Path = Path("/proc")
                  ) -> dict[int, tuple[float, int]]:
    """session id -> (CPU seconds, RSS bytes) of its processes, for those that have any."""
    wanted = set(sessions)
    found: dict[int, tuple[float, int]] = {}
    if not wanted:
        return found
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            stat = parse_proc_stat(Path(entry.path, "stat").read_text())
        except OSError:
            continue  # it ended meanwhile
        if stat is None or stat.session not in wanted:
            continue
        cpu, rss = found.get(stat.session, (0.0, 0))
        found[stat.session] = (cpu + stat.cpu_ticks / CLOCK_TICKS,
                               rss + stat.rss_pages * PAGE_SIZE)
    return found
