"""A small secured cluster on this host for integration tests: real processes, real Docker.

One ``python -m controllers`` (every controller, as ``manager:<run>``) and two
``python -m kubeless_agent --runtime docker`` processes sharing the engine,
node ``<word>-<run>-a`` on ``plane.a`` and ``-b`` on ``plane.b``, two loopback
addresses of the plane's own (127.X.Y.2 and .3: another run on this host, with
ports numbered from the same 30000, never answers for this one), each as its own
``node:<id>`` identity (so etcd confines it to its own keys), on a key prefix of
their own in the tests' TLS etcd with auth on. The cluster record is written first
(``mark_cluster``), with the secrets key of a CA whose key file the controllers get
(``--ca-key``), as a manager's would. Services are applied with the CLI and pinned
to node a by a constraint, so node b runs none of their tasks and answers through
its mesh only.

Containers are removed by node label, and each node's files dir unmounted, at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeless import store
from lab.waiting import until
from tests.support.agents import agent_flags
from tests.support.etcd_server import EtcdCluster, put_raw
from tests.support.workloads import IMAGE, ROOT, docker_engine, remove_node_containers

COMMAND = ["sh", "-c", "trap 'exit 0' TERM; echo \"version $VERSION from $KUBELESS_TASK_NAME\" "
                       "> /www/index.html; httpd -f -p 80 -h /www & wait"]
# Extra agent flags for node ``node`` at ``addr``, the ``index``-th (0: a, 1: b).
AgentExtras = Callable[[str, str, int], list[str]]


@dataclass
class Plane:
    etcd: EtcdCluster
    prefix: str
    nodes: tuple[str, str]
    engine: Any
    logs: Path
    manager: str  # the controllers' identity
    ca_key: Path  # the CA key the controllers derive the cluster's secrets key from
    a: str  # node a's address
    b: str  # node b's address
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    dns_port: int = 0
    dns_bridge: str = ""  # the address on docker0 node a's DNS has to itself
    upstream: Any = None  # the resolver the agents forward outside names to

    def check(self) -> None:
        for p, name in zip(self.procs, ("controllers", "agent-a", "agent-b")):
            if p.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text()[-3000:]
                raise AssertionError(f"{name} exited with {p.returncode}:\n{tail}")

    def run_cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.etcd.client_env(), "KUBELESS_PREFIX": self.prefix,
               "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, "-m", "kubeless_cli.main", *args], cwd=ROOT,
                              capture_output=True, text=True, env=env, input=stdin, timeout=60)

    def cli(self, *args: str, stdin: str | None = None) -> str:
        res = self.run_cli(*args, stdin=stdin)
        assert res.returncode == 0, f"kubeless {' '.join(args)}: {res.stderr}"
        return res.stdout

    def service(self, name: str, replicas: int, template: dict[str, Any] | None = None,
                **spec: Any) -> dict[str, Any]:
        return {"apiVersion": "kubeless.io/v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"replicas": replicas,
                         "template": {"image": IMAGE, "command": COMMAND,
                                      "env": {"VERSION": "1"}, "stopGracePeriod": "2s",
                                      **(template or {})},
                         "placement": {"constraints": [f"node.id=={self.nodes[0]}"]},
                         "ports": [{"name": "http", "target": 80, "protocol": "tcp",
                                    "mode": "ingress"}], **spec}}

    def apply(self, name: str, replicas: int, template: dict[str, Any] | None = None,
              **spec: Any) -> None:
        self.cli("apply", "-f", "-", stdin=yaml.safe_dump(self.service(name, replicas,
                                                                       template, **spec)))


def spawn(logs: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    out = open(logs / f"{name}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def spawn_agent(p: Plane, node: str, addr: str, extras: list[str]) -> subprocess.Popen[bytes]:
    """A docker agent for ``node`` at ``addr`` on the plane (its log ``agent-<last letter>``);
    the caller keeps it in ``p.procs`` or stops it."""
    return spawn(p.logs, f"agent-{node[-1]}", "kubeless_agent", "--prefix", p.prefix,
                 *agent_flags(p.etcd, p.prefix, node, runtime="docker", advertise_addr=addr),
                 "--runtime", "docker", "--node-name", node, "--advertise-addr", addr,
                 "--heartbeat-ttl", "3", "--mesh-mode", "userspace", *extras,
                 "--log-level", "INFO")


def secured_record(etcd: EtcdCluster, prefix: str, directory: Path) -> Path:
    """A cluster record under ``prefix`` holding the secrets key of a new CA, whose key is
    saved in ``directory`` (its path returned, for ``--ca-key``)."""
    from kubeless.cluster import sealing
    from kubeless.cluster.pki import CA

    ca = CA.make(f"kubeless test {prefix}")
    ca.save(directory)
    record = {"apiVersion": "kubeless.io/v1", "kind": "Cluster", "id": prefix.strip("/"),
              "createdAt": "2026-01-01T00:00:00Z", "joinTokens": {},
              "caCertificate": ca.cert_pem,
              "secretsKey": sealing.public_text(sealing.cluster_secrets_key(ca.key))}
    put_raw(etcd, f"{prefix}/v1/cluster", yaml.safe_dump(record).encode())
    return directory / "ca.key"


@contextmanager
def running_plane(etcd: EtcdCluster, word: str, logs: Path,
                  agent_extras: AgentExtras = lambda node, addr, index: ["--dns-addr", "none"],
                  controller_extras: Sequence[str] = (),
                  ) -> Iterator[Plane]:
    """The controllers (with ``controller_extras``) and two docker agents on a prefix of
    their own, stopped (by PID) and cleaned up after (containers, files). Their meshes relay in userspace: both "nodes"
    share this host's namespace (the kernel path is tested where nodes do not)."""
    from kubeless_agent.task_files import DEFAULT_FILES_DIR, remove_node_files

    engine = docker_engine()
    run = uuid.uuid4().hex[:6]
    prefix = f"/kubeless-{word}-{run}"
    ca_key = secured_record(etcd, prefix, logs)
    net = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}"
    p = Plane(etcd, prefix, (f"{word}-{run}-a", f"{word}-{run}-b"), engine, logs,
              f"{word}-{run}", ca_key, f"{net}.2", f"{net}.3")
    common = ["--prefix", p.prefix]
    p.procs.append(spawn(logs, "controllers", "controllers", *common, "--lease-ttl", "2",
                         *etcd.client_flags(f"manager:{p.manager}"), "--ca-key", str(ca_key),
                         "--log-level", "INFO", *controller_extras))
    for index, (node, addr) in enumerate(zip(p.nodes, (p.a, p.b))):
        p.procs.append(spawn_agent(p, node, addr, agent_extras(node, addr, index)))
    try:
        yield p
    finally:
        for proc in p.procs:
            proc.terminate()
        for proc in p.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for node in p.nodes:
            remove_node_containers(engine, node)
            remove_node_files(DEFAULT_FILES_DIR, node)


