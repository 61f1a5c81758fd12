"""The soak: random faults at random times while services are scaled and updated.

``python -m lab soak`` (``make soak``) starts the cluster, runs two
replicated services, and until SOAK_SECONDS have passed: injects one fault
from ``FAULTS`` at a time (held 1 to 8 s, or until its effect is done), scales
and updates the services at random meanwhile, then undoes the fault and waits
until the cluster is whole again. The ``Checker`` samples the tasks all along.
At the end every service must converge to its last replicas with its last
spec and no stray container; it prints the faults injected, the writes made
and refused, the violations found, and exits 1 on any violation. ``--seed``
replays a run's choices (the timing of a real cluster still varies).

One fault is not a failure but an operation: an agent stopped gracefully
(SIGTERM, as ``systemctl restart`` sends) and started again. Nothing is
written meanwhile, and its host must then run exactly the containers it ran
before (same ids): a graceful restart replaces nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable

from kubeless import store
from lab.cluster import waits
from lab.cluster.checker import Checker
from lab.cluster.harness import Cluster
from lab.waiting import hold

SERVICES = {"soak-a": 4, "soak-b": 3}
Fault = Callable[[Cluster, random.Random], str]


def _kill_worker(c: Cluster, rnd: random.Random) -> str:
    h = rnd.choice(c.workers or c.managers)
    c.kill(h, ["agent"])
    c.kill_containers(h)
    return f"host {h.name} died (agent and containers killed)"


def _kill_manager(c: Cluster, rnd: random.Random) -> str:
    h = rnd.choice(c.managers)
    c.kill(h)
    return f"manager {h.name} died (agent, controllers, etcd killed)"


def _pause(c: Cluster, rnd: random.Random) -> str:
    h = rnd.choice(list(c.hosts.values()))
    c.pause(h)
    return f"host {h.name} frozen (SIGSTOP)"


def _cut(c: Cluster, rnd: random.Random) -> str:
    h = rnd.choice(list(c.hosts.values()))
    c.cut(h)
    return f"host {h.name} cut off the network"


def _restart_agent(c: Cluster, rnd: random.Random) -> str:
    h = rnd.choice(list(c.hosts.values()))
    c.restart(h, "agent")
    return f"agent of {h.name} restarted"


def _kill_etcd(c: Cluster, rnd: random.Random) -> str:
    h = rnd.choice(c.managers)
    c.kill(h, ["etcd"])
    return f"etcd member on {h.name} killed"


def _lose_quorum(c: Cluster, rnd: random.Random) -> str:
    n = len(c.managers)
    hs = rnd.sample(c.managers, k=n - n // 2)  # n // 2 left: one short of a quorum
    for h in hs:
        c.kill(h, ["etcd"])
    return f"etcd quorum lost (members on {', '.join(h.name for h in hs)} killed)"


def _kill_leader(c: Cluster, rnd: random.Random) -> str:
    h = rnd.choice(c.managers)
    c.kill(h, ["controllers"])
    return f"controllers on {h.name} killed"


FAULTS: dict[str, Fault] = {
    "kill-worker": _kill_worker, "kill-manager": _kill_manager, "pause": _pause, "cut": _cut,
    "restart-agent": _restart_agent, "kill-etcd": _kill_etcd, "lose-quorum": _lose_quorum,
    "kill-controllers": _kill_leader,
}


GRACEFUL = "graceful-agent-restart"


async def _etcd_whole(c: Cluster) -> bool:
    for m in c.managers:
        if not await asyncio.to_thread(c.etcd_healthy, m):
            return False
    return True


async def _whole_again(c: Cluster, timeout: float = 90.0) -> None:
    c.restore()
    await waits.until(lambda: _etcd_whole(c), timeout, "every etcd member healthy")
    await waits.cluster_ready(c, timeout)


class Soak:
    def __init__(self, cluster: Cluster, rnd: random.Random, seconds: float) -> None:
        self.c, self.rnd, self.seconds = cluster, rnd, seconds
        self.replicas = dict(SERVICES)
        self.version = {name: 1 for name in SERVICES}
        self.faults: list[str] = []
        self.writes: Counter[str] = Counter()
        self.violations: list[str] = []
        self.t0 = time.monotonic()

    def log(self, what: str) -> None:
        print(f"  t+{time.monotonic() - self.t0:6.1f}s  {what}", flush=True)

    async def write(self, rs: store.ResourceStore) -> None:
        name = self.rnd.choice(list(SERVICES))
        try:
            if self.rnd.random() < 0.5:
                n = self.rnd.randint(1, 6)
                await waits.scale(rs, name, n)
                self.replicas[name] = n
                self.log(f"scale {name} to {n}")
            else:
                v = self.version[name] + 1

                def bump(s: dict[str, object]) -> None:
                    s["spec"]["template"]["env"]["VERSION"] = str(v)  # type: ignore[index]
                await waits.change(rs, name, bump)
                self.version[name] = v
                self.log(f"update {name} to VERSION={v}")
            self.writes["made"] += 1
        except (store.StoreError, AssertionError) as err:
            self.writes["refused"] += 1
            self.log(f"write to {name} refused: {type(err).__name__}")

    async def run(self, rs: store.ResourceStore, checker: Checker) -> None:
        for name, n in SERVICES.items():
            await waits.apply(rs, waits.service(name, n, update={"parallelism": 2,
                                                                 "failureAction": "continue"}))
        await checker.converge(self.replicas, 90)
        while time.monotonic() - self.t0 < self.seconds:
            kind = self.rnd.choice([*FAULTS, GRACEFUL])
            if kind == GRACEFUL:
                await self.graceful_restart(rs, checker)
                continue
            what = FAULTS[kind](self.c, self.rnd)
            self.faults.append(f"t+{time.monotonic() - self.t0:.1f}s {what}")
            self.log(f"FAULT {what}")
            end = time.monotonic() + self.rnd.uniform(1.0, 8.0)
            while time.monotonic() < end:
                if self.rnd.random() < 0.4:
                    await self.write(rs)
                await asyncio.sleep(self.rnd.uniform(0.3, 1.5))
            await _whole_again(self.c)
            self.log("cluster whole again")
            if self.rnd.random() < 0.5:
                await self.write(rs)

    async def graceful_restart(self, rs: store.ResourceStore, checker: Checker) -> None:
        """SIGTERM an agent, start it again; its host's containers must be the same ones."""
        h = self.rnd.choice(list(self.c.hosts.values()))
        await waits.cluster_ready(self.c, 90)
        await checker.converge(self.replicas, 120)
        before = await _settled_ids(self.c, h.name)  # nothing moving there any more
        old = await _started_at(rs, h.name)
        what = f"agent of {h.name} stopped gracefully (SIGTERM) and started again"
        self.faults.append(f"t+{time.monotonic() - self.t0:.1f}s {what}")
        self.log(f"OPERATION {what}")
        await asyncio.to_thread(self.c.terminate, h, "agent")
        self.c.start_part(h, "agent")

        async def new_agent_live() -> bool:
            return await _started_at(rs, h.name) not in (None, old)
        await waits.until(new_agent_live, 60, f"the new agent of {h.name}'s heartbeat")
        after = await asyncio.to_thread(_container_ids, self.c, h.name)
        if after != before:
            self.violations.append(f"graceful restart of {h.name}'s agent changed its "
                                   f"containers: {len(before - after)} gone, "
                                   f"{len(after - before)} new")
        await _whole_again(self.c)
        self.log("cluster whole again")

    async def settle(self, rs: store.ResourceStore, checker: Checker) -> list[str]:
        """Problems left once the cluster had time to converge."""
        problems = list(self.violations)
        try:
            await checker.converge(self.replicas, 120)
        except AssertionError as err:
            problems.append(str(err))
        for name, v in self.version.items():
            ts = waits.running(await waits.tasks(rs, name))
            versions = {t["spec"]["template"].get("env", {}).get("VERSION") for t in ts}
            if versions - {str(v)}:
                problems.append(f"{name} runs VERSION {sorted(versions)}, wanted {v}")
        return problems


