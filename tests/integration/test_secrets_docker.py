"""Secrets and configs on a secured cluster with the docker runtime, as a user runs them.

The plane (``tests.support.docker_plane``): the controllers with the CA key, two docker
agents, each confined by etcd's auth to its own keys; TLS everywhere. Secrets and
configs are made with the CLI (``secret create``, ``config create``), services
reference them and are pinned to node a, so node b runs none of their tasks.

What is checked: the file in the container holds the value with the reference's uid,
gid and mode; no key anywhere under the prefix holds the plain value (what etcdctl
with admin credentials would show); node b's credentials are refused both the
Secret and node a's copy; a secret in use cannot be removed (the error names the
service) and can once no service uses it, its copies then gone; a rotation (Swarm's
recipe) under a steady stream of requests through node b's mesh loses none.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubeless import store
from lab.waiting import until
from tests.support.docker_plane import (Plane, endpoint_count, get, published,
                                        running_plane)
from tests.support.etcd_server import EtcdCluster
from tests.support.workloads import FAST_HEALTHCHECK

pytestmark = pytest.mark.integration

# Serves the secret's value: what a rotation must change without a failed request.
SERVE_TOKEN = ["sh", "-c", "trap 'exit 0' TERM; cat /run/secrets/token > /www/index.html; "
                           "httpd -f -p 80 -h /www & wait"]


@pytest.fixture(scope="module")
def plane(etcd_cluster: EtcdCluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Plane]:
    with running_plane(etcd_cluster, "secrets", tmp_path_factory.mktemp("secrets-docker")) as p:
        yield p


async def container_of(plane: Plane, service: str) -> Any:
    found = await asyncio.to_thread(plane.engine.containers.list, filters={
        "label": [f"kubeless.service.name={service}", f"kubeless.node.id={plane.nodes[0]}"]})
    return found[0] if found else None


async def run_in(container: Any, *cmd: str) -> str:
    out = await asyncio.to_thread(container.exec_run, list(cmd))
    assert out.exit_code == 0, out.output.decode()
    return str(out.output.decode())


def etcdctl_dump(plane: Plane) -> bytes:
    """Every key and value under the plane's prefix, as etcdctl shows them to an admin."""
    out = subprocess.run(["etcdctl", *plane.etcd.client_flags(), "get", "--prefix",
                          f"{plane.prefix}/"], capture_output=True, timeout=30, check=True)
    return out.stdout


async def copy_exists(rs: store.ResourceStore, node: str, name: str) -> bool:
    kv, _ = await rs.etcd.get(rs.keys.copy(node, "Secret", "default", name))
    return kv is not None


async def gone(rs: store.ResourceStore, node: str, name: str) -> bool:
    return not await copy_exists(rs, node, name)


