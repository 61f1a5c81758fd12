"""The docker runtime against the REAL Docker Engine, driven by an in-process agent on real etcd.

Assignments are written into etcd as the scheduler writes them; the agent's
reports are read back from ``agents/<node>/tasks/<id>``. Every container a
test makes carries its node's label and is removed by the fixture, even
when the test fails. Under CI=true a missing engine fails these tests.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from dataclasses import replace
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeless import store
from kubeless_agent import AgentConfig, running_agent
from kubeless_agent.main import AgentProcess
from lab.waiting import hold, until
from tests.support.agents import agent_on
from tests.support.etcd_server import EtcdCluster
from tests.support.workloads import (IMAGE, assign, docker_engine, reaches,
                                     remove_node_containers, report, task, unassign, unique_node)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine() -> Any:
    return docker_engine()


@pytest.fixture
def node(engine: Any) -> Iterator[str]:
    name = unique_node()
    yield name
    remove_node_containers(engine, name)


def agent_config(etcd_cluster: EtcdCluster, prefix: str, node: str) -> AgentConfig:
    return agent_on(etcd_cluster, prefix, node, runtime="docker", heartbeat_ttl=3)


@pytest.fixture
async def agent(etcd_cluster: EtcdCluster, prefix: str, node: str) -> AsyncIterator[AgentProcess]:
    async with running_agent(agent_config(etcd_cluster, prefix, node)) as a:
        yield a


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return str(r.read().decode())


def containers_of(engine: Any, node: str) -> dict[str, Any]:
    """task id -> container of that node (inspected; one removed meanwhile is left out)."""
    import docker.errors

    found = {}
    for c in engine.containers.list(all=True, sparse=True,
                                    filters={"label": f"kubeless.node.id={node}"}):
        try:
            c.reload()
        except docker.errors.NotFound:
            continue
        found[c.labels["kubeless.task.id"]] = c
    return found


HTTP = [{"target": 80, "protocol": "tcp", "mode": "ingress"}]


async def test_three_replicas_serve_http_on_their_published_ports(
        agent: AgentProcess, rstore: store.ResourceStore, node: str, engine: Any) -> None:
    tasks = [task("web", slot, node, ports=HTTP, env={"GREETING": "hi"}) for slot in (1, 2, 3)]
    for t in tasks:
        await assign(rstore, t)
    for slot, t in enumerate(tasks, 1):
        rep = await reaches(rstore, t, "running")
        (port,) = rep["ports"]
        assert port["target"] == 80 and port["mode"] == "ingress" and port["published"] > 0
        page = await asyncio.to_thread(fetch, port["published"])
        assert page.strip() == f"served by web.{slot} on {node}"
        c = engine.containers.get(rep["containerId"])
        assert c.name == f"web.{slot}.{t['metadata']['name']}"
        assert c.labels["kubeless.service.name"] == "web"
        assert c.labels["kubeless.service.namespace"] == "default"
        assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
        assert "GREETING=hi" in c.attrs["Config"]["Env"]
        assert f"KUBELESS_TASK_ID={t['metadata']['name']}" in c.attrs["Config"]["Env"]
    hb = await rstore.etcd.get(rstore.keys.heartbeat(node))
    assert hb[0] is not None and b'"runtimeState":"up"' in hb[0].value.replace(b" ", b"")


async def test_a_killed_container_fails_its_task_with_the_exit_code(
        agent: AgentProcess, rstore: store.ResourceStore, node: str, engine: Any) -> None:
    t = task("web", 1, node, ports=HTTP)
    await assign(rstore, t)
    rep = await reaches(rstore, t, "running")
    await asyncio.to_thread(engine.containers.get(rep["containerId"]).kill)
    failed = await reaches(rstore, t, "failed")
    assert failed["exitCode"] == 137 and "exited with code 137" in failed["error"]


async def test_healthchecks(agent: AgentProcess, rstore: store.ResourceStore, node: str) -> None:
    check = {"interval": "1s", "timeout": "1s", "retries": 1, "startPeriod": "0s"}
    sick = task("sick", 1, node, healthcheck={"test": ["CMD", "false"], **check})
    well = task("well", 1, node, healthcheck={"test": ["CMD-SHELL", "wget -q -O /dev/null "
                                                                    "http://127.0.0.1/"], **check})
    await assign(rstore, sick)
    await assign(rstore, well)
    assert (await reaches(rstore, sick, "failed"))["error"] == "container unhealthy"
    await reaches(rstore, well, "running")


async def test_a_read_only_bind_mount(agent: AgentProcess, rstore: store.ResourceStore, node: str,
                                      tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("from the host\n")
    mount = [{"type": "bind", "source": str(tmp_path), "target": "/mnt/in", "readOnly": True}]
    t = task("ro", 1, node, mounts=mount, command=["sh", "-c"],
             args=["cat /mnt/in/in.txt; echo changed > /mnt/in/in.txt"])
    await assign(rstore, t)
    failed = await reaches(rstore, t, "failed")
    assert failed["exitCode"] != 0
    assert "from the host" in failed["error"] and "Read-only file system" in failed["error"]
    assert (tmp_path / "in.txt").read_text() == "from the host\n"


async def test_bad_inputs_are_rejected_with_a_clear_error(
        agent: AgentProcess, rstore: store.ResourceStore, node: str, tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        missing_image = task("a", 1, node, image="kubeless-no-such-image:1")
        port_taken = task("b", 1, node, ports=[{"target": 80, "published": port,
                                                "protocol": "tcp", "mode": "host"}])
        no_source = task("c", 1, node, mounts=[{"type": "bind", "source": str(tmp_path / "nope"),
                                                "target": "/data"}])
        for t in (missing_image, port_taken, no_source):
            await assign(rstore, t)
        err = (await reaches(rstore, missing_image, "rejected"))["error"]
        assert "image kubeless-no-such-image:1 not found and cannot be pulled" in err
        err = (await reaches(rstore, port_taken, "rejected"))["error"]
        assert f"published port {port}/tcp is already in use on this node" in err
        err = (await reaches(rstore, no_source, "rejected"))["error"]
        assert f"bind mount source '{tmp_path / 'nope'}' does not exist" in err
        assert not (tmp_path / "nope").exists()  # docker did not make it
    finally:
        taken.close()


async def test_commands_that_exit_at_once(agent: AgentProcess, rstore: store.ResourceStore,
                                          node: str) -> None:
    ok = task("ok", 1, node, command=["true"])
    bad = task("bad", 1, node, command=["sh", "-c", "echo something broke >&2; exit 3"])
    await assign(rstore, ok)
    await assign(rstore, bad)
    assert (await reaches(rstore, ok, "complete"))["exitCode"] == 0
    failed = await reaches(rstore, bad, "failed")
    assert failed["exitCode"] == 3
    assert failed["error"] == "task exited with code 3: something broke"


async def test_stop_honours_the_grace_period(agent: AgentProcess, rstore: store.ResourceStore,
                                             node: str, engine: Any) -> None:
    polite = task("polite", 1, node, command=["sh", "-c", "trap 'exit 0' TERM; "
                                                           "while true; do sleep 0.1; done"])
    stubborn = task("stubborn", 1, node, command=["sh", "-c", "trap '' TERM; "
                                                               "while true; do sleep 0.1; done"],
                    stopGracePeriod="1s")
    for t in (polite, stubborn):
        await assign(rstore, t)
        await reaches(rstore, t, "running")
    began = time.monotonic()
    for t in (polite, stubborn):
        t["spec"]["desiredState"] = "shutdown"
        await assign(rstore, t)
    for t in (polite, stubborn):
        await reaches(rstore, t, "shutdown")
    assert time.monotonic() - began < 8
    codes = {tid: c.attrs["State"]["ExitCode"] for tid, c in containers_of(engine, node).items()}
    assert codes == {polite["metadata"]["name"]: 0, stubborn["metadata"]["name"]: 137}
    # the assignment deleted: the container is removed
    await unassign(rstore, polite)
    await until(lambda: polite["metadata"]["name"] not in containers_of(engine, node),
                what="container removed")


async def test_agent_restart_adopts_containers_and_restarts_nothing(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore, node: str,
        engine: Any) -> None:
    keep = task("web", 1, node, ports=HTTP)
    drop = task("web", 2, node, ports=HTTP)
    ends = task("batch", 1, node, command=["sh", "-c", "sleep 2; exit 4"])
    foreign = engine.containers.run(IMAGE, detach=True, labels={"kubeless.node.id": "other"},
                                    name=f"foreign-{node}")
    try:
        async with running_agent(agent_config(etcd_cluster, prefix, node)):
            for t in (keep, drop, ends):
                await assign(rstore, t)
            for t in (keep, drop, ends):
                await reaches(rstore, t, "running")
        before = {tid: (c.id, c.attrs["State"]["StartedAt"])
                  for tid, c in containers_of(engine, node).items()}
        assert all(c.status == "running" for c in containers_of(engine, node).values())
        await unassign(rstore, drop)  # while no agent runs
        await asyncio.sleep(2.5)  # ``ends`` exits while no agent watches
        async with running_agent(agent_config(etcd_cluster, prefix, node)):
            failed = await reaches(rstore, ends, "failed")
            assert failed["exitCode"] == 4
            await until(lambda: drop["metadata"]["name"] not in containers_of(engine, node),
                        what="the unassigned task's container removed")
            await reaches(rstore, keep, "running")
            c = containers_of(engine, node)[keep["metadata"]["name"]]
            assert (c.id, c.attrs["State"]["StartedAt"]) == before[keep["metadata"]["name"]]
            assert c.attrs["RestartCount"] == 0 and c.status == "running"
            rep = await report(rstore, keep)
            assert rep is not None
            page = await asyncio.to_thread(fetch, rep["ports"][0]["published"])
            assert page.startswith("served by web.1")
        foreign.reload()
        assert foreign.status == "running"  # never touched
    finally:
        foreign.remove(force=True)


async def test_with_controllers_a_killed_container_is_replaced_and_a_crash_loop_backs_off(
        etcd_cluster: EtcdCluster, prefix: str, node: str, engine: Any) -> None:
    """The controllers are a hollow cluster's, beside a real agent on the docker runtime."""
    from kubeless.api.tasks import created_at
    from lab.hollow import HollowCluster, running, service, state

    async with HollowCluster(etcd_cluster.endpoints, prefix,
                             tls=etcd_cluster.client_tls) as cluster, \
            running_agent(agent_config(etcd_cluster, prefix, node)):
        web = service("web", 2, image=IMAGE)
        crash = service("crash", 1, image=IMAGE, restart={"condition": "any", "delay": "1s"},
                        history=50)
        crash["spec"]["template"]["command"] = ["sh", "-c", "echo crashing; exit 2"]
        await cluster.apply(web)
        tasks = await cluster.wait_running("web", 2, timeout=30)
        victim = running(tasks)[0]
        await asyncio.to_thread(engine.containers.get(victim["status"]["containerId"]).kill)
        await cluster.apply(crash)
        looping = time.monotonic()
        tasks = await cluster.wait_running(
            "web", 2, timeout=30,
            check=lambda ts: victim["metadata"]["name"] not in
            [t["metadata"]["name"] for t in running(ts)])
        old = next(t for t in tasks if t["metadata"]["name"] == victim["metadata"]["name"])
        assert state(old) == "failed" and old["status"]["exitCode"] == 137
        async def backing_off() -> bool:  # never more attempts than the 1 s delay allows
            return len(await cluster.tasks("crash")) <= (time.monotonic() - looping) / 1.0 + 1
        await hold(5.0, backing_off, "the crash loop keeps to its restart delay")
        attempts = await cluster.tasks("crash")
        failed = [t for t in attempts if state(t) == "failed"]
        assert len(attempts) >= 2, [state(t) for t in attempts]
        assert all(t["status"]["exitCode"] == 2 for t in failed)
        assert all("crashing" in t["status"]["error"] for t in failed)
        born = sorted(created_at(t) or 0 for t in attempts)
        assert min(b - a for a, b in zip(born, born[1:])) >= 0.9  # the restart delay
        # the agent is not wedged by the loop: it still runs new work
        await cluster.scale("web", 3)
        await cluster.wait_running("web", 3, timeout=30)