async def nodes_ready(s: store.ResourceStore, plane: Plane) -> bool:
    plane.check()
    found, _ = await s.etcd.get_many([s.keys.heartbeat(n) for n in plane.nodes])
    return len(found) == 2


async def connected(plane: Plane) -> store.ResourceStore:
    """An admin's store on the plane, once both nodes are ready."""
    s = plane.etcd.connect(plane.prefix)
    await until(lambda: nodes_ready(s, plane), 30, "both nodes ready")
    return s


async def endpoints_of(s: store.ResourceStore, name: str) -> dict[str, Any] | None:
    kv, _ = await s.etcd.get(s.keys.endpoints("default", name))
    return None if kv is None else dict(json.loads(kv.value))


async def published(s: store.ResourceStore, name: str) -> int:
    doc = await until(lambda: endpoints_of(s, name), 30, f"endpoints of {name}")
    return int(doc["ports"][0]["published"])


async def endpoint_count(s: store.ResourceStore, name: str, want: int) -> bool:
    doc = await endpoints_of(s, name)
    return doc is not None and len(doc["endpoints"]) == want


async def get(host: str, port: int, timeout: float = 5.0) -> str | None:
    """One HTTP/1.0 GET on a new connection; the body, or None when it failed."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        writer.write(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return body.decode() if head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200") \
        else None
