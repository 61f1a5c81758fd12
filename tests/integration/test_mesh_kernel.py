"""The kernel path for real: nftables in network namespaces this test makes.

    netns <p>-hub     bridge br0 (the switch)
    netns <p>-client  10.213.X.1   runs tests/support/netns_client.py
    netns <p>-node    10.213.X.2   the node: its KernelMesh's table (nsenter), a local
                                   endpoint (busybox httpd, CGI answering "here
                                   $REMOTE_ADDR"), ip_forward on
    netns <p>-other   10.213.X.3   another node: a remote endpoint ("there
                                   $REMOTE_ADDR") and a UDP echo server

The mesh is fed endpoints documents as the endpoints controller writes them
(the informer's side is the userspace mesh's tests' business); every process is
ended by its pid, every namespace deleted, which takes its tables and rules along.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from kubeless import store
from kubeless_agent import running_agent
from kubeless_agent.mesh import RoutingMesh
from kubeless_agent.mesh.kernel import KernelMesh
from kubeless_agent.mesh.kernel_host import NftHost
from lab.waiting import until, wait_until
from tests.support.agents import agent_on
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SCRIPT = ROOT / "tests" / "support" / "netns_client.py"
HTTP_HERE, HTTP_THERE, UDP_THERE, PUBLISHED = 18080, 18081, 15353, 8080
NODE_ID = "kernel-node"
CGI = '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\necho "{name} $REMOTE_ADDR"\n'


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@dataclass
class Lan:
    prefix: str
    subnet: str
    procs: list[subprocess.Popen[bytes]]

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def addr(self, host: int) -> str:
        return f"{self.subnet}.{host}"

    @property
    def client(self) -> str:
        return self.addr(1)

    @property
    def node(self) -> str:
        return self.addr(2)

    @property
    def other(self) -> str:
        return self.addr(3)

    def in_ns(self, name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns(name), *cmd], check=check,
                              capture_output=True, text=True, timeout=120)

    def host(self) -> NftHost:
        return NftHost(("nsenter", f"--net=/var/run/netns/{self.ns('node')}"))

    def start(self, name: str, *cmd: str) -> None:
        self.procs.append(subprocess.Popen(["ip", "netns", "exec", self.ns(name), *cmd],
                                           stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))

    def client_run(self, where: str, *args: str) -> dict[str, list[str]]:
        done = self.in_ns(where, sys.executable, str(CLIENT_SCRIPT), *args)
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def http(self, count: int, where: str = "client", host: str | None = None,
             port: int = PUBLISHED) -> dict[str, list[str]]:
        return self.client_run(where, "http", host or self.node, str(port), str(count))

    def table(self) -> str:
        return self.in_ns("node", "nft", "list", "tables").stdout

    def docker_user(self) -> str:
        return self.in_ns("node", "iptables", "-S", "DOCKER-USER").stdout


def _can_run() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    for tool in ("nft", "ip", "nsenter", "busybox", "iptables"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    why = _can_run()
    if why:
        if os.environ.get("CI") == "true":  # CI installs nftables: a missing one is a failure
            pytest.fail(f"the kernel mesh cannot be tested here: {why}")
        pytest.skip(why)
    pid = os.getpid()
    lan = Lan(f"kk{pid}", f"10.213.{pid % 250}", [])
    made: list[str] = []
    www = Path(tempfile.mkdtemp(prefix="kubeless-kernel-"))
    try:
        for name in ("hub", "client", "node", "other"):
            sh("ip", "netns", "add", lan.ns(name))
            made.append(lan.ns(name))
            sh("ip", "-n", lan.ns(name), "link", "set", "lo", "up")
        sh("ip", "-n", lan.ns("hub"), "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", lan.ns("hub"), "link", "set", "br0", "up")
        for i, name in enumerate(("client", "node", "other"), start=1):
            port = f"p{i}"
            sh("ip", "link", "add", port, "netns", lan.ns("hub"), "type", "veth", "peer",
               "name", "eth0", "netns", lan.ns(name))
            sh("ip", "-n", lan.ns("hub"), "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", lan.ns(name), "addr", "add", f"{lan.addr(i)}/24", "dev", "eth0")
            sh("ip", "-n", lan.ns(name), "link", "set", "eth0", "up")
        lan.in_ns("node", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        for name, where, addr, port in (("here", "node", lan.node, HTTP_HERE),
                                        ("there", "other", lan.other, HTTP_THERE)):
            cgi = www / name / "cgi-bin"
            cgi.mkdir(parents=True)
            (cgi / "who").write_text(CGI.format(name=name))
            (cgi / "who").chmod(0o755)
            lan.start(where, "busybox", "httpd", "-f", "-p", f"{addr}:{port}",
                      "-h", str(www / name))
        lan.start("other", sys.executable, str(CLIENT_SCRIPT), "udp-echo", lan.other,
                  str(UDP_THERE), "there")
        for host, port in ((lan.node, HTTP_HERE), (lan.other, HTTP_THERE)):
            wait_until(lambda: not lan.http(1, host=host, port=port)["failures"],
                       timeout=20, what=f"backend {host}:{port}")
        yield lan
    finally:
        for proc in lan.procs:
            proc.kill()
            proc.wait()
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "delete", ns], check=False)
        shutil.rmtree(www, ignore_errors=True)


def route_doc(lan: Lan, weights: tuple[int, int], *, port: int = PUBLISHED,
              protocol: str = "tcp", local_only: bool = False,
              backends: tuple[bool, bool] = (True, True)) -> dict[str, Any]:
    """A Route document: shop-a's one endpoint on the node, shop-b's on the other."""
    here = [{"task": "a1", "node": NODE_ID, "address": lan.node, "hostPort": HTTP_HERE}]
    there = [{"task": "b1", "node": "other", "address": lan.other,
              "hostPort": UDP_THERE if protocol == "udp" else HTTP_THERE}]
    return {"kind": "Route", "namespace": "default", "route": f"shop-{protocol}-{port}",
            "routeUid": "u", "port": port, "protocol": protocol,
            "externalTrafficPolicy": "Local" if local_only else "Cluster",
            "proxyProtocol": "",
            "backends": [{"service": "shop-a", "port": 80, "weight": weights[0],
                          "endpoints": here if backends[0] else []},
                         {"service": "shop-b", "port": 80, "weight": weights[1],
                          "endpoints": there if backends[1] else []}]}


@asynccontextmanager
async def kernel_mesh(lan: Lan, *docs: dict[str, Any], remove: bool = True
                      ) -> AsyncIterator[KernelMesh]:
    mesh = KernelMesh(NODE_ID, [lan.node], host=lan.host(), retry_interval=0.5)
    for i, doc in enumerate(docs):
        mesh.on_endpoints(f"endpoints/_routes/default/r{i}", None, doc)
    runner = asyncio.create_task(mesh.run())
    try:
        await settled(mesh)
        yield mesh
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        if remove:
            await mesh.remove()


async def settled(mesh: KernelMesh) -> None:
    await until(lambda: mesh.settled.is_set(), timeout=20, what="table applied")
    assert mesh.error is None


async def test_weighted_split_keeps_the_client_address_for_local_endpoints(lan: Lan) -> None:
    async with kernel_mesh(lan, route_doc(lan, (80, 20))) as mesh:
        result = await asyncio.to_thread(lan.http, 400)
        assert result["failures"] == []
        bodies = result["bodies"]
        here = [b for b in bodies if b.startswith("here ")]
        there = [b for b in bodies if b.startswith("there ")]
        assert len(here) + len(there) == 400
        assert 0.72 <= len(here) / 400 <= 0.88, f"{len(here)} of 400 to the 80% backend"
        assert set(here) == {f"here {lan.client}"}  # no SNAT to a local endpoint
        assert set(there) == {f"there {lan.node}"}  # masqueraded to a remote one
        counts = {labels[-1]: value for labels, value in mesh.connections()}
        assert counts == {f"{lan.node}:{HTTP_HERE}": len(here),
                          f"{lan.other}:{HTTP_THERE}": len(there)}
        assert await mesh.connections_by_task() == {"a1": len(here), "b1": len(there)}


async def test_the_node_itself_reaches_the_mesh_on_loopback(lan: Lan) -> None:
    async with kernel_mesh(lan, route_doc(lan, (0, 1))):
        result = await asyncio.to_thread(lan.http, 5, "node", "127.0.0.1")
        assert result["failures"] == []
        assert set(result["bodies"]) == {f"there {lan.node}"}  # route_localnet + masquerade
        assert lan.in_ns("node", "sysctl", "-n",
                         "net.ipv4.conf.all.route_localnet").stdout.strip() == "1"


async def test_udp_echo_through_the_mesh(lan: Lan) -> None:
    doc = route_doc(lan, (0, 1), port=5353, protocol="udp")
    async with kernel_mesh(lan, doc):
        result = await asyncio.to_thread(lan.client_run, "client", "udp", lan.node, "5353", "5")
        assert result["failures"] == []
        assert set(result["bodies"]) == {f"there {lan.node}"}


async def test_local_only_and_ports_without_endpoints(lan: Lan) -> None:
    local = route_doc(lan, (1, 1), local_only=True)
    empty = route_doc(lan, (1, 1), port=8081, backends=(False, False))
    async with kernel_mesh(lan, local, empty) as mesh:
        assert mesh.applied is not None and mesh.applied.refused == ((8081, "tcp"),)
        result = await asyncio.to_thread(lan.http, 20)
        assert set(result["bodies"]) == {f"here {lan.client}"}
        refused = await asyncio.to_thread(lan.http, 1, port=8081)
        assert refused["bodies"] == [] and "refused" in refused["failures"][0]


async def test_replacing_the_table_loses_no_connection(lan: Lan) -> None:
    async with kernel_mesh(lan, route_doc(lan, (50, 50))) as mesh:
        stream = asyncio.create_task(asyncio.to_thread(
            lan.client_run, "client", "http", lan.node, str(PUBLISHED), "300", "3"))
        replaced = 0
        while not stream.done():
            weights = (90, 10) if replaced % 2 else (10, 90)
            mesh.on_endpoints("endpoints/_routes/default/r0", None, route_doc(lan, weights))
            await settled(mesh)
            replaced += 1
        result = stream.result()
        assert replaced >= 5
        assert result["failures"] == [] and len(result["bodies"]) == 300


async def test_a_graceful_stop_leaves_the_table_and_leave_removes_it(lan: Lan) -> None:
    lan.in_ns("node", "iptables", "-N", "DOCKER-USER")  # as Docker has it
    try:
        async with kernel_mesh(lan, route_doc(lan, (1, 0)), remove=False):
            pass
        assert "kubeless_kernel_node" in lan.table()
        assert lan.docker_user().count("kubeless mesh kernel-node") == 1
        result = await asyncio.to_thread(lan.http, 5)  # the agent is away; the path is not
        assert result["failures"] == [] and set(result["bodies"]) == {f"here {lan.client}"}
        async with kernel_mesh(lan, route_doc(lan, (1, 0)), remove=False):  # adoption
            assert lan.docker_user().count("kubeless mesh kernel-node") == 1
        async with kernel_mesh(lan, route_doc(lan, (1, 0)), remove=True):
            pass
        assert "kubeless_kernel_node" not in lan.table()
        assert "kubeless mesh" not in lan.docker_user()
    finally:
        lan.in_ns("node", "nft", "delete", "table", "inet", "kubeless_kernel_node", check=False)
        lan.in_ns("node", "iptables", "-F", "DOCKER-USER", check=False)
        lan.in_ns("node", "iptables", "-X", "DOCKER-USER", check=False)


async def test_the_heartbeat_says_which_path_the_agent_uses(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore) -> None:
    config = agent_on(etcd_cluster, prefix, "n1", runtime="fake", heartbeat_ttl=2,
                      advertise_addr="127.0.0.2", dns_addrs=(), mesh_mode="userspace")
    async with running_agent(config) as agent:
        assert isinstance(agent.mesh, RoutingMesh)

        async def mesh_path() -> Any:
            kv, _ = await rstore.etcd.get(rstore.keys.heartbeat("n1"))
            return kv is not None and json.loads(kv.value).get("meshPath")
        await until(lambda: _is(mesh_path(), "userspace"), 10, "meshPath in the heartbeat")
        assert REGISTRY.get_sample_value("kubeless_agent_mesh_path", {"path": "userspace"}) == 1
        assert REGISTRY.get_sample_value("kubeless_agent_mesh_path", {"path": "kernel"}) == 0


async def _is(value: Any, want: Any) -> bool:
    return bool(await value == want)
