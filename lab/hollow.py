"""A whole control plane on hollow nodes, in the caller's event loop, against a real etcd.

``HollowCluster`` is an async context manager that runs a ``ControllerRunner``
with the replication, scheduler and health controllers (short lease TTLs)
and any number of *node groups*: each group is one agent process's worth of
hollow nodes on the fake runtime (``<group>-0`` ... ``<group>-<n-1>``),
sharing one heartbeat lease. A group runs in this event loop
(``running_agent``) or, when ``subprocess=True``, as a real
``python -m kubeless_agent`` process that ``kill_group`` SIGKILLs, so its
lease expires on its own as when a host dies.

On an etcd with auth (``tls=EtcdCluster.client_tls``) each identity is admitted
as it is first presented: ``admin:hollow`` and ``manager:<identity>`` root, each
group's ``node:<group>`` the hollow group's role (``kubeless.cluster.permissions``:
its nodes' keys, the reads of a node). As the join endpoint would, the cluster
registers a group's Nodes itself (as its admin) before the group's agent starts:
a node's credentials may not write ``spec/``.

Helpers read the cluster as users see it (``kubeless.store.tasks.list_tasks``:
tasks with their effective status) and wait for conditions with deadlines
(``until``), never sleeping and hoping. ``SlotWatch`` samples the tasks in
the background and records any moment where one slot had two tasks wanting
to run.

Used by tests/integration (test_controllers.py, test_failover.py, test_metrics.py, ...)
and bench/rollout.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kubeless import store
from kubeless.api import workload
from kubeless.api.tasks import TERMINAL_STATES
from kubeless.cluster.identities import admin, manager, node
from kubeless.store import TlsConfig
from kubeless.store.nodes import list_nodes
from kubeless.store.tasks import list_tasks
from kubeless_agent import AgentConfig, AgentProcess, running_agent
from kubeless_agent.registration import register_nodes
from lab.waiting import until

from controllers.framework import Clock, Controller, ControllerRunner
from controllers.health.controller import HealthController
from controllers.replication.controller import ReplicationController
from controllers.rollout.controller import RolloutController
from controllers.scheduler.controller import SchedulerController
from controllers.view import ClusterView

ROOT = Path(__file__).resolve().parents[1]
Resource = dict[str, Any]


# -- reading tasks -----------------------------------------------------------------

def state(task: Resource) -> str:
    return str((task.get("status") or {}).get("state") or "new")


def desired(task: Resource) -> str:
    return str(task["spec"].get("desiredState") or "running")


def active(task: Resource) -> bool:
    """Wanted running and not ended."""
    return desired(task) == "running" and state(task) not in TERMINAL_STATES


def running(tasks: list[Resource]) -> list[Resource]:
    return [t for t in tasks if desired(t) == "running" and state(t) == "running"]


def per_node(tasks: list[Resource]) -> Counter[str]:
    return Counter(t["spec"].get("nodeName") for t in tasks)


def service(name: str, replicas: int = 1, *, image: str = "web:1", mode: str = "replicated",
            env: dict[str, str] | None = None, placement: dict[str, Any] | None = None,
            restart: dict[str, Any] | None = None, history: int | None = None,
            reservations: dict[str, Any] | None = None, namespace: str = "default",
            job: dict[str, Any] | None = None) -> Resource:
    """A Service resource as a user would apply it (defaults filled by validation);
    ``job``: a job's fields (maxConcurrent, schedule, runHistoryLimit)."""
    template: dict[str, Any] = {"image": image}
    if env:
        template["env"] = env
    if restart:
        template["restartPolicy"] = restart
    if reservations:
        template["resources"] = {"reservations": reservations}
    spec: dict[str, Any] = {"mode": mode, "template": template, **(job or {})}
    if mode not in workload.GLOBAL_MODES:
        spec["replicas"] = replicas
    if placement:
        spec["placement"] = placement
    if history is not None:
        spec["taskHistoryLimit"] = history
    return {"apiVersion": "kubeless.io/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


# -- node groups --------------------------------------------------------------------

class IdentityTls(Protocol):
    """Common name (and the prefix its etcd role covers; ``hollow``: a hollow group's
    ``node:<group>``) -> the files of that identity: ``EtcdCluster.client_tls``."""

    def __call__(self, common_name: str, prefix: str | None = None, *,
                 hollow: bool = False) -> TlsConfig | None: ...


def no_tls(common_name: str, prefix: str | None = None, *,
           hollow: bool = False) -> TlsConfig | None:
    """A plain http:// etcd: no identity."""
    return None


@dataclass
class NodeGroup:
    name: str
    size: int
    node_ids: list[str]
    agent: AgentProcess | None = None
    proc: subprocess.Popen[bytes] | None = None
    _cm: Any = None


@dataclass
class SlotWatch:
    """Samples a service's tasks; ``violations`` lists moments a slot had two claimants."""

    cluster: HollowCluster
    name: str
    interval: float = 0.01
    samples: int = 0
    violations: list[str] = field(default_factory=list)
    max_active: int = 0
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            tasks = await self.cluster.tasks(self.name)
            self.samples += 1
            claims = Counter(t["spec"].get("slot") or t["spec"].get("nodeName")
                             for t in tasks if desired(t) == "running")
            doubled = {k: n for k, n in claims.items() if n > 1}
            if doubled:
                self.violations.append(f"sample {self.samples}: {doubled}")
            self.max_active = max(self.max_active, sum(1 for t in tasks if active(t)))
            await asyncio.sleep(self.interval)

    def start(self) -> SlotWatch:
        self._task = asyncio.create_task(self._run(), name=f"slot watch {self.name}")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class HollowCluster:
    """Controllers plus hollow node groups; see the module docstring."""

    def __init__(self, endpoints: str, prefix: str, *, lease_ttl: int = 2,
                 heartbeat_ttl: int = 2, controllers: bool = True,
                 identity: str = "hollow-manager",
                 tls: IdentityTls | None = None, clock: Clock | None = None) -> None:
        """``tls``: common name -> the files of that identity (``EtcdCluster.client_tls``),
        for an https:// etcd: the cluster's own reads as ``admin:hollow``, the controllers
        as ``manager:<identity>``, each node group as ``node:<group>`` (a hollow group).
        ``clock``: the controllers' (a ``FakeClock`` the test moves; the agents keep real time)."""
        self.endpoints = endpoints
        self.prefix = prefix
        self.lease_ttl = lease_ttl
        self.heartbeat_ttl = heartbeat_ttl
        self.with_controllers = controllers
        self.identity = identity
        self.clock = clock
        self.tls: IdentityTls = tls or no_tls
        self.store = store.connect(endpoints, prefix,
                                   tls=self.tls(admin("hollow").common_name, prefix))
        self.groups: dict[str, NodeGroup] = {}
        self.runner: ControllerRunner | None = None
        self._runner_task: asyncio.Task[None] | None = None
        self._ctl_store: store.ResourceStore | None = None

    def client_flags(self, common_name: str | None = None, *, hollow: bool = False
                     ) -> list[str]:
        """``--endpoints`` and, over TLS, ``--cacert/--cert/--key`` of ``common_name`` (the
        cluster's admin by default; ``hollow``: a group's agent): the CLI's and the
        daemons' flags."""
        tls = self.tls(common_name or admin("hollow").common_name, self.prefix, hollow=hollow)
        files = [] if tls is None else [
            "--cacert", str(tls.cacert), "--cert", str(tls.cert), "--key", str(tls.key)]
        return ["--endpoints", self.endpoints, *files]

    # -- lifecycle ------------------------------------------------------------

    async def __aenter__(self) -> HollowCluster:
        if self.with_controllers:
            await self.start_controllers()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for name in list(self.groups):
            await self.stop_group(name)
        await self.stop_controllers()
        await self.store.etcd.close()

    def make_controllers(self, ctl_store: store.ResourceStore,
                         view: ClusterView) -> list[Controller]:
        """The controllers the cluster runs, sharing ``view`` (a subclass adds more)."""
        return [ReplicationController(ctl_store, view), SchedulerController(ctl_store, view),
                HealthController(ctl_store, view)]

    async def start_controllers(self) -> ControllerRunner:
        ctl_store = self._ctl_store = store.connect(
            self.endpoints, self.prefix,
            tls=self.tls(manager(self.identity).common_name, self.prefix))
        controllers = self.make_controllers(ctl_store, ClusterView(ctl_store))
        runner = self.runner = ControllerRunner(ctl_store, controllers, self.identity,
                                                lease_ttl=self.lease_ttl, clock=self.clock)
        self._runner_task = asyncio.create_task(runner.run(), name="controllers")
        await until(lambda: all(runner.elector(c.name).is_leader for c in controllers)
                    or self._runner_task.done(), 15, "controllers lead")  # type: ignore[union-attr]
        if self._runner_task.done():
            self._runner_task.result()
        return runner

    async def stop_controllers(self) -> None:
        if self._runner_task is not None:
            runner_task = self._runner_task
            runner_task.cancel()
            # A swallowed cancellation would hang the test; fail it, naming what still runs.
            await asyncio.wait({runner_task}, timeout=30)
            if not runner_task.done():
                alive = sorted(t.get_name() for t in asyncio.all_tasks()
                               if t is not asyncio.current_task() and not t.done())
                raise AssertionError(f"the controllers did not stop within 30 s: {alive}")
            await asyncio.gather(runner_task, return_exceptions=True)
            self._runner_task = None
        if self._ctl_store is not None:
            await self._ctl_store.etcd.close()
            self._ctl_store = None
        self.runner = None

    def check_controllers(self) -> None:
        """Raise when the controllers' runner crashed."""
        if self._runner_task is not None and self._runner_task.done():
            self._runner_task.result()
            raise AssertionError("the controller runner stopped")

    # -- node groups ------------------------------------------------------------

    async def add_group(self, name: str, size: int, *, labels: dict[str, str] | None = None,
                        cpus: float | None = None, memory: int | None = None,
                        role: str = "worker", subprocess_agent: bool = False) -> NodeGroup:
        """Start ``size`` hollow nodes ``<name>-0`` ...; wait until all are ready."""
        node_ids = [f"{name}-{i}" for i in range(size)]
        group = NodeGroup(name, size, node_ids)
        config = AgentConfig(endpoints=self.endpoints, prefix=self.prefix, runtime="fake",
                             node_name=name, labels=tuple((labels or {}).items()),
                             heartbeat_ttl=self.heartbeat_ttl, cpus=cpus, memory=memory,
                             hollow_nodes=size, role=role,
                             tls=self.tls(node(name).common_name, self.prefix, hollow=True))
        await register_nodes(self.store, config.identities())  # as the join endpoint does
        if subprocess_agent:
            group.proc = self._spawn_agent(name, size, labels or {}, cpus, memory)
        else:
            group._cm = running_agent(config)
            group.agent = await group._cm.__aenter__()
        self.groups[name] = group
        await self.wait_nodes_ready(node_ids)
        return group

    def _spawn_agent(self, name: str, size: int, labels: dict[str, str], cpus: float | None,
                     memory: int | None) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "kubeless_agent",
                *self.client_flags(node(name).common_name, hollow=True),
                "--prefix", self.prefix, "--runtime", "fake", "--node-name", name,
                "--hollow-nodes", str(size), "--heartbeat-ttl", str(self.heartbeat_ttl),
                "--log-level", "WARNING"]
        if labels:
            args += ["--labels", ",".join(f"{k}={v}" for k, v in labels.items())]
        if cpus is not None:
            args += ["--cpus", str(cpus)]
        if memory is not None:
            args += ["--memory", str(memory)]
        return subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                start_new_session=True)

    async def stop_group(self, name: str) -> None:
        """Stop a group gracefully (heartbeats marked stopped, left to their lease's TTL)."""
        group = self.groups.pop(name)
        if group._cm is not None:
            await group._cm.__aexit__(None, None, None)
        if group.proc is not None and group.proc.poll() is None:
            group.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(_wait_or_kill, group.proc)

    async def kill_group(self, name: str) -> None:
        """Crash a group: SIGKILL its agent process (subprocess groups), or, in-process,
        revoke nothing and stop refreshing, so the heartbeats go when the lease expires."""
        group = self.groups.pop(name)
        if group.proc is not None:
            group.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(group.proc.wait)
            return
        agent = group.agent
        assert agent is not None and agent.heartbeats is not None
        heartbeats = agent.heartbeats

        async def crash_close() -> None:  # what a dead process does: nothing
            if heartbeats.lease is not None:
                await heartbeats.lease.abandon()
        heartbeats.close = crash_close  # type: ignore[method-assign]
        heartbeats.release = crash_close  # type: ignore[method-assign]
        await group._cm.__aexit__(None, None, None)

    async def revoke_group_lease(self, name: str) -> int:
        """Revoke a group's heartbeat lease from outside (the agent puts them back)."""
        group = self.groups[name]
        assert group.agent is not None
        lease = group.agent.lease_id
        await self.store.etcd.lease_revoke(lease)
        return lease

    async def wait_nodes_ready(self, node_ids: list[str], timeout: float = 20) -> None:
        want = set(node_ids)

        async def ready() -> bool:
            nodes = (await list_nodes(self.store)).items
            return want <= {n["metadata"]["name"] for n in nodes
                            if n["status"].get("state") == "ready"}
        await until(ready, timeout, f"nodes {sorted(want)} ready")

    async def wait_nodes_down(self, node_ids: list[str], timeout: float = 20) -> None:
        want = set(node_ids)

        async def down() -> bool:
            nodes = (await list_nodes(self.store)).items
            return not want & {n["metadata"]["name"] for n in nodes
                               if n["status"].get("state") == "ready"}
        await until(down, timeout, f"nodes {sorted(want)} down")

    async def update_node(self, name: str, *, availability: str | None = None,
                          labels: dict[str, str] | None = None, role: str | None = None) -> None:
        for _ in range(10):
            node = await self.store.get("Node", name)
            assert node is not None, f"node {name} not found"
            if availability:
                node["spec"]["availability"] = availability
            if role:
                node["spec"]["role"] = role
            if labels is not None:
                node["metadata"]["labels"] = {**(node["metadata"].get("labels") or {}),
                                              **labels}
            try:
                await self.store.update(node)
                return
            except store.Conflict:
                continue
        raise AssertionError(f"could not update node {name}")

    # -- services and tasks -------------------------------------------------------

    async def apply(self, svc: Resource) -> Resource:
        """Create or replace a Service (generation bumped on change), as ``apply`` does."""
        from kubeless.api import validate

        meta = svc["metadata"]
        for _ in range(10):
            current = await self.store.get("Service", meta["name"], meta.get("namespace"))
            if current is None:
                try:
                    return await self.store.create(validate(svc))
                except store.AlreadyExists:
                    continue
            new = validate({**svc, "metadata": {**current["metadata"], **meta}})
            new["metadata"]["generation"] = int(current["metadata"].get("generation") or 1) + 1
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            new.pop("status", None)
            try:
                return await self.store.update(new)
            except store.Conflict:
                continue
        raise AssertionError(f"could not apply {meta['name']}")

    async def scale(self, name: str, replicas: int, namespace: str = "default") -> None:
        current = await self.store.get("Service", name, namespace)
        assert current is not None
        svc = {k: v for k, v in current.items() if k != "status"}
        svc["spec"] = {**svc["spec"], "replicas": replicas}
        await self.apply(svc)

    async def tasks(self, name: str, namespace: str = "default") -> list[Resource]:
        return (await list_tasks(self.store, namespace, name)).items

    async def wait_running(self, name: str, count: int, *, timeout: float = 20,
                           exact_active: bool = True,
                           check: Callable[[list[Resource]], bool] | None = None,
                           ) -> list[Resource]:
        """Until exactly ``count`` tasks run (and, by default, no other is on its way)."""
        async def done() -> list[Resource] | None:
            self.check_controllers()
            tasks = await self.tasks(name)
            up = running(tasks)
            if len(up) != count:
                return None
            if exact_active and sum(1 for t in tasks if active(t)) != count:
                return None
            if check is not None and not check(tasks):
                return None
            return tasks or [{}]  # truthy even for count 0
        return await until(done, timeout, f"{count} tasks of {name} running")

    async def status(self, name: str, namespace: str = "default") -> dict[str, Any]:
        svc = await self.store.get("Service", name, namespace)
        return (svc or {}).get("status") or {}

    def watch(self, name: str) -> SlotWatch:
        return SlotWatch(self, name).start()

    async def keys(self, sub: str) -> list[str]:
        kvs, _ = await self.store.etcd.list_prefix(self.store.keys.root + sub)
        return [kv.key for kv in kvs]


def _wait_or_kill(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.asynccontextmanager
async def hollow_cluster(endpoints: str, prefix: str, **kw: Any) -> Any:
    async with HollowCluster(endpoints, prefix, **kw) as cluster:
        yield cluster


Waiter = Callable[[], Awaitable[Any]]


class RolloutCluster(HollowCluster):
    """A HollowCluster whose controllers include the rollout controller (rolling updates,
    rollbacks, rebalancing: what a service's update and its status need)."""

    def make_controllers(self, ctl_store: store.ResourceStore,
                         view: ClusterView) -> list[Controller]:
        return [*super().make_controllers(ctl_store, view), RolloutController(ctl_store, view)]
