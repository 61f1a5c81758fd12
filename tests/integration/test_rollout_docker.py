"""Rolling updates and rollbacks end to end: real etcd, real processes, the real Docker Engine.

One ``python -m controllers`` (every controller, 2 s leases) and one
``python -m kubeless_agent --runtime docker`` serve the whole module on a
key prefix of its own; each test has its own 4-replica service whose tasks
run as real containers on that node. Version 1 is ``kubeless-demo:latest``
with ``VERSION=1``; version 2 is the same image under a second tag (made for
this module, removed after it) with ``VERSION=2``; each container's page
says its version. Changes go through the CLI as a user types them
(``service update``, ``service rollback``, ``rollout status``, ``service
ps``). A ``Sampler`` reads the engine itself (not etcd) every few tens of
milliseconds, so the batch bounds are asserted on what really ran, and the
containers' start and finish times prove the order of each replacement.

Containers are removed by label after each test (and every container of
the node after the module), even when a test fails. Under CI=true a
missing engine fails these tests (``docker_engine``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from kubeless import store
from kubeless.api import validate
from kubeless.store.nodes import list_nodes
from kubeless.store.tasks import list_tasks
from lab.waiting import until
from tests.support.agents import agent_flags
from tests.support.etcd_server import EtcdCluster
from tests.support.workloads import FAST_HEALTHCHECK as HEALTHCHECK, IMAGE, ROOT, docker_engine

pytestmark = pytest.mark.integration
Resource = dict[str, Any]
REPLICAS = 4
MISSING = "kubeless-missing:nope"
LEASE_TTL = 2
LEADERS = {"replication", "scheduler", "health", "rollout"}
# PID 1 of a container ignores SIGTERM unless it traps it: trap it, so a stop takes no grace.
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; echo \"version $VERSION\" > /www/index.html; "
                       "httpd -f -p 80 -h /www & wait"]


# -- the module's control plane: the controllers and one docker agent, as processes --------

@dataclass
class Plane:
    etcd: EtcdCluster
    prefix: str
    node: str
    engine: Any
    v2: str           # the version 2 image tag
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def check(self) -> None:
        """Fail at once, with the log's tail, when a process died."""
        for p, log in zip(self.procs, ("controllers.log", "agent.log")):
            if p.poll() is not None:
                tail = (self.logs / log).read_text()[-3000:]
                raise AssertionError(f"{log[:-4]} exited with {p.returncode}:\n{tail}")

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.etcd.client_env(), "KUBELESS_PREFIX": self.prefix,
               "PYTHONPATH": str(ROOT)}
        env.pop("KUBELESS_NAMESPACE", None)
        return subprocess.run([sys.executable, "-m", "kubeless_cli.main", *args], cwd=ROOT,
                              capture_output=True, text=True, env=env, timeout=timeout)

    async def acli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(self.cli, *args, timeout=timeout)


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def engine() -> Any:
    return docker_engine()


@pytest.fixture(scope="module")
def v2_image(engine: Any) -> Iterator[str]:
    repo, tag = "kubeless-demo", f"rollout-v2-{uuid.uuid4().hex[:8]}"
    engine.images.get(IMAGE).tag(repo, tag)
    yield f"{repo}:{tag}"
    try:
        engine.images.remove(f"{repo}:{tag}")  # only the tag: kubeless-demo:latest stays
    except Exception:
        pass