async def test_a_secret_reaches_only_its_tasks_container_with_its_owner_and_mode(
        plane: Plane, rs: store.ResourceStore) -> None:
    value = f"s3cret-{uuid.uuid4().hex}"
    plane.cli("secret", "create", "dbpass", "-", stdin=value)
    plane.cli("config", "create", "webconf", "-", stdin="listen 80\n")
    plane.apply("vault", 1, template={
        "secrets": [{"source": "dbpass", "uid": "1000", "gid": "1001", "mode": 0o400}],
        "configs": [{"source": "webconf", "target": "/etc/web.conf"}]}, ports=[])
    container = await until(lambda: container_of(plane, "vault"), 60, "vault runs on node a")
    assert await run_in(container, "cat", "/run/secrets/dbpass") == value
    assert (await run_in(container, "stat", "-c", "%u %g %a", "/run/secrets/dbpass")).split() \
        == ["1000", "1001", "400"]
    assert await run_in(container, "cat", "/etc/web.conf") == "listen 80\n"
    assert (await run_in(container, "stat", "-c", "%u %g %a", "/etc/web.conf")).split() \
        == ["0", "0", "444"]

    # etcd, read with admin credentials: the Secret, node a's copy, the task: never the value
    plain, encoded = value.encode(), base64.b64encode(value.encode())
    assert await copy_exists(rs, plane.nodes[0], "dbpass")
    dump = await asyncio.to_thread(etcdctl_dump, plane)
    assert b"/spec/secrets/default/dbpass" in dump and b"/secrets/default/dbpass" in dump
    assert plain not in dump and encoded not in dump
    listed = plane.cli("secret", "inspect", "dbpass") + plane.cli("describe", "secret", "dbpass") \
        + plane.cli("get", "secret", "dbpass", "-o", "yaml") + plane.cli("service", "inspect",
                                                                         "vault")
    assert value not in listed and encoded.decode() not in listed

    # node b runs none of vault's tasks: etcd refuses its credentials the Secret and a's copy
    as_b = plane.etcd.connect(plane.prefix, f"node:{plane.nodes[1]}")
    try:
        for key in (rs.keys.copy(plane.nodes[0], "Secret", "default", "dbpass"),
                    rs.keys.spec("Secret", "dbpass", "default")):
            with pytest.raises(store.Forbidden):
                await as_b.etcd.get(key)
    finally:
        await as_b.etcd.close()

    # in use: refused, naming the service; once vault is gone: removed, copies with it
    refused = plane.run_cli("secret", "rm", "dbpass")
    assert refused.returncode != 0 and "vault" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    plane.cli("service", "rm", "vault")
    await until(lambda: gone(rs, plane.nodes[0], "dbpass"), 30, "node a's copy deleted")
    plane.cli("secret", "rm", "dbpass")
    plane.cli("config", "rm", "webconf")
    assert "dbpass" not in plane.cli("secret", "ls")


async def test_a_rotation_under_load_loses_no_request(plane: Plane,
                                                      rs: store.ResourceStore) -> None:
    old, new = f"one-{uuid.uuid4().hex[:8]}", f"two-{uuid.uuid4().hex[:8]}"
    plane.cli("secret", "create", "token", "-", stdin=old)
    plane.cli("secret", "create", "token.v2", "-", stdin=new)
    update = {"parallelism": 1, "delay": "0s", "order": "start-first", "monitor": "1s",
              "failureAction": "pause"}
    plane.apply("rot", 2, template={"command": SERVE_TOKEN, "healthcheck": FAST_HEALTHCHECK,
                                    "secrets": [{"source": "token"}]}, update=update)
    port = await published(rs, "rot")
    await until(lambda: endpoint_count(rs, "rot", 2), 90, "2 endpoints")
    stop = asyncio.Event()
    results: list[str | None] = []

    async def load() -> None:
        while not stop.is_set():
            results.append(await get(plane.b, port))

    loaders = [asyncio.create_task(load()) for _ in range(3)]
    try:
        await until(lambda: len(results) > 30, 30, "load flows")
        plane.cli("service", "update", "-d", "rot", "--secret-rm", "token",
                  "--secret-add", "source=token.v2,target=token")
        await until(lambda: sum(1 for r in results[-30:] if r == new) == 30, 120,
                    "only the new value answers")
    finally:
        stop.set()
        await asyncio.gather(*loaders)
    failed = sum(1 for r in results if r is None)
    assert {r for r in results if r} == {old, new}
    assert failed == 0, f"{failed} of {len(results)} requests failed"
    print(f"rotation: {len(results)} requests through the mesh, {failed} failed")
    # the old secret is no longer used: removable, and node a's copy of it goes
    await until(lambda: gone(rs, plane.nodes[0], "token"), 30, "the old copy deleted")
    plane.cli("secret", "rm", "token")
    plane.cli("service", "rm", "rot")
    await until(lambda: gone(rs, plane.nodes[0], "token.v2"), 30, "the new copy deleted")
    plane.cli("secret", "rm", "token.v2")
