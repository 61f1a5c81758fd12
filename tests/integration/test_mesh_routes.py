"""Routes on the userspace mesh with real sockets: a mesh on 127.0.0.2 fed by a real
etcd informer, backends as local servers on 127.0.0.4, Route documents written into etcd
by hand as the endpoints controller writes them. Every wait has a deadline."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubeless import store
from kubeless.store import Put
from kubeless.store.codec import decode, encode_json
from kubeless.store.informer import Informer
from kubeless_agent.mesh import RoutingMesh
from lab.waiting import until
from tests.integration.test_mesh import BACKENDS, MESH_A, Backend, free_port, hello, sample

pytestmark = pytest.mark.integration

CLIENT = "127.0.0.5"  # where test clients connect from, to tell the client's address


def route_doc(port: int, groups: dict[str, tuple[int, list[Backend]]], *,
              name: str = "shop", protocol: str = "tcp", proxy: str = "") -> dict[str, Any]:
    return {"kind": "Route", "namespace": "default", "route": name, "routeUid": "uid-" + name,
            "port": port, "protocol": protocol, "externalTrafficPolicy": "Cluster",
            "proxyProtocol": proxy,
            "backends": [{"service": service, "port": 80, "weight": weight,
                          "endpoints": [{"task": f"task-{b.name}", "node": "n4",
                                         "address": BACKENDS, "hostPort": b.port}
                                        for b in backends]}
                         for service, (weight, backends) in groups.items()]}


async def put_route(rs: store.ResourceStore, doc: dict[str, Any]) -> None:
    await rs.etcd.txn([], [Put(rs.keys.route_endpoints(doc["namespace"], doc["route"]),
                               encode_json(doc))])


@pytest.fixture
async def mesh(rstore: store.ResourceStore) -> AsyncIterator[RoutingMesh]:
    """One userspace mesh on MESH_A, fed by an informer on the prefix's endpoints/. Its
    draws are seeded: a split within 3 points of 90/10 over 1,000 connections is a 3-sigma
    bound, so with real randomness one run in several hundred would fail by chance."""
    routing = RoutingMesh(MESH_A, node="n4", retry_interval=0.2, draw=random.Random(17).random)
    informer = Informer(rstore.etcd, rstore.keys.root + "endpoints/",
                        lambda kv: decode(kv.key, kv.value))
    informer.add_handler(routing.on_endpoints)
    tasks = [asyncio.create_task(informer.run()), asyncio.create_task(routing.run())]
    try:
        yield routing
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def servers() -> AsyncIterator[list[Backend]]:
    started = [await Backend(name).start() for name in ("a1", "a2", "b1", "b2")]
    yield started
    for b in started:
        await b.stop()


async def connections(port: int, n: int, parallel: int = 16) -> Counter[str | None]:
    """``n`` connections to the mesh, ``parallel`` at a time: which backend answered each."""
    seen: Counter[str | None] = Counter()
    left = iter(range(n))

    async def worker() -> None:
        for _ in left:
            seen[await hello(MESH_A, port)] += 1

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return seen


def group_of(name: str | None) -> str | None:
    return name[0] if name else None  # "a1" -> "a"


async def test_a_route_splits_connections_by_weight(
        rstore: store.ResourceStore, mesh: RoutingMesh, servers: list[Backend]) -> None:
    port = free_port(MESH_A)
    a1, a2, b1, b2 = servers
    await put_route(rstore, route_doc(port, {"shop-a": (90, [a1, a2]), "shop-b": (10, [b1, b2])}))
    await until(lambda: _answers(port), 10, "the route answers")
    seen = await connections(port, 1000)
    groups = Counter({group_of(k): 0 for k in seen})
    for name, count in seen.items():
        groups[group_of(name)] += count
    assert groups[None] == 0, seen
    assert abs(groups["a"] / 1000 - 0.9) <= 0.03, seen
    # round robin inside each group: its backends share its connections evenly
    assert abs(seen["a1"] - seen["a2"]) <= 2 and abs(seen["b1"] - seen["b2"]) <= 2, seen
    # per endpoint, labelled with the route and the backend service
    forwarded = sample("kubeless_agent_mesh_backend_connections_total",
                       owner="route default/shop", port="shop", backend="default/shop-b",
                       endpoint=f"{BACKENDS}:{b1.port}")
    assert forwarded >= seen["b1"] > 0
    assert sample("kubeless_agent_mesh_connections_accepted_total", service="default/shop",
                  port="shop") >= 1000


async def _answers(port: int) -> bool:
    return await hello(MESH_A, port) is not None


async def test_a_new_weight_applies_under_load_without_a_failed_connection(
        rstore: store.ResourceStore, mesh: RoutingMesh, servers: list[Backend]) -> None:
    port = free_port(MESH_A)
    a1, _, b1, _ = servers
    await put_route(rstore, route_doc(port, {"shop-a": (100, [a1]), "shop-b": (0, [b1])}))
    await until(lambda: _answers(port), 10, "the route answers")
    listener = mesh.servers[port]
    answers: list[str | None] = []
    stop = asyncio.Event()

    async def stream() -> None:
        while not stop.is_set():
            answers.append(await hello(MESH_A, port))

    streams = [asyncio.create_task(stream()) for _ in range(8)]
    try:
        await until(lambda: len(answers) >= 200, 20, "a stream of connections")
        await put_route(rstore, route_doc(port, {"shop-a": (0, [a1]), "shop-b": (100, [b1])}))
        shifted = len(answers)
        await until(lambda: answers[-50:].count("b1") == 50 and len(answers) > shifted + 200,
                    20, "new connections go to shop-b")
    finally:
        stop.set()
        await asyncio.gather(*streams)
    assert None not in answers, Counter(answers)
    assert set(answers) == {"a1", "b1"}
    assert mesh.servers[port] is listener  # the listener stayed open throughout


async def test_a_group_whose_backends_refuse_sends_its_share_to_the_others(
        rstore: store.ResourceStore, mesh: RoutingMesh, servers: list[Backend]) -> None:
    port = free_port(MESH_A)
    dead = Backend("dead")
    dead.port = free_port(BACKENDS)  # nothing listens there: refused
    await put_route(rstore, route_doc(port, {"shop-a": (90, [dead]), "shop-b": (10, servers[2:3])}))
    await until(lambda: _answers(port), 10, "the route answers")
    seen = await connections(port, 100)
    assert seen == Counter({"b1": 100}), seen


class ProxyProtocolBackend:
    """Reads what the mesh sends first (the PROXY line) and answers with it, then echoes."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> ProxyProtocolBackend:
        self.server = await asyncio.start_server(self._serve, BACKENDS, 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await reader.readline())
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def test_a_proxy_protocol_port_tells_the_backend_the_clients_address(
        rstore: store.ResourceStore, mesh: RoutingMesh) -> None:
    backend = await ProxyProtocolBackend().start()
    assert backend.server is not None
    port = free_port(MESH_A)
    doc = route_doc(port, {"shop-a": (1, [Backend("pp")])}, proxy="v1")
    doc["backends"][0]["endpoints"][0]["hostPort"] = backend.port
    try:
        await put_route(rstore, doc)
        await until(lambda: port in mesh.servers, 10, "the route listens")
        reader, writer = await asyncio.open_connection(MESH_A, port, local_addr=(CLIENT, 0))
        client_port = writer.get_extra_info("sockname")[1]
        line = await asyncio.wait_for(reader.readline(), 5)
        assert line == f"PROXY TCP4 {CLIENT} {MESH_A} {client_port} {port}\r\n".encode()
        writer.write(b"then the client's bytes\n")  # after the header, untouched
        assert await asyncio.wait_for(reader.readline(), 5) == b"then the client's bytes\n"
        writer.close()
    finally:
        backend.server.close()
        await backend.server.wait_closed()


async def test_a_udp_route_is_refused_with_a_log_line_and_the_others_served(
        rstore: store.ResourceStore, mesh: RoutingMesh, servers: list[Backend],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "kubeless_agent.mesh.mesh")
    udp, tcp = free_port(MESH_A), free_port(MESH_A)
    await put_route(rstore, route_doc(udp, {"dns": (1, servers[:1])}, name="resolver",
                                      protocol="udp"))
    await put_route(rstore, route_doc(tcp, {"shop-a": (1, servers[:1])}))
    await until(lambda: _answers(tcp), 10, "the tcp route answers")
    assert udp in mesh.refused and udp not in mesh.servers
    assert f"UDP port {udp} of route default/resolver needs the kernel path " \
           "(--mesh-mode kernel)" in caplog.messages
    assert sample("kubeless_agent_mesh_refused_ports") == 1
    assert await hello(MESH_A, tcp) == "a1"