@pytest.fixture(scope="module")
def plane(etcd_cluster: EtcdCluster, engine: Any, v2_image: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    prefix = f"/kubeless-rollout-docker-{uuid.uuid4().hex[:8]}"
    node = f"ro-{uuid.uuid4().hex[:8]}"
    logs = tmp_path_factory.mktemp("rollout-docker")
    common = ["--prefix", prefix, "--log-level", "WARNING"]
    p = Plane(etcd_cluster, prefix, node, engine, v2_image, logs)
    try:
        p.procs.append(_spawn(["controllers", *etcd_cluster.client_flags(f"manager:{node}"),
                               *common, "--identity", f"{node}-manager",
                               "--lease-ttl", str(LEASE_TTL)], logs / "controllers.log"))
        p.procs.append(_spawn(["kubeless_agent", *agent_flags(etcd_cluster, prefix, node, runtime="docker"),
                               *common, "--runtime", "docker", "--node-name",
                               node, "--heartbeat-ttl", "3"], logs / "agent.log"))
        yield p
    finally:
        for proc in reversed(p.procs):
            _stop(proc)
        remove_containers(engine, f"kubeless.node.id={node}")


def remove_containers(engine: Any, *labels: str) -> None:
    """Remove every container carrying all ``labels`` (one gone meanwhile is fine)."""
    for summary in engine.api.containers(all=True, filters={"label": list(labels)}):
        try:
            engine.api.remove_container(summary["Id"], force=True, v=True)
        except Exception:
            pass


_names = iter(range(1, 10**6))


@pytest.fixture
async def cluster(plane: Plane) -> AsyncIterator[Cluster]:
    c = Cluster(plane, plane.etcd.connect(plane.prefix), f"web{next(_names)}")
    try:
        await c.ready()
        yield c
    finally:
        for sampler in c.samplers:  # left running by a failed test
            await sampler.stop()
        try:
            await c.store.delete("Service", c.name, "default")
        except Exception:
            pass
        await c.store.etcd.close()
        remove_containers(plane.engine, f"kubeless.node.id={plane.node}",
                          f"kubeless.service.name={c.name}")


# -- one test's service ------------------------------------------------------------------

def web(name: str, *, order: str = "stop-first", parallelism: int = 2, monitor: str = "1s",
        failure_action: str = "pause", healthcheck: bool = False) -> Resource:
    template: Resource = {"image": IMAGE, "command": COMMAND, "env": {"VERSION": "1"},
                          "stopGracePeriod": "1s",
                          "restartPolicy": {"condition": "any", "delay": "1s"}}
    if healthcheck:
        template["healthcheck"] = HEALTHCHECK
    update = {"parallelism": parallelism, "delay": "0s", "failureAction": failure_action,
              "monitor": monitor, "maxFailureRatio": 0, "order": order}
    rollback = {**update, "failureAction": "pause", "monitor": "1s"}
    return {"apiVersion": "kubeless.io/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": REPLICAS, "template": template, "update": update,
                     "rollback": rollback}}


@dataclass
class Box:
    """One container as the engine tells it."""

    id: str
    task: str
    slot: int
    image: str
    version: str
    status: str
    started: float
    finished: float | None

    @property
    def running(self) -> bool:
        return self.status == "running"


def _stamp(text: str) -> float | None:
    """Docker's RFC 3339 (nanoseconds, or the zero time) -> unix seconds."""
    if not text or text.startswith("0001-"):
        return None
    main, _, frac = text.rstrip("Z").partition(".")
    base = datetime.fromisoformat(main).replace(tzinfo=timezone.utc).timestamp()
    return base + (float(f"0.{frac}") if frac else 0.0)


class Cluster:
    """The plane seen from one test: its service, its tasks in etcd, its containers."""

    def __init__(self, plane: Plane, rstore: store.ResourceStore, name: str) -> None:
        self.plane, self.store, self.name = plane, rstore, name
        self.engine = plane.engine
        self.samplers: list[Sampler] = []

    async def ready(self) -> None:
        async def up() -> bool:
            self.plane.check()
            nodes = (await list_nodes(self.store)).items
            kvs, _ = await self.store.etcd.list_prefix(self.store.keys.root + "leaders/")
            leading = {kv.key.rsplit("/", 1)[-1] for kv in kvs}
            return LEADERS <= leading and any(
                n["metadata"]["name"] == self.plane.node and n["status"].get("state") == "ready"
                for n in nodes)
        await until(up, 30, "node ready and controllers leading")

    async def create(self, svc: Resource) -> None:
        await self.store.create(validate(svc))

    async def service(self) -> Resource:
        svc = await self.store.get("Service", self.name, "default")
        assert svc is not None
        return svc

    async def tasks(self) -> list[Resource]:
        return (await list_tasks(self.store, "default", self.name)).items

    def boxes(self) -> list[Box]:
        """Every container of the service, inspected (one removed meanwhile is left out)."""
        import docker.errors

        found = []
        for summary in self.engine.api.containers(all=True, filters={"label": [
                f"kubeless.node.id={self.plane.node}", f"kubeless.service.name={self.name}"]}):
            try:
                info = self.engine.api.inspect_container(summary["Id"])
            except docker.errors.NotFound:
                continue
            env = dict(e.partition("=")[::2] for e in info["Config"]["Env"] or [])
            state = info["State"]
            found.append(Box(info["Id"], info["Config"]["Labels"]["kubeless.task.id"],
                             int(info["Name"].lstrip("/").split(".")[1]), info["Config"]["Image"],
                             env.get("VERSION", ""), state["Status"],
                             _stamp(state["StartedAt"]) or 0.0, _stamp(state["FinishedAt"])))
        return found

    async def running_boxes(self) -> list[Box]:
        return [b for b in await asyncio.to_thread(self.boxes) if b.running]

    async def converged(self, image: str, version: str, timeout: float = 40) -> list[Resource]:
        """Until the service's 4 slots each run exactly one task of ``image``/``version``,
        in etcd and in the engine, and nothing else runs or is on its way."""
        async def done() -> list[Resource] | None:
            self.plane.check()
            tasks = await self.tasks()
            wanted = [t for t in tasks if t["spec"].get("desiredState") == "running"]
            if len(wanted) != REPLICAS or any(
                    t["status"].get("state") != "running" or
                    t["spec"]["template"]["image"] != image or
                    t["spec"]["template"]["env"]["VERSION"] != version for t in wanted):
                return None
            boxes = await self.running_boxes()
            if sorted((b.slot, b.image, b.version) for b in boxes) != \
                    [(s, image, version) for s in range(1, REPLICAS + 1)]:
                return None
            return tasks
        return await until(done, timeout, f"{REPLICAS} tasks of {image} VERSION={version} "  # type: ignore[no-any-return]
                           "running")

    async def update_state(self, *states: str, timeout: float = 40) -> Resource:
        """Until the rollout of the newest generation is in one of ``states``."""
        last: Resource = {}

        async def reached() -> Resource | None:
            nonlocal last
            self.plane.check()
            svc = await self.service()
            last = (svc.get("status") or {}).get("updateStatus") or {}
            ok = last.get("state") in states and \
                int(last.get("generation") or 0) >= int(svc["metadata"]["generation"])
            return last if ok else None
        try:
            return await until(reached, timeout, f"update state in {states}")  # type: ignore[no-any-return]
        except AssertionError:
            tasks = [(t["metadata"]["name"][:6], t["spec"].get("slot"),
                      t["spec"]["template"]["image"], t["spec"]["desiredState"],
                      t["status"].get("state"), t["status"].get("error"))
                     for t in await self.tasks()]
            raise AssertionError(f"update state not in {states} within {timeout}s: {last}; "
                                 f"tasks {sorted(tasks, key=str)}") from None

    async def update(self, *flags: str) -> None:
        res = await self.plane.acli("service", "update", "-d", *flags, self.name)
        assert res.returncode == 0, res.stderr


