"""Secrets and configs on a node: an agent on a TLS+auth etcd, the REAL Docker Engine.

The test plays the managers' part: it writes the assignment, reads the key the
agent advertises in its heartbeat and puts the node's copies itself (a secret
sealed to that key), then looks inside the container. Every container is
removed and every tmpfs unmounted by the fixtures, even when a test fails.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeless import store
from kubeless.cluster.sealing import copy_context, key_id, new_private_key, public_text, seal
from kubeless.store import Delete, Put
from kubeless.store.codec import encode_json
from kubeless_agent import running_agent
from kubeless_agent.leave import request_leave
from kubeless_agent.main import AgentProcess
from kubeless_agent.task_files import in_memory, remove_node_files
from lab.waiting import hold, until
from tests.support.agents import agent_on
from tests.support.etcd_server import EtcdCluster
from tests.support.workloads import (assign, docker_engine, reaches, remove_node_containers,
                                     report, task, unassign, unique_node)

pytestmark = pytest.mark.integration

VALUE = b"hunter2 \xe2\x9c\x93"
CONFIG = b"listen 80;\n"
SECRETS = [{"source": "dbpass", "target": "dbpass", "uid": "1000", "gid": "2000", "mode": 0o400}]
CONFIGS = [{"source": "webconf", "target": "/etc/web.conf", "mode": 0o444}]


@pytest.fixture(scope="module")
def engine() -> Any:
    return docker_engine()


@pytest.fixture
def node(engine: Any, tmp_path: Path) -> Iterator[str]:
    name = unique_node("files")
    yield name
    remove_node_containers(engine, name)
    remove_node_files(tmp_path / "files", name)


@pytest.fixture
async def agent(etcd_cluster: EtcdCluster, prefix: str, node: str,
                tmp_path: Path) -> AsyncIterator[AgentProcess]:
    config = agent_on(etcd_cluster, prefix, node, runtime="docker", heartbeat_ttl=3,
                      files_dir=str(tmp_path / "files"))
    async with running_agent(config) as a:
        yield a


async def advertised_key(rs: store.ResourceStore, node: str) -> str:
    kv, _ = await rs.etcd.get(rs.keys.heartbeat(node))
    assert kv is not None
    return str(json.loads(kv.value)["secretsKey"])


async def put_secret(rs: store.ResourceStore, node: str, public: str,
                     value: bytes = VALUE) -> None:
    copy = {"kind": "Secret", "namespace": "default", "name": "dbpass", "uid": "u-1",
            "recipient": key_id(public),
            "sealed": seal(public, value, copy_context(node, "default", "dbpass"))}
    await rs.etcd.txn([], [Put(rs.keys.copy(node, "Secret", "default", "dbpass"),
                               encode_json(copy))])


async def put_config(rs: store.ResourceStore, node: str) -> None:
    copy = {"kind": "Config", "namespace": "default", "name": "webconf", "uid": "u-2",
            "data": base64.b64encode(CONFIG).decode()}
    await rs.etcd.txn([], [Put(rs.keys.copy(node, "Config", "default", "webconf"),
                               encode_json(copy))])


def in_container(cid: str, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", "exec", cid, *argv], capture_output=True, timeout=30)


async def preparing_with(rs: store.ResourceStore, t: dict[str, Any], message: str) -> None:
    async def seen() -> bool:
        rep = await report(rs, t) or {}
        return rep.get("state") == "preparing" and rep.get("message") == message
    await until(seen, 20, f"preparing: {message}")


async def test_a_task_waits_for_its_copies_then_has_its_files_read_only_in_a_tmpfs(
        agent: AgentProcess, rstore: store.ResourceStore, node: str, tmp_path: Path,
        engine: Any) -> None:
    t = task("files", 1, node, secrets=SECRETS, configs=CONFIGS)
    await assign(rstore, t)
    await preparing_with(rstore, t, "waiting for secret dbpass, config webconf")

    await put_config(rstore, node)
    await preparing_with(rstore, t, "waiting for secret dbpass")
    # sealed to another key (a previous agent's): not usable, the task still waits
    await put_secret(rstore, node, public_text(new_private_key()))
    await hold(1.0, lambda: _still_waiting(rstore, t), "the task waits")

    await put_secret(rstore, node, await advertised_key(rstore, node))
    rep = await reaches(rstore, t, "running")
    cid = rep["containerId"]
    assert in_container(cid, "cat", "/run/secrets/dbpass").stdout == VALUE
    assert in_container(cid, "cat", "/etc/web.conf").stdout == CONFIG
    stats = in_container(cid, "stat", "-c", "%u %g %a", "/run/secrets/dbpass",
                         "/etc/web.conf").stdout.decode().split("\n")
    assert stats[:2] == ["1000 2000 400", "0 0 444"]
    write = in_container(cid, "sh", "-c", "echo x > /etc/web.conf")
    assert write.returncode != 0 and b"Read-only file system" in write.stderr

    container = engine.containers.get(cid)
    bound = {m["Destination"]: m for m in container.attrs["Mounts"]}
    task_dir = tmp_path / "files" / node / t["metadata"]["name"]
    for target in ("/run/secrets/dbpass", "/etc/web.conf"):
        assert bound[target]["Type"] == "bind" and bound[target]["RW"] is False
        source = Path(bound[target]["Source"])
        assert source == task_dir / target.lstrip("/") and in_memory(source)
    assert VALUE not in json.dumps(await report(rstore, t)).encode()

    await unassign(rstore, t)
    await until(lambda: not task_dir.exists(), 20, "the task's files removed")
    await until(lambda: not engine.containers.list(
        all=True, filters={"label": f"kubeless.node.id={node}"}), 20, "the container removed")


async def _still_waiting(rs: store.ResourceStore, t: dict[str, Any]) -> bool:
    rep = await report(rs, t) or {}
    return rep.get("state") == "preparing" and rep.get("message") == "waiting for secret dbpass"


async def test_a_task_stopped_for_good_loses_its_files_and_a_removed_assignment_stops_waiting(
        agent: AgentProcess, rstore: store.ResourceStore, node: str, tmp_path: Path) -> None:
    await put_config(rstore, node)
    done = task("files", 1, node, configs=CONFIGS, command=["cat"], args=["/etc/web.conf"])
    waiting = task("files", 2, node, secrets=SECRETS)
    await assign(rstore, waiting)
    await assign(rstore, done)
    await reaches(rstore, done, "complete")  # the waiting task blocks no other
    done_dir = tmp_path / "files" / node / done["metadata"]["name"]
    await until(lambda: not done_dir.exists(), 20, "a complete task's files removed")

    await preparing_with(rstore, waiting, "waiting for secret dbpass")
    await unassign(rstore, waiting)
    await until(lambda: _no_report(rstore, waiting), 20, "the waiting task forgotten")
    await rstore.etcd.txn([], [Delete(rstore.keys.copy(node, "Config", "default", "webconf"))])


async def _no_report(rs: store.ResourceStore, t: dict[str, Any]) -> bool:
    return await report(rs, t) is None


async def test_a_graceful_restart_keeps_the_files_and_the_container(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore, node: str,
        tmp_path: Path) -> None:
    config = agent_on(etcd_cluster, prefix, node, runtime="docker", heartbeat_ttl=3,
                      files_dir=str(tmp_path / "files"))
    t = task("files", 1, node, secrets=SECRETS)
    async with running_agent(config):
        public = await advertised_key(rstore, node)
        await put_secret(rstore, node, public)
        await assign(rstore, t)
        cid = (await reaches(rstore, t, "running"))["containerId"]
    async with running_agent(config):
        assert await advertised_key(rstore, node) != public  # a new key: copies sealed again
        assert in_container(cid, "cat", "/run/secrets/dbpass").stdout == VALUE
        assert (await report(rstore, t) or {}).get("state") == "running"
        root = tmp_path / "files" / node
        assert os.path.ismount(root) and sorted(p.name for p in root.iterdir()) == \
            [t["metadata"]["name"]]


async def test_leaving_removes_every_file_and_unmounts(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore, node: str,
        tmp_path: Path) -> None:
    config = agent_on(etcd_cluster, prefix, node, runtime="docker", heartbeat_ttl=3,
                      files_dir=str(tmp_path / "files"))
    t = task("files", 1, node, secrets=SECRETS)
    root = tmp_path / "files" / node
    async with running_agent(config):
        await put_secret(rstore, node, await advertised_key(rstore, node))
        await assign(rstore, t)
        await reaches(rstore, t, "running")
        assert os.path.ismount(root)
        await request_leave(rstore.etcd, rstore.keys, node)
        await until(lambda: not root.exists(), 30, "the node's files removed")
    assert not os.path.ismount(root)


@pytest.fixture
def process_node(tmp_path: Path) -> Iterator[str]:
    name = unique_node("files-pr")
    yield name
    remove_node_files(tmp_path / "files", name)


async def test_the_process_runtime_finds_its_files_under_kubeless_files(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore, process_node: str,
        tmp_path: Path) -> None:
    node = process_node
    config = agent_on(etcd_cluster, prefix, node, runtime="process", heartbeat_ttl=3,
                      files_dir=str(tmp_path / "files"),
                      runtime_options=(("state_dir", str(tmp_path / "process")),))
    check = ('test "$(cat "$KUBELESS_FILES/run/secrets/dbpass")" = hunter2 && '
             'test "$(cat "$KUBELESS_FILES/etc/web.conf")" = "listen 80;"')
    t = task("files", 1, node, secrets=SECRETS, configs=CONFIGS, command=["sh", "-c", check])
    async with running_agent(config):
        await put_config(rstore, node)
        await put_secret(rstore, node, await advertised_key(rstore, node), b"hunter2")
        await assign(rstore, t)
        await reaches(rstore, t, "complete")
        task_dir = tmp_path / "files" / node / t["metadata"]["name"]
        await until(lambda: not task_dir.exists(), 20, "a complete task's files removed")
        assert in_memory(tmp_path / "files" / node)  # root here: a tmpfs, not the disk
