"""Invariants checked in the background while faults are injected.

``Checker`` samples every task of the cluster (with its effective state)
every ``interval`` seconds and records a violation whenever:
- one slot of a replicated service has two tasks the control plane considers
  running, i.e. wanted running and running (a start-first replacement and the
  task it replaces, named by ``kubeless.io/replaces``, are the one allowed
  pair); a task told to stop whose container still runs beside its slot's
  new task is recorded in ``overlaps`` (what stop-first should prevent);
- a service with a floor (``floor(name, n)``, e.g. replicas minus update
  parallelism during a rolling update) has fewer than n running tasks;
- a process of the cluster exited although no fault killed it.
A sample that cannot be read (etcd without quorum) counts as a gap, not a
violation. ``converge`` waits until given services run their replicas, no
task is on its way and no engine runs a container no task wants there.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubeless import store
from lab.cluster import waits

if TYPE_CHECKING:
    from lab.cluster.harness import Cluster

REPLACES = "kubeless.io/replaces"


def doubled_slots(ts: list[dict[str, Any]], *, stopping: bool = False,
                  ) -> dict[tuple[str, str, int], list[str]]:
    """(namespace, service, slot) -> ids, where more than one task runs in one slot.

    Counts the tasks the control plane considers running (wanted running and
    running); with ``stopping``, also those told to stop whose container still runs."""
    up = [t for t in ts if waits.state(t) == "running" and t["spec"].get("slot") is not None
          and (stopping or waits.desired(t) == "running")]
    by_slot: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for t in up:
        key = (t["metadata"].get("namespace", "default"), t["spec"]["serviceName"],
               int(t["spec"]["slot"]))
        by_slot.setdefault(key, []).append(t)
    out = {}
    for key, group in by_slot.items():
        if len(group) < 2:
            continue
        ids = {t["metadata"]["name"] for t in group}
        pair = len(group) == 2 and any(
            ((t["metadata"].get("annotations") or {}).get(REPLACES)) in ids for t in group)
        if not pair:
            out[key] = [f"{t['metadata']['name']}@{t['spec'].get('nodeName')}"
                        f"(v{t['spec'].get('specVersion')}, desired {waits.desired(t)})"
                        for t in group]
    return out


@dataclass
class Checker:
    cluster: Cluster
    interval: float = 0.2
    violations: list[str] = field(default_factory=list)
    samples: int = 0
    gaps: int = 0
    overlaps: list[str] = field(default_factory=list)  # a stopping task beside its successor
    floors: dict[str, int] = field(default_factory=dict)
    lowest: dict[str, int] = field(default_factory=dict)  # lowest running count under a floor
    _task: asyncio.Task[None] | None = None
    _rs: store.ResourceStore | None = None
    _t0: float = field(default_factory=time.monotonic)

    def start(self) -> Checker:
        self._rs = waits.connect(self.cluster)
        self._task = asyncio.create_task(self._run(), name="invariant checker")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._rs is not None:
            await self._rs.etcd.close()
            self._rs = None

    def floor(self, service: str, n: int | None) -> None:
        """Require at least ``n`` running tasks of ``service`` from now on (None: no more)."""
        if n is None:
            self.floors.pop(service, None)
        else:
            self.floors[service] = n
            self.lowest.pop(service, None)

    def _flag(self, what: str) -> None:
        self.violations.append(f"t+{time.monotonic() - self._t0:.1f}s {what}")

    async def _run(self) -> None:
        assert self._rs is not None
        while True:
            try:
                ts = await waits.tasks(self._rs)
            except store.StoreError:
                self.gaps += 1
            else:
                self.samples += 1
                self.check(ts)
            for line in self.cluster.crashed():
                self._flag(f"process died: {line}")
                host, part = line.split()[0].split("/")
                self.cluster.hosts[host].killed.add(part)  # flagged once
            await asyncio.sleep(self.interval)

    def check(self, ts: list[dict[str, Any]]) -> None:
        for (ns, svc, slot), ids in doubled_slots(ts).items():
            self._flag(f"{ns}/{svc} slot {slot} has {len(ids)} running tasks: {ids}")
        for (ns, svc, slot), ids in doubled_slots(ts, stopping=True).items():
            self.overlaps.append(f"t+{time.monotonic() - self._t0:.1f}s {ns}/{svc} slot {slot}: "
                                 f"{ids}")
        for svc, n in self.floors.items():
            up = len(waits.running([t for t in ts if t["spec"].get("serviceName") == svc]))
            self.lowest[svc] = min(self.lowest.get(svc, up), up)
            if up < n:
                self._flag(f"{svc} has {up} running tasks, below its floor {n}")

    def assert_clean(self) -> None:
        assert self.samples > 0, "the checker never read the cluster"
        assert not self.violations, "invariants violated:\n" + "\n".join(self.violations)

    async def converge(self, services: dict[str, int], timeout: float = 60.0) -> None:
        """Until every service runs its replicas and no stray container runs anywhere."""
        rs = self._rs
        assert rs is not None

        async def done() -> bool:
            for name, replicas in services.items():
                if await waits.converged(rs, name, replicas) is None:
                    return False
            strays = await asyncio.to_thread(waits.stray_containers, self.cluster,
                                             await waits.tasks(rs))
            return not strays
        try:
            await waits.until(done, timeout, f"{services} converged with no stray container",
                              interval=0.3)
        except AssertionError:
            ts = await waits.tasks(rs)
            strays = await asyncio.to_thread(waits.stray_containers, self.cluster, ts)
            brief = [(t["spec"]["serviceName"], t["spec"].get("slot"), t["spec"].get("nodeName"),
                      waits.desired(t), waits.state(t)) for t in ts]
            raise AssertionError(f"not converged within {timeout}s: tasks {brief}; "
                                 f"stray containers {strays}") from None