def running_summaries(c: Cluster) -> list[dict[str, Any]]:
    """The engine's list of the service's running containers (one API call)."""
    return list(c.engine.api.containers(filters={"status": "running", "label": [
        f"kubeless.node.id={c.plane.node}", f"kubeless.service.name={c.name}"]}))


class Sampler:
    """Reads the engine in the background: how many of the service's containers run (and
    are healthy), and how many slots have none running."""

    def __init__(self, c: Cluster, interval: float = 0.03) -> None:
        self.c, self.interval = c, interval
        self.samples = 0
        self.min_running = self.min_healthy = 10**9
        self.max_running = 0
        self.max_slots_down = 0
        self.worst: list[str] = []
        self._task = asyncio.create_task(self._run(), name=f"sampler {c.name}")
        c.samplers.append(self)

    async def _run(self) -> None:
        while True:
            up = await asyncio.to_thread(running_summaries, self.c)
            slots = {int(s["Names"][0].lstrip("/").split(".")[1]) for s in up}
            healthy = sum(1 for s in up if "(healthy)" in s.get("Status", ""))
            down = REPLICAS - len(slots & set(range(1, REPLICAS + 1)))
            if down > self.max_slots_down:
                self.worst = sorted(s["Names"][0] for s in up)
            self.samples += 1
            self.min_running = min(self.min_running, len(up))
            self.max_running = max(self.max_running, len(up))
            self.min_healthy = min(self.min_healthy, healthy)
            self.max_slots_down = max(self.max_slots_down, down)
            await asyncio.sleep(self.interval)

    async def stop(self) -> Sampler:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self


def by_task(boxes: list[Box]) -> dict[str, Box]:
    return {b.task: b for b in boxes}


# -- the tests ---------------------------------------------------------------------------

