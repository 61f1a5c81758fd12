"""`kubeless exec` into containers: the docker plane (controllers and two docker agents, TLS
and etcd auth on), node a's agent serving logs and exec over TLS with a server certificate
for its address. The CLI runs as the tests' ``admin:`` identity; node b's certificate,
presented straight to node a's agent, is refused (403)."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeless import store
from kubeless.cluster import pki
from lab.waiting import until
from tests.support.docker_plane import Plane, running_plane
from tests.support.etcd_server import EtcdCluster
from tests.support.logs_probe import exchange

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plane(etcd_cluster: EtcdCluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Plane]:
    logs = tmp_path_factory.mktemp("exec-docker")
    assert etcd_cluster.ca is not None
    ca = etcd_cluster.ca

    def serve_tls(node: str, addr: str, index: int) -> list[str]:
        served = pki.issue_identity(ca, logs / f"server-{node}",
                                    pki.Profile(f"node:{node}", (addr,), pki.USAGES))
        return ["--dns-addr", "none", "--server-cert", str(served / "cert.pem"),
                "--server-key", str(served / "key.pem"), "--client-ca", str(served / "ca.pem")]

    with running_plane(etcd_cluster, "exec", logs, serve_tls) as p:
        yield p


async def running_task(rs: store.ResourceStore, plane: Plane, name: str) -> dict[str, Any]:
    await asyncio.to_thread(plane.apply, name, 1)

    async def up() -> dict[str, Any] | None:
        from kubeless.store.tasks import list_tasks

        found = [t for t in (await list_tasks(rs, "default", name)).items
                 if t["status"].get("state") == "running"]
        return found[0] if found else None
    found: dict[str, Any] = await until(up, 60, f"{name}.1 running")
    return found


async def test_exec_in_a_container(plane: Plane, rs: store.ResourceStore) -> None:
    t = await running_task(rs, plane, "web")
    res = await asyncio.to_thread(plane.run_cli, "exec", "web.1", "--", "sh", "-c",
                                  "echo out; echo err >&2; exit 3")
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")

    res = await asyncio.to_thread(plane.run_cli, "exec", "-i", t["metadata"]["name"][:10],
                                  "cat", stdin="piped\nthrough\n")
    assert (res.returncode, res.stdout) == (0, "piped\nthrough\n"), res.stderr

    res = await asyncio.to_thread(plane.run_cli, "exec", "web.1", "--", "sh", "-c",
                                  'echo "$VERSION $KUBELESS_TASK_NAME"')
    assert res.stdout == "1 web.1\n", res.stderr  # the container's env, as docker exec

    res = await asyncio.to_thread(plane.run_cli, "exec", "-t", "web.1", "--", "sh", "-c",
                                  "test -t 1 && echo tty")
    assert (res.returncode, res.stdout) == (0, "tty\n"), res.stderr  # (text mode reads its \r\n as \n)

    res = await asyncio.to_thread(plane.run_cli, "exec", "web.1", "no-such-command")
    assert res.returncode == 127, (res.stdout, res.stderr)
    assert "executable file not found" in res.stderr and res.stdout == ""


async def test_a_node_identity_may_not_exec(plane: Plane, rs: store.ResourceStore,
                                            tmp_path: Path) -> None:
    t = await running_task(rs, plane, "guarded")
    kv, _ = await rs.etcd.get(rs.keys.heartbeat(plane.nodes[0]))
    assert kv is not None
    beat = json.loads(kv.value)
    assert beat["logsTLS"] is True
    node_b = plane.etcd.client_identity(f"node:{plane.nodes[1]}", plane.prefix)
    assert node_b is not None
    context = ssl.create_default_context(cafile=str(node_b / "ca.pem"))
    context.load_cert_chain(str(node_b / "cert.pem"), str(node_b / "key.pem"))
    body = json.dumps({"command": ["id"]}).encode()
    request = (f"POST /exec/{t['metadata']['name']} HTTP/1.1\r\nHost: {plane.a}\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    got = await asyncio.to_thread(exchange, beat["address"], beat["logsPort"], context,
                                  request)
    assert got.startswith(b"HTTP/1.1 403 "), got
    assert f"exec needs an admin identity; node:{plane.nodes[1]} may not".encode() in got
