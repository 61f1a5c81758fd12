"""The process runtime: real local processes driven by an in-process agent on real etcd.

Covers PORT, env and workdir, exit codes, stop (SIGTERM, then SIGKILL after
the grace period), bad inputs, and an agent restart that adopts running
processes by pid and learns how the ones that ended meanwhile exited.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubeless import store
from kubeless_agent import AgentConfig, running_agent
from kubeless_agent.main import AgentProcess
from lab.waiting import until
from tests.support.agents import agent_on
from tests.support.etcd_server import EtcdCluster, free_port
from tests.support.workloads import assign, reaches, report, task, unassign, unique_node

pytestmark = pytest.mark.integration

BUSYBOX = shutil.which("busybox")


def agent_config(etcd_cluster: EtcdCluster, prefix: str, node: str,
                 state_dir: Path) -> AgentConfig:
    return agent_on(etcd_cluster, prefix, node, runtime="process", heartbeat_ttl=3,
                    runtime_options=(("state_dir", str(state_dir)),))


@pytest.fixture
def node() -> str:
    return unique_node("pr")


@pytest.fixture
async def agent(etcd_cluster: EtcdCluster, prefix: str, node: str,
                tmp_path: Path) -> AsyncIterator[AgentProcess]:
    async with running_agent(agent_config(etcd_cluster, prefix, node, tmp_path)) as a:
        yield a
        for worker in a.workers.values():  # leave no process behind
            for tid, rec in list(worker.records.items()):
                if rec.task is not None:
                    await a.runtimes[node].remove(rec.task)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.skipif(BUSYBOX is None and os.environ.get("CI") != "true",
                    reason="busybox (httpd) is not installed (make deps installs it; under CI=true this fails)")
async def test_serves_on_port_with_env_and_workdir(agent: AgentProcess,
                                                   rstore: store.ResourceStore, node: str,
                                                   tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    port = free_port()
    t = task("web", 1, node, ports=[{"target": 80, "published": port, "mode": "host"}],
             workdir=str(www), env={"GREETING": "hello"},
             command=["sh", "-c", 'echo "$GREETING from $KUBELESS_TASK_NAME on '
                      '$KUBELESS_NODE_NAME" > index.html; exec busybox httpd -f -p $PORT -h .'])
    await assign(rstore, t)
    rep = await reaches(rstore, t, "running")
    assert rep["ports"] == [{"target": 80, "published": port, "protocol": "tcp", "mode": "host"}]

    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return str(r.read().decode())
    page = await until(lambda: _try(fetch), 10, "the page")
    assert page.strip() == f"hello from web.1 on {node}"


def _try(fetch: object) -> str | None:
    try:
        return fetch()  # type: ignore[operator,no-any-return]
    except OSError:
        return None


async def test_exit_codes_and_bad_inputs(agent: AgentProcess, rstore: store.ResourceStore,
                                         node: str) -> None:
    ok = task("ok", 1, node, command=["true"])
    bad = task("bad", 1, node, command=["sh", "-c", "echo it broke; exit 5"])
    missing = task("missing", 1, node, command=["kubeless-no-such-command"])
    none = task("none", 1, node)
    taken_sock = socket.socket()
    taken_sock.bind(("0.0.0.0", 0))
    taken_sock.listen()
    taken = taken_sock.getsockname()[1]
    busy = task("busy", 1, node, command=["sleep", "30"],
                ports=[{"target": 80, "published": taken, "mode": "host"}])
    try:
        for t in (ok, bad, missing, none, busy):
            await assign(rstore, t)
        assert (await reaches(rstore, ok, "complete"))["exitCode"] == 0
        failed = await reaches(rstore, bad, "failed")
        assert failed["exitCode"] == 5 and failed["error"] == "task exited with code 5: it broke"
        err = (await reaches(rstore, missing, "rejected"))["error"]
        assert err == "command 'kubeless-no-such-command' not found on this node"
        assert "has neither" in (await reaches(rstore, none, "rejected"))["error"]
        err = (await reaches(rstore, busy, "rejected"))["error"]
        assert err == f"port {taken}/tcp is already in use on this node"
    finally:
        taken_sock.close()


async def test_stop_sigterm_then_sigkill(agent: AgentProcess, rstore: store.ResourceStore,
                                         node: str, tmp_path: Path) -> None:
    polite = task("polite", 1, node, command=["sh", "-c", "sleep 60 & wait"])
    stubborn = task("stubborn", 1, node, stopGracePeriod="1s",
                    command=["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"])
    pids = {}
    for t in (polite, stubborn):
        await assign(rstore, t)
        pids[t["metadata"]["name"]] = int((await reaches(rstore, t, "running"))["containerId"]
                                          .partition(":")[2])
    began = time.monotonic()
    for t in (polite, stubborn):
        t["spec"]["desiredState"] = "shutdown"
        await assign(rstore, t)
    for t in (polite, stubborn):
        await reaches(rstore, t, "shutdown")
    assert time.monotonic() - began < 5
    assert not any(alive(pid) for pid in pids.values())
    await unassign(rstore, polite)
    await until(lambda: not (tmp_path / node / polite["metadata"]["name"]).exists(),
                what="the task's directory removed")


async def test_agent_restart_adopts_processes(etcd_cluster: EtcdCluster, prefix: str,
                                              rstore: store.ResourceStore, node: str,
                                              tmp_path: Path) -> None:
    long = task("long", 1, node, command=["sleep", "60"])
    short = task("short", 1, node, command=["sh", "-c", "sleep 1.5; exit 6"])
    async with running_agent(agent_config(etcd_cluster, prefix, node, tmp_path)):
        for t in (long, short):
            await assign(rstore, t)
        reps = [await reaches(rstore, t, "running") for t in (long, short)]
    pid = int(reps[0]["containerId"].partition(":")[2])
    assert alive(pid)  # the agent stopped; its processes did not
    await asyncio.sleep(2)  # ``short`` ends while no agent watches
    try:
        async with running_agent(agent_config(etcd_cluster, prefix, node, tmp_path)) as a:
            failed = await reaches(rstore, short, "failed")
            assert failed["exitCode"] == 6
            rep = await report(rstore, long)
            assert rep is not None and rep["state"] == "running"
            assert rep["containerId"] == f"pid:{pid}" and alive(pid)
            await unassign(rstore, long)  # the adopted process is stopped and removed
            await until(lambda: not alive(pid), 10, "the adopted process stopped")
            await until(lambda: not (tmp_path / node / long["metadata"]["name"]).exists())
            await a.runtimes[node].remove(short)
    finally:
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