async def test_stop_first_update_replaces_every_slot_two_at_a_time(cluster: Cluster) -> None:
    v2 = cluster.plane.v2
    await cluster.create(web(cluster.name, order="stop-first", parallelism=2))
    old = await cluster.converged(IMAGE, "1")
    old_ids = {t["metadata"]["name"] for t in old}
    sampler = Sampler(cluster)
    await cluster.update("--image", v2, "--env-add", "VERSION=2")
    follow = await cluster.plane.acli("rollout", "status", f"service/{cluster.name}",
                                      "--interval", "0.2", "--timeout", "60", timeout=90)
    await sampler.stop()
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert follow.stdout.splitlines()[-1] == f'service "{cluster.name}" successfully rolled out'
    us = await cluster.update_state("completed", timeout=5)
    assert us["completedAt"] >= us["startedAt"] and us["message"] == "update completed"
    tasks = await cluster.converged(v2, "2")
    # never more than parallelism (2) slots without a running container; the engine read
    # often enough to have seen the batches
    assert sampler.samples >= 10 and 1 <= sampler.max_slots_down <= 2, vars(sampler)
    assert sampler.max_running <= REPLICAS, vars(sampler)
    # old tasks shut down, their containers stopped before their slot's new one started
    stopped = [t for t in tasks if t["metadata"]["name"] in old_ids]
    assert len(stopped) == REPLICAS
    assert all(t["spec"]["desiredState"] == "shutdown" and t["status"]["state"] == "shutdown"
               for t in stopped)
    boxes = by_task(await asyncio.to_thread(cluster.boxes))
    new = [b for b in boxes.values() if b.version == "2"]
    assert sorted(b.slot for b in new) == [1, 2, 3, 4] and all(b.running for b in new)
    for t in stopped:  # their stopped containers stay while the task is in the history
        box = boxes.get(t["metadata"]["name"])
        assert box is not None and not box.running and box.finished is not None, box
        successor = next(b for b in new if b.slot == box.slot)
        assert box.finished <= successor.started, (box, successor)
    # the new containers serve version 2
    for b in new:
        out = cluster.engine.containers.get(b.id).exec_run(
            ["wget", "-q", "-O", "-", "http://127.0.0.1/"])
        assert out.exit_code == 0 and out.output.decode().strip() == "version 2"
    # service ps: the new task running in each slot, the old one shut down under it
    ps = await cluster.plane.acli("service", "ps", cluster.name)
    assert ps.returncode == 0, ps.stderr
    rows = [r.split() for r in ps.stdout.splitlines()[1:]]
    fresh = [r for r in rows if r[1] != "\\_"]
    history = [r for r in rows if r[1] == "\\_"]
    assert sorted(r[1] for r in fresh) == [f"{cluster.name}.{s}" for s in (1, 2, 3, 4)]
    assert all(r[2:6] == [v2, cluster.plane.node, "Running", "Running"] for r in fresh), ps.stdout
    assert len(history) == REPLICAS, ps.stdout
    assert all(r[3:7] == [IMAGE, cluster.plane.node, "Shutdown", "Shutdown"]
               for r in history), ps.stdout


async def test_start_first_update_never_drops_below_four_healthy(cluster: Cluster) -> None:
    v2 = cluster.plane.v2
    await cluster.create(web(cluster.name, order="start-first", parallelism=2,
                             healthcheck=True))
    old = await cluster.converged(IMAGE, "1")
    await until(lambda: _all_healthy(cluster), 20, "4 healthy containers")
    old_ids = {t["metadata"]["name"] for t in old}
    sampler = Sampler(cluster)
    await cluster.update("--image", v2, "--env-add", "VERSION=2")
    us = await cluster.update_state("completed")
    await sampler.stop()
    tasks = await cluster.converged(v2, "2")
    assert us["message"] == "update completed"
    assert sampler.samples >= 10, vars(sampler)
    assert sampler.min_running >= REPLICAS and sampler.min_healthy >= REPLICAS, vars(sampler)
    assert sampler.max_running <= REPLICAS + 2, vars(sampler)  # parallelism 2 pairs at most

    async def old_reported_stopped() -> list[Resource] | None:
        # the engine stopped them (converged); their agent's report may still be on its way
        now = await cluster.tasks()
        return now if all(t["status"].get("state") == "shutdown" for t in now
                          if t["metadata"]["name"] in old_ids) else None
    tasks = await until(old_reported_stopped, 20, "the old tasks reported shut down")
    boxes = by_task(await asyncio.to_thread(cluster.boxes))
    for t in tasks:
        if t["metadata"]["name"] not in old_ids:
            continue
        assert t["spec"]["desiredState"] == "shutdown" and t["status"]["state"] == "shutdown"
        box = boxes.get(t["metadata"]["name"])
        assert box is not None and not box.running and box.finished is not None, box
        successor = next(b for b in boxes.values() if b.version == "2" and b.slot == box.slot)
        # the new container ran (and turned healthy) before the old one was stopped
        assert successor.started < box.finished, (successor, box)
    new_tasks = [t for t in tasks if t["metadata"]["name"] not in old_ids]
    replaced = {(t["metadata"].get("annotations") or {}).get("kubeless.io/replaces")
                for t in new_tasks}
    assert replaced == old_ids