def _container_ids(c: Cluster, host: str) -> set[str]:
    return {str(row["id"]) for row in waits.containers(c)[host]}


async def _settled_ids(c: Cluster, host: str, window: float = 3.0,
                       timeout: float = 60.0) -> set[str]:
    """The host's container ids once they stayed the same for ``window`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        ids = await asyncio.to_thread(_container_ids, c, host)

        async def same() -> bool:
            return await asyncio.to_thread(_container_ids, c, host) == ids
        try:
            await hold(window, same, f"{host}'s containers")
            return ids
        except AssertionError:
            if time.monotonic() > deadline:
                raise


async def _started_at(rs: store.ResourceStore, node: str) -> str | None:
    kv, _ = await rs.etcd.get(rs.keys.heartbeat(node))
    return None if kv is None else str(json.loads(kv.value).get("startedAt"))


async def _soak(cluster: Cluster, rnd: random.Random, seconds: float) -> int:
    soak = Soak(cluster, rnd, seconds)
    rs = waits.connect(cluster)
    checker = Checker(cluster).start()
    try:
        await soak.run(rs, checker)
        soak.log("faults over; waiting for convergence")
        problems = await soak.settle(rs, checker)
    finally:
        await checker.stop()
        await rs.etcd.close()
    print(f"\nfaults injected ({len(soak.faults)}):")
    for f in soak.faults:
        print(f"  {f}")
    print(f"writes: {soak.writes['made']} made, {soak.writes['refused']} refused; "
          f"checker: {checker.samples} samples, {checker.gaps} unreadable")
    print(f"stop-first overlaps seen (old task still stopping beside its successor): "
          f"{len(checker.overlaps)} samples")
    found = checker.violations + problems
    print(f"violations ({len(found)}):")
    for v in found:
        print(f"  {v}")
    return 1 if found else 0


def soak(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rnd = random.Random(seed)
    cluster = Cluster(args.managers, args.workers, heartbeat_ttl=args.heartbeat_ttl,
                      lease_ttl=3, tls=not args.insecure)
    print(f"soak: {args.seconds:.0f}s of random faults, seed {seed}, "
          f"{len(cluster.hosts)} hosts in {cluster.dir}", flush=True)
    with cluster:
        return asyncio.run(_soak(cluster, rnd, args.seconds))

