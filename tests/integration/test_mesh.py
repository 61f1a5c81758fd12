"""The routing mesh with real sockets: agents on 127.0.0.2 and 127.0.0.3, real etcd.

Backends are plain asyncio servers on 127.0.0.4 that answer with their own
name; endpoints documents are written into etcd by hand, as the endpoints
controller writes them. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import REGISTRY

from kubeless import store
from kubeless.store import Delete, Put
from kubeless.store.codec import encode_json
from kubeless.store.codec import decode
from kubeless.store.informer import Informer
from kubeless_agent import running_agent
from kubeless_agent.main import AgentProcess
from kubeless_agent.mesh import RoutingMesh
from lab.waiting import until
from tests.support.agents import agent_on
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration

MESH_A, MESH_B, BACKENDS = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def free_port(*hosts: str) -> int:
    """A port free on every host given (bound once on each, then released)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = int(s.getsockname()[1])
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


class Backend:
    """An asyncio TCP server answering every connection with ``name``, then echoing."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server: asyncio.Server | None = None
        self.port = 0
        self.served = 0

    async def start(self, port: int = 0) -> Backend:
        self.server = await asyncio.start_server(self._serve, BACKENDS, port)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.served += 1
        writer.write(self.name.encode() + b"\n")
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def endpoints_doc(service: str, published: int, backends: list[Backend], *,
                  ns: str = "default", target: int = 80) -> dict[str, Any]:
    return {"namespace": ns, "service": service, "serviceUid": "uid-" + service,
            "ports": [{"name": "http", "target": target, "published": published,
                       "protocol": "tcp", "mode": "ingress"}],
            "endpoints": [{"task": f"task{b.name}", "slot": i + 1, "node": "n4",
                           "address": BACKENDS,
                           "ports": [{"target": target, "published": b.port, "protocol": "tcp"}]}
                          for i, b in enumerate(backends)]}


async def put_doc(rs: store.ResourceStore, doc: dict[str, Any]) -> None:
    await rs.etcd.txn([], [Put(rs.keys.endpoints(doc["namespace"], doc["service"]),
                               encode_json(doc))])


async def delete_doc(rs: store.ResourceStore, ns: str, service: str) -> None:
    await rs.etcd.txn([], [Delete(rs.keys.endpoints(ns, service))])


async def hello(host: str, port: int, payload: bytes = b"") -> str | None:
    """Connect, read the backend's name (None: closed or refused unanswered)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except OSError:
        return None
    try:
        line = await asyncio.wait_for(reader.readline(), 5)
        if payload:
            writer.write(payload)
            writer.write_eof()
            echoed = await asyncio.wait_for(reader.read(), 10)
            assert echoed == payload
        return line.decode().strip() or None
    except ConnectionError:
        return None
    finally:
        writer.close()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def two_meshes(etcd: EtcdCluster, prefix: str) -> AsyncIterator[list[AgentProcess]]:
    configs = [agent_on(etcd, prefix, f"mesh-{i}", advertise_addr=addr, heartbeat_ttl=3,
                        dns_addrs=(), logs_port=None)
               for i, addr in enumerate((MESH_A, MESH_B))]
    async with running_agent(configs[0]) as a, running_agent(configs[1]) as b:
        yield [a, b]


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    started = [await Backend(name).start() for name in ("one", "two", "three")]
    yield started
    for b in started:
        await b.stop()


async def test_a_published_port_answers_on_every_mesh_round_robin(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore,
        backends: list[Backend]) -> None:
    port = free_port(MESH_A, MESH_B)
    await put_doc(rstore, endpoints_doc("web", port, backends))
    async with two_meshes(etcd_cluster, prefix):
        for host in (MESH_A, MESH_B):
            await until(lambda: _answers(host, port), 10, f"{host}:{port} answers")
            seen = [await hello(host, port) for _ in range(6)]
            assert sorted(seen) == ["one", "one", "three", "three", "two", "two"], seen
        # bytes go both ways intact, half-close included (a 4 MiB echo)
        blob = bytes(range(256)) * 16384
        assert await hello(MESH_B, port, blob) in ("one", "two", "three")
        assert sample("kubeless_agent_mesh_forwarded_bytes_total", service="default/web",
                      port="http", direction="upstream") >= len(blob)
        assert sample("kubeless_agent_mesh_connections_accepted_total", service="default/web",
                      port="http") >= 13


async def _answers(host: str, port: int) -> bool:
    return await hello(host, port) is not None