async def _all_healthy(c: Cluster) -> bool:
    up = await asyncio.to_thread(running_summaries, c)
    return sum(1 for s in up if "(healthy)" in s.get("Status", "")) == REPLICAS


async def test_missing_image_pauses_after_the_first_batch(cluster: Cluster) -> None:
    await cluster.create(web(cluster.name, parallelism=2, monitor="5s", failure_action="pause"))
    await cluster.converged(IMAGE, "1")
    before = {b.task: b.id for b in await cluster.running_boxes()}
    sampler = Sampler(cluster)
    await cluster.update("--image", MISSING)
    us = await cluster.update_state("paused")
    assert "paused due to failure or early termination of task" in us["message"], us
    # watch a little longer: the rollout stays where it stopped
    seen = sampler.samples
    await until(lambda: sampler.samples >= seen + 20, 20, "20 more samples")
    await sampler.stop()
    assert sampler.max_slots_down == 2, vars(sampler)  # parallelism, and no more
    tasks = await cluster.tasks()
    by_name = {t["metadata"]["name"]: t for t in tasks}
    taken_down = [n for n in before if by_name[n]["spec"]["desiredState"] != "running"]
    assert len(taken_down) == 2, [(n[:6], by_name[n]["spec"]["desiredState"]) for n in before]
    survivors = await cluster.running_boxes()
    assert sorted(b.task for b in survivors) == sorted(set(before) - set(taken_down))
    assert all(b.id == before[b.task] and b.image == IMAGE for b in survivors)
    assert (await cluster.service())["status"]["updateStatus"]["state"] == "paused"
    ps = await cluster.plane.acli("service", "ps", "--no-trunc", cluster.name)
    assert f"image {MISSING} not found and cannot be pulled" in ps.stdout, ps.stdout
    follow = await cluster.plane.acli("rollout", "status", f"service/{cluster.name}")
    assert follow.returncode == 1 and "rollout paused" in follow.stdout, follow.stdout


async def test_missing_image_rolls_back(cluster: Cluster) -> None:
    await cluster.create(web(cluster.name, parallelism=2, monitor="5s",
                             failure_action="rollback"))
    await cluster.converged(IMAGE, "1")
    before = {b.task: b.id for b in await cluster.running_boxes()}
    sampler = Sampler(cluster)
    await cluster.update("--image", MISSING)
    us = await cluster.update_state("rollback_completed")
    await sampler.stop()
    assert "rolled back due to failure" in us["message"], us
    svc = await cluster.service()
    assert svc["spec"]["template"]["image"] == IMAGE
    tasks = await cluster.converged(IMAGE, "1")
    assert sampler.max_slots_down <= 2, vars(sampler)
    # the two tasks the failed batch left alone were never touched
    running_now = {t["metadata"]["name"] for t in tasks
                   if t["spec"]["desiredState"] == "running"}
    kept = set(before) & running_now
    assert len(kept) == 2, (sorted(before), sorted(running_now))
    boxes = by_task(await cluster.running_boxes())
    assert all(boxes[n].id == before[n] for n in kept)
    follow = await cluster.plane.acli("rollout", "status", f"service/{cluster.name}")
    assert follow.returncode == 1 and "rolled back" in follow.stdout, follow.stdout


async def test_manual_rollback_through_the_cli(cluster: Cluster) -> None:
    v2 = cluster.plane.v2
    await cluster.create(web(cluster.name, parallelism=2))
    await cluster.converged(IMAGE, "1")
    await cluster.update("--image", v2, "--env-add", "VERSION=2")
    await cluster.update_state("completed")
    await cluster.converged(v2, "2")
    back = await cluster.plane.acli("service", "rollback", "-d", cluster.name)
    assert back.returncode == 0 and back.stdout.strip() == cluster.name, back.stderr
    follow = await cluster.plane.acli("rollout", "status", f"service/{cluster.name}",
                                      "--interval", "0.2", "--timeout", "60", timeout=90)
    assert follow.returncode == 1, follow.stdout + follow.stderr
    assert follow.stdout.splitlines()[-1].startswith(f'service "{cluster.name}" rolled back: '
                                                     "rollback completed"), follow.stdout
    await cluster.converged(IMAGE, "1")
    assert all(b.version == "1" for b in await cluster.running_boxes())
    svc = await cluster.service()
    assert svc["spec"]["template"]["env"]["VERSION"] == "1"
    history = await cluster.plane.acli("rollout", "history", f"service/{cluster.name}")
    assert history.returncode == 0
    assert any(line.split()[1:3] == [v2, "previous"] for line in history.stdout.splitlines()
               [1:]), history.stdout