class SocketProxy:
    """A unix socket forwarding to the engine's: cutting it is the engine going away."""

    def __init__(self, path: Path, target: str) -> None:
        self.path, self.target = path, target
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._handle, str(self.path))

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.close()
        self.path.unlink(missing_ok=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_unix_connection(self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_w}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()
        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self.writers -= {writer, up_w}


async def test_the_heartbeat_carries_the_engine_version(
        agent: AgentProcess, rstore: store.ResourceStore, node: str, engine: Any) -> None:
    import json

    wanted = str((await asyncio.to_thread(engine.version))["Version"])

    async def engine_version() -> str:
        kv, _ = await rstore.etcd.get(rstore.keys.heartbeat(node))
        return "" if kv is None else str(json.loads(kv.value).get("engineVersion"))
    await until(lambda: _is(engine_version(), wanted), 10, f"engineVersion {wanted}")


async def test_an_engine_that_goes_away_marks_the_runtime_down_then_recovers(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore, node: str,
        engine: Any, tmp_path: Path) -> None:
    import json

    target = engine.api.base_url.replace("http+docker://localunixsocket", "")
    target = target if target.startswith("/") else "/var/run/docker.sock"
    proxy = SocketProxy(tmp_path / "docker.sock", target)
    await proxy.start()
    cfg = replace(agent_config(etcd_cluster, prefix, node),
                  runtime_options=(("base_url", f"unix://{proxy.path}"),))

    async def runtime_state() -> str:
        kv, _ = await rstore.etcd.get(rstore.keys.heartbeat(node))
        return "" if kv is None else str(json.loads(kv.value).get("runtimeState"))

    async with running_agent(cfg):
        stays = task("web", 1, node, ports=HTTP)
        dies = task("web", 2, node, ports=HTTP)
        for t in (stays, dies):
            await assign(rstore, t)
        reps = {t["metadata"]["name"]: await reaches(rstore, t, "running") for t in (stays, dies)}
        await until(lambda: _is(runtime_state(), "up"), 10, "runtime up")
        await proxy.stop()
        await until(lambda: _is(runtime_state(), "down"), 10, "runtime down in the heartbeat")
        # no task failed for it; a container dying meanwhile is not missed
        await asyncio.to_thread(engine.containers.get(reps[dies["metadata"]["name"]]
                                                      ["containerId"]).kill)
        async def both_running() -> bool:  # nothing is reported while the engine is away
            states = [(await report(rstore, t) or {}).get("state") for t in (stays, dies)]
            return states == ["running", "running"]
        await hold(1.0, both_running, "reports unchanged while the engine is down")
        await proxy.start()
        await until(lambda: _is(runtime_state(), "up"), 10, "runtime up again")
        assert (await reaches(rstore, dies, "failed"))["exitCode"] == 137
        assert (await report(rstore, stays) or {}).get("state") == "running"
        more = task("web", 3, node, ports=HTTP)  # and it runs new work again
        await assign(rstore, more)
        await reaches(rstore, more, "running")
    await proxy.stop()


async def _is(value: Any, want: str) -> bool:
    return bool(await value == want)