async def test_refusing_endpoints_are_skipped_and_none_closes_the_client(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore,
        backends: list[Backend]) -> None:
    port = free_port(MESH_A, MESH_B)
    dead = Backend("dead")
    dead.port = free_port(BACKENDS)  # nothing listens there: refused
    await put_doc(rstore, endpoints_doc("web", port, [dead, backends[0], dead, backends[1]]))
    async with two_meshes(etcd_cluster, prefix):
        await until(lambda: _answers(MESH_A, port), 10, "mesh answers")
        failed = sample("kubeless_agent_mesh_connections_failed_total", service="default/web",
                        port="http")
        seen = [await hello(MESH_A, port) for _ in range(8)]
        assert None not in seen and set(seen) == {"one", "two"}, seen
        assert sample("kubeless_agent_mesh_backend_connect_failures_total",
                      service="default/web", port="http") >= 1
        await put_doc(rstore, endpoints_doc("web", port, [dead]))
        await until(lambda: _closed(MESH_A, port), 10, "no endpoint: the client is closed")
        assert sample("kubeless_agent_mesh_connections_failed_total", service="default/web",
                      port="http") > failed


async def _closed(host: str, port: int) -> bool:
    return await hello(host, port) is None


async def test_listeners_follow_documents(etcd_cluster: EtcdCluster, prefix: str,
                                          rstore: store.ResourceStore,
                                          backends: list[Backend]) -> None:
    one, two = free_port(MESH_A, MESH_B), free_port(MESH_A, MESH_B)
    await put_doc(rstore, endpoints_doc("web", one, backends[:1]))
    async with two_meshes(etcd_cluster, prefix) as meshes:
        await until(lambda: _is(MESH_B, one, "one"), 10, "web on its port")
        # new endpoints: the same listener routes to them from the next connection on
        await put_doc(rstore, endpoints_doc("web", one, backends[1:2]))
        for host in (MESH_A, MESH_B):
            await until(lambda: _is(host, one, "two"), 10, f"new endpoints on {host}")
        # an open connection survives a move; the port moves
        reader, writer = await asyncio.open_connection(MESH_A, one)
        assert (await reader.readline()).strip() == b"two"
        await put_doc(rstore, endpoints_doc("web", two, backends[2:]))
        await until(lambda: _is(MESH_A, two, "three"), 10, "moved to the new port")
        await until(lambda: _refused(MESH_A, one), 10, "old port closed")
        writer.write(b"still here\n")
        assert await reader.readline() == b"still here\n"
        writer.close()
        # deleted: closed on every mesh
        await delete_doc(rstore, "default", "web")
        for host in (MESH_A, MESH_B):
            await until(lambda: _refused(host, two), 10, f"{host} closed")
        assert all(not m.mesh.servers for m in meshes if m.mesh is not None)


async def _is(host: str, port: int, name: str) -> bool:
    return await hello(host, port) == name


async def _refused(host: str, port: int) -> bool:
    """Whether nothing listens there any more. A connection reset means the listener was
    closing as we connected (our SYN sat in its backlog): not known yet, ask again."""
    try:
        _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False
    writer.close()
    return False


@pytest.fixture
def squatter() -> Iterator[tuple[socket.socket, int]]:
    s = socket.socket()
    s.bind((MESH_A, 0))
    s.listen()
    yield s, int(s.getsockname()[1])
    s.close()


async def test_a_port_in_use_is_reported_and_taken_once_free(
        etcd_cluster: EtcdCluster, rstore: store.ResourceStore, prefix: str,
        backends: list[Backend], squatter: tuple[socket.socket, int]) -> None:
    sock, port = squatter
    mesh = RoutingMesh(MESH_A, retry_interval=0.2)
    informer = Informer(rstore.etcd, rstore.keys.root + "endpoints/",
                        lambda kv: decode(kv.key, kv.value))
    informer.add_handler(mesh.on_endpoints)
    await put_doc(rstore, endpoints_doc("web", port, backends[:1]))
    tasks = [asyncio.create_task(informer.run()), asyncio.create_task(mesh.run())]
    try:
        await until(lambda: port in mesh.unbound, 10, "the port is reported unbound")
        assert sample("kubeless_agent_mesh_unbound_ports") >= 1
        assert sample("kubeless_agent_mesh_bind_failures_total", service="default/web",
                      port="http") >= 1
        sock.close()
        await until(lambda: _is(MESH_A, port, "one"), 10, "taken once free")
        assert port not in mesh.unbound
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert not mesh.servers


async def test_mesh_and_dns_metrics_pass_promtool(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore,
        backends: list[Backend]) -> None:
    import os
    import shutil
    import subprocess

    from prometheus_client import generate_latest

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (make deps installs Debian's prometheus)")
        pytest.skip("promtool not installed")
    port = free_port(MESH_A, MESH_B)
    await put_doc(rstore, endpoints_doc("metered", port, backends[:1]))
    async with two_meshes(etcd_cluster, prefix):
        await until(lambda: _answers(MESH_B, port), 10, "mesh answers")
        text = generate_latest(REGISTRY)
    res = await asyncio.to_thread(subprocess.run, [promtool, "check", "metrics"], input=text,
                                  capture_output=True, timeout=30)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    assert b'kubeless_agent_mesh_connections_accepted_total{port="http",service="default/metered"}' \
        in text
