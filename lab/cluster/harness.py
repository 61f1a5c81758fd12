"""A real multi-host kubeless cluster on one machine: ``Cluster``.

Shape (names are unique per run: ``kl<pid>`` prefixes everything):

    root namespace  --veth kl<pid>r (10.77.X.1)--+
                                                 |  bridge "br0" in netns kl<pid>-hub
    netns kl<pid>-m1 (10.77.X.10) --veth---------+  (the switch; cut = its port down)
    netns kl<pid>-m2 (10.77.X.11) --veth---------+
    ...

Every host namespace has its own dockerd (own data root, exec root, pidfile,
socket, --bip, --cgroup-parent), the test image loaded into it, and an agent
(docker runtime, --advertise-addr = its address, short heartbeat TTL). The
managers also run one etcd member each (one 3-member cluster across them) and
a ``kubeless-controllers`` process whose identity is the node name (with TLS,
given the manager's copy of the CA key, ``--ca-key``: it delivers secrets).

TLS by default (``tls=False``: plain http, for comparison): a cluster CA and
every identity are written before anything starts (``lab.cluster.tls``); etcd
serves https:// client and peer URLs and requires client certificates; each
agent presents ``node:<name>`` (its logs server then serves TLS too), each
controllers process ``manager:<name>``, and the harness's own clients
``admin:lab`` (``client_tls``), which is also what a person's CLI uses.
Once etcd answers, the harness does what ``init`` and the join endpoint do
before an agent starts (``Cluster._admit``): it turns etcd's auth on with
``root`` and every identity it issued as a user (``kubeless.cluster.access``:
managers and ``admin:lab`` hold root, each ``node:<name>`` only its own role),
registers every host's Node with its role (a node's identity may not write
``spec/``), and writes the cluster record (``tokens``: role -> join token).
With ``dashboard=True`` each manager's controllers serve the dashboard on its
address, port 8484 (``Host.dashboard_url``: reachable from this machine's root
namespace, as every host address is). Each manager then serves the join endpoint on port 2377
(``lab.cluster.join_endpoint``, the part ``join``; its agent advertises it,
``--join-port``, so ``join-token`` and renewals find it), which makes a
joining node's etcd users as ``init``'s node does. etcd keeps users and roles in its
data dir: a member killed and started again has them all. Without TLS, auth
stays off (a plain etcd has no identities); the harness still registers the
Nodes.

Why the bridge lives in a namespace of its own rather than in the root
namespace: the root namespace of a Docker host drops forwarded traffic
(FORWARD policy DROP) and br_netfilter sends bridged frames through it, so a
root bridge would need a rule in the shared firewall. In the hub namespace
the firewall is empty, and removing the namespaces removes everything.

Faults: ``kill`` (SIGKILL chosen parts), ``pause``/``resume`` (SIGSTOP/SIGCONT),
``cut``/``heal`` (the host's switch port down/up), ``start_part``/``restore``.
``KUBELESS_CLUSTER_LOGS=<dir>`` keeps every host's logs there.
``start`` and ``stop`` are synchronous and must be called from the main thread
(processes are spawned with PR_SET_PDEATHSIG); ``stop`` purges everything, and
so does an atexit hook and ``python -m lab cleanup`` (``system``).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubeless.cluster import access
from kubeless.cluster.ca import KEY_FILE
from kubeless.cluster.etcd_server import health
from kubeless.store import AlreadyExists, ResourceStore, TlsConfig
from kubeless.store.tls import CERT_PATH_ENV
from lab.cluster import system
from lab.cluster import tls as lab_tls
from lab.cluster.tls import LabTls
from lab.cluster.system import Proc, Record, SetupError, sh

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "kubeless-demo:latest"
ETCD_BIN = os.environ.get("KUBELESS_ETCD_BIN", "/usr/bin/etcd")
PARTS = ("etcd", "dockerd", "agent", "controllers", "join")  # in start order
HOST_PARTS = ("agent", "controllers", "etcd", "join")  # what ``kill(host)`` kills by default
JOIN_PORT = 2377
DASHBOARD_PORT = 8484  # each manager's controllers, on its address (``dashboard=True``)
T = TypeVar("T")


@dataclass
class Host:
    name: str  # the node id: m1, m2, m3, w1, w2
    index: int
    role: str
    address: str
    netns: str
    port: str  # its veth in the hub namespace (the switch port)
    bip: str
    dir: Path
    scheme: str = "https"  # of its etcd member's URLs
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)
    killed: set[str] = field(default_factory=set)  # parts stopped on purpose
    cut_off: bool = False

    @property
    def manager(self) -> bool:
        return self.role == "manager"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.dir}/docker.sock"

    @property
    def etcd_url(self) -> str:
        return f"{self.scheme}://{self.address}:2379"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://{self.address}:2380"

    @property
    def cgroup_parent(self) -> str:
        return f"/{self.netns}"

    @property
    def join_address(self) -> str:
        return f"{self.address}:{JOIN_PORT}"

    @property
    def dashboard_url(self) -> str:
        """Its controllers' dashboard (a manager of a ``Cluster(dashboard=True)``)."""
        return f"http://{self.address}:{DASHBOARD_PORT}/"

    def parts(self) -> tuple[str, ...]:
        """What runs on it: a manager's join endpoint only with TLS (it signs)."""
        if not self.manager:
            return ("dockerd", "agent")
        return PARTS if self.scheme == "https" else PARTS[:-1]

    def running(self, part: str) -> bool:
        p = self.procs.get(part)
        return p is not None and p.poll() is None


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, inside a running loop or not."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def preflight() -> None:
    """Raise SetupError when this machine cannot host the cluster."""
    if os.geteuid() != 0:
        raise SetupError("the test cluster needs root (network namespaces, dockerd)")
    for tool in ("ip", "nsenter", "setpriv", "dockerd", "docker", "umount"):
        if shutil.which(tool) is None:
            raise SetupError(f"{tool} is not installed (make deps installs iproute2, docker.io)")
    if not os.access(ETCD_BIN, os.X_OK):
        raise SetupError(f"{ETCD_BIN} is missing: install Debian's etcd-server")
    if not Path("/usr/bin/busybox").exists():
        raise SetupError("/usr/bin/busybox is missing: install busybox-static (the test image)")
    probe = f"kl{os.getpid()}-probe"
    try:
        sh("ip", "netns", "add", probe)
    except RuntimeError as err:
        raise SetupError(f"no network namespace support here: {err}") from None
    finally:
        sh("ip", "netns", "delete", probe, check=False)


def free_subnet(seed: int) -> ipaddress.IPv4Network:
    """A 10.77.X.0/24 no route of this machine's root namespace uses yet."""
    used = sh("ip", "-4", "route", "show")
    for k in range(256):
        x = (seed + k) % 250 + 1
        net = ipaddress.IPv4Network(f"10.77.{x}.0/24")
        if f"10.77.{x}." not in used:
            return net
    raise SetupError("no free 10.77.X.0/24 subnet")


class Cluster:
    """N hosts (managers first, then workers); see the module docstring."""

    def __init__(self, managers: int = 3, workers: int = 2, *, heartbeat_ttl: int = 3,
                 lease_ttl: int = 3, prefix: str = "/kubeless/", log_level: str = "INFO",
                 tls: bool = True, dashboard: bool = False) -> None:
        if managers < 1:
            raise ValueError("a cluster needs at least one manager (etcd, controllers)")
        self.name = f"kl{os.getpid()}"
        self.heartbeat_ttl, self.lease_ttl = heartbeat_ttl, lease_ttl
        self.prefix, self.log_level = prefix, log_level
        self.dashboard = dashboard
        self.subnet = free_subnet(os.getpid())
        self.gateway = str(self.subnet.network_address + 1)
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.hub = f"{self.name}-hub"
        self.uplink = f"{self.name}r"
        roles = ["manager"] * managers + ["worker"] * workers
        names = [f"m{i + 1}" for i in range(managers)] + [f"w{i + 1}" for i in range(workers)]
        self.hosts: dict[str, Host] = {}
        for i, (name, role) in enumerate(zip(names, roles)):
            self.hosts[name] = Host(
                name, i, role, str(self.subnet.network_address + 10 + i), f"{self.name}-{name}",
                f"p-{name}", f"10.{100 + i}.{self.subnet.network_address.packed[2]}.1/24",
                self.dir / name)
        self.record = Record(self.name, Proc.of(os.getpid(), "owner"), str(self.dir),
                             netns=[self.hub, *(h.netns for h in self.hosts.values())],
                             links=[self.uplink],
                             cgroups=[h.cgroup_parent for h in self.hosts.values()])
        self.events: list[tuple[float, str]] = []  # (monotonic time, what was done)
        self.secure = tls
        self.tls: LabTls | None = None  # made by start() when secure
        self.tokens: dict[str, str] = {}  # role -> join token (TLS: the cluster record's)
        for h in self.hosts.values():
            h.scheme = "https" if tls else "http"
        self._started = False

    # -- views ------------------------------------------------------------------

    @property
    def managers(self) -> list[Host]:
        return [h for h in self.hosts.values() if h.manager]

    @property
    def workers(self) -> list[Host]:
        return [h for h in self.hosts.values() if not h.manager]

    @property
    def endpoints(self) -> str:
        return ",".join(h.etcd_url for h in self.managers)

    @property
    def client_tls(self) -> TlsConfig | None:
        """The admin identity's files for a client of etcd (None: plain http)."""
        return self.tls.client() if self.tls is not None else None

    def docker(self, host: str | Host) -> Any:
        import docker

        h = self.hosts[host] if isinstance(host, str) else host
        return docker.DockerClient(base_url=h.docker_host, version="auto", timeout=30)

    def run(self, host: str | Host, *cmd: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` on the host (in its network namespace) to its end, output captured."""
        h = self._host(host)
        return subprocess.run(["nsenter", f"--net=/var/run/netns/{h.netns}", *cmd], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def note(self, what: str) -> None:
        self.events.append((time.monotonic(), what))

    # -- lifecycle ----------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> Cluster:
        preflight()
        system.purge_stale()
        self.record.save()
        atexit.register(self.stop)
        self._started = True
        try:
            self._network()
            if self.secure:
                self.tls = lab_tls.make(self.dir, self.hosts.values())
            for h in self.hosts.values():
                self._spawn(h, "dockerd")
            for h in self.managers:
                self._spawn(h, "etcd")
            self._wait_engines(timeout)
            self._load_image()
            self.wait_etcd(timeout)
            from lab.cluster import waits

            run_sync(waits.with_store(self, self._admit))
            for h in self.hosts.values():
                self._spawn(h, "agent")
            for h in self.managers:
                self._spawn(h, "controllers")
                if "join" in h.parts():
                    self._spawn(h, "join")
            run_sync(waits.cluster_ready(self, timeout))
            self._wait_join_endpoints(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Purge everything this run made (idempotent; atexit calls it too)."""
        if not self._started:
            return
        self._started = False
        for h in self.hosts.values():
            for p in h.procs.values():
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGCONT)
                    p.kill()
            for p in h.procs.values():
                with contextlib.suppress(Exception):
                    p.wait(5)
        keep = os.environ.get("KUBELESS_CLUSTER_LOGS")
        if keep:  # where to copy every host's logs before the purge
            for h in self.hosts.values():
                dest = Path(keep) / self.name / h.name
                dest.mkdir(parents=True, exist_ok=True)
                for log in h.dir.glob("*.log"):
                    shutil.copy(log, dest / log.name)
        system.purge(self.record)
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- building ---------------------------------------------------------------

    def _network(self) -> None:
        prefix = self.subnet.prefixlen
        sh("ip", "netns", "add", self.hub)
        hub = ("ip", "-n", self.hub)
        sh(*hub, "link", "add", "name", "br0", "type", "bridge")
        sh(*hub, "link", "set", "br0", "up")
        sh(*hub, "link", "set", "lo", "up")
        sh("ip", "link", "add", "name", self.uplink, "type", "veth", "peer", "name", "up0",
           "netns", self.hub)
        sh(*hub, "link", "set", "up0", "master", "br0", "up")
        sh("ip", "addr", "add", f"{self.gateway}/{prefix}", "dev", self.uplink)
        sh("ip", "link", "set", self.uplink, "up")
        for h in self.hosts.values():
            sh("ip", "netns", "add", h.netns)
            sh("ip", "-n", h.netns, "link", "set", "lo", "up")
            sh("ip", "-n", self.hub, "link", "add", "name", h.port, "type", "veth", "peer", "name",
               "eth0", "netns", h.netns)
            sh(*hub, "link", "set", h.port, "master", "br0", "up")
            sh("ip", "-n", h.netns, "addr", "add", f"{h.address}/{prefix}", "dev", "eth0")
            sh("ip", "-n", h.netns, "link", "set", "eth0", "up")
            h.dir.mkdir(parents=True, exist_ok=True)

    def _command(self, h: Host, part: str) -> tuple[list[str], dict[str, str] | None]:
        py_env = {k: v for k, v in os.environ.items() if k != CERT_PATH_ENV}
        py_env.update(PYTHONPATH=str(ROOT), DOCKER_HOST=h.docker_host)
        if self.tls is not None and part in ("agent", "controllers", "join"):
            py_env[CERT_PATH_ENV] = str(h.dir / (lab_tls.NODE_DIR if part == "agent"
                                                 else lab_tls.MANAGER_DIR))
        if part == "dockerd":
            return (["dockerd", "--data-root", str(h.dir / "data"),
                     "--exec-root", str(h.dir / "exec"), "--pidfile", str(h.dir / "docker.pid"),
                     "-H", h.docker_host, "--bip", h.bip, "--cgroup-parent", h.cgroup_parent,
                     "--iptables=true", "--log-level", "warn"], None)
        if part == "etcd":
            initial = ",".join(f"{m.name}={m.peer_url}" for m in self.managers)
            data = h.dir / "etcd"
            tls = self.tls.etcd.flags() if self.tls is not None else []
            return ([ETCD_BIN, "--name", h.name, "--data-dir", str(data),
                     "--listen-client-urls", h.etcd_url, "--advertise-client-urls", h.etcd_url,
                     "--listen-peer-urls", h.peer_url, "--initial-advertise-peer-urls", h.peer_url,
                     *tls,
                     "--initial-cluster", initial, "--initial-cluster-state", "new",
                     "--initial-cluster-token", self.name,
                     "--heartbeat-interval", "100", "--election-timeout", "1000",
                     "--log-level", "warn"], None)
        if part == "agent":  # a manager's says where its join endpoint listens (joinPort)
            join = ["--join-port", str(JOIN_PORT)] if "join" in h.parts() else []
            return ([sys.executable, "-m", "kubeless_agent", "--endpoints", self.endpoints,
                     "--prefix", self.prefix, "--runtime", "docker", "--node-name", h.name,
                     "--advertise-addr", h.address, "--heartbeat-ttl", str(self.heartbeat_ttl),
                     # the kernel path, in the host's own namespace: asked for by name, so
                     # a host where nftables fails says so instead of relaying in userspace
                     "--mesh-mode", "kernel",
                     # a stopping task behind the mesh waits for every host's table to drop
                     # it: here five hosts' agents and dockerds share 2 cores and one
                     # xtables lock (/run/xtables.lock), so a sync may take longer than on a
                     # host of its own; the default 2 s left one request of ~4,000 unanswered
                     "--drain-period", "4s", *join, "--log-level", self.log_level], py_env)
        if part == "controllers":  # with TLS, the manager's copy of the CA key: secrets
            ca_key = ["--ca-key", str(h.dir / KEY_FILE)] if self.tls is not None else []
            dashboard = ["--dashboard-port", str(DASHBOARD_PORT if self.dashboard else 0),
                         "--dashboard-address", h.address]
            return ([sys.executable, "-m", "controllers", "--endpoints", self.endpoints,
                     "--prefix", self.prefix, "--identity", h.name, *ca_key, *dashboard,
                     "--lease-ttl", str(self.lease_ttl), "--log-level", self.log_level], py_env)
        if part == "join":
            return ([sys.executable, "-m", "lab.cluster.join_endpoint", "--state-dir",
                     str(h.dir), "--node-name", h.name, "--address", h.address,
                     "--endpoints", self.endpoints, "--prefix", self.prefix,
                     "--port", str(JOIN_PORT)], py_env)
        raise ValueError(f"unknown part {part}")

    def _spawn(self, h: Host, part: str) -> None:
        cmd, env = self._command(h, part)
        proc = system.spawn(h.netns, cmd, h.dir / f"{part}.log", env=env, cwd=ROOT)
        h.procs[part] = proc
        h.paused.discard(part)
        h.killed.discard(part)
        self.record.procs[f"{h.name}/{part}"] = Proc.of(proc.pid, part)
        self.record.save()

    async def _admit(self, rs: ResourceStore) -> None:
        """What ``init`` and the join endpoint write before a node's agent starts: etcd's
        auth on (TLS: ``root`` and every identity the harness issued, each with its
        roles, ``kubeless.cluster.access``), every host's Node with its role (a node's
        own identity may not write ``spec/``), and the cluster record with its join
        tokens. Converges: a Node already there is left as it is."""
        if self.tls is not None:
            await access.enable_auth(rs.etcd, rs.keys, [
                who.common_name for who in lab_tls.identities(self.hosts.values())])
        for h in self.hosts.values():
            with contextlib.suppress(AlreadyExists):
                await rs.create(self.node_resource(h))
        if self.tls is not None:
            self.tokens = await lab_tls.write_record(
                rs, self.tls, self.managers[0].name, f"{self.endpoints} (the lab cluster)")

    def node_resource(self, h: Host) -> dict[str, Any]:
        """Host ``h``'s Node as its agent describes it (``node_process.node_resource``)."""
        from kubeless.cluster import NodeState
        from kubeless_cli.node_process import node_resource

        return node_resource(NodeState("", h.name, h.role, self.endpoints, self.prefix,
                                       "docker", h.address), h.role)

    def _wait_join_endpoints(self, timeout: float) -> None:
        """Until every manager's join endpoint serves the CA (TLS only)."""
        from kubeless.cluster.errors import JoinFailed
        from kubeless.cluster.join_client import fetch_ca

        deadline = time.monotonic() + timeout
        for h in self.managers:
            while "join" in h.parts():
                try:
                    fetch_ca(h.address, JOIN_PORT, h.join_address)
                    break
                except JoinFailed as err:
                    if not h.running("join") or time.monotonic() > deadline:
                        raise SetupError(f"the join endpoint of {h.name} does not answer "
                                         f"({err}): {self.tail(h, 'join')}") from None
                    time.sleep(0.1)

    def _wait_engines(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for h in self.hosts.values():
            while subprocess.run(["docker", "-H", h.docker_host, "version"], capture_output=True,
                                 timeout=10).returncode != 0:
                p = h.procs["dockerd"]
                if p.poll() is not None:
                    raise SetupError(f"dockerd of {h.name} exited: {self.tail(h, 'dockerd')}")
                if time.monotonic() > deadline:
                    raise SetupError(f"dockerd of {h.name} not up: {self.tail(h, 'dockerd')}")
                time.sleep(0.1)

    def _load_image(self) -> None:
        """Build the image in the first engine, then docker save | docker load into the rest."""
        first, *rest = self.hosts.values()
        env = {**os.environ, "DOCKER_HOST": first.docker_host}
        subprocess.run(["bash", str(ROOT / "scripts" / "build-demo-image.sh")], env=env,
                       check=True, capture_output=True, timeout=120)
        tar = self.dir / "image.tar"
        sh("docker", "-H", first.docker_host, "save", "-o", str(tar), IMAGE, timeout=120)
        loads = [subprocess.Popen(["docker", "-H", h.docker_host, "load", "-q", "-i", str(tar)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for h in rest]
        for h, p in zip(rest, loads):
            _, err = p.communicate(timeout=120)
            if p.returncode != 0:
                raise SetupError(f"docker load into {h.name}: {err.decode().strip()}")

    def wait_etcd(self, timeout: float = 30.0, members: Iterable[Host] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for h in members or self.managers:
            while not self.etcd_healthy(h):
                p = h.procs.get("etcd")
                if p is not None and p.poll() is not None:
                    raise SetupError(f"etcd of {h.name} exited: {self.tail(h, 'etcd')}")
                if time.monotonic() > deadline:
                    raise SetupError(f"etcd of {h.name} not healthy: {self.tail(h, 'etcd')}")
                time.sleep(0.1)

    def etcd_healthy(self, h: Host) -> bool:
        return health(h.etcd_url, self.tls.etcd if self.tls is not None else None)

    def tail(self, h: Host, part: str, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((h.dir / f"{part}.log").read_text().splitlines()[-lines:])
        return "(no log)"

    # -- faults -------------------------------------------------------------------

    def _host(self, host: str | Host) -> Host:
        return self.hosts[host] if isinstance(host, str) else host

    def kill(self, host: str | Host, parts: Iterable[str] = HOST_PARTS) -> list[str]:
        """SIGKILL the host's ``parts`` that run; the ones killed."""
        h = self._host(host)
        killed = []
        for part in parts:
            if h.running(part):
                p = h.procs[part]
                p.kill()
                p.wait()
                h.paused.discard(part)
                h.killed.add(part)
                killed.append(part)
        self.note(f"kill {h.name} {','.join(killed)}")
        return killed

    def terminate(self, host: str | Host, part: str, timeout: float = 30.0) -> None:
        """Stop ``part`` gracefully (SIGTERM, what ``systemctl stop`` sends) and wait for it
        to exit; SIGKILL only when it has not within ``timeout`` (which is then an error)."""
        h = self._host(host)
        if not h.running(part):
            return
        p = h.procs[part]
        h.killed.add(part)  # before it exits: a checker must not take the exit for a crash
        self.note(f"terminate {h.name} {part}")
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise SetupError(f"{part} of {h.name} did not stop within {timeout}s of SIGTERM")

    def kill_containers(self, host: str | Host) -> int:
        """SIGKILL every container of the host's engine (as a power loss would)."""
        h = self._host(host)
        ids = sh("docker", "-H", h.docker_host, "ps", "-q").split()
        if ids:
            sh("docker", "-H", h.docker_host, "kill", *ids, check=False)
        self.note(f"kill containers of {h.name} ({len(ids)})")
        return len(ids)

    def pause(self, host: str | Host, parts: Iterable[str] = HOST_PARTS) -> None:
        h = self._host(host)
        for part in parts:
            if h.running(part):
                h.procs[part].send_signal(signal.SIGSTOP)
                h.paused.add(part)
        self.note(f"pause {h.name}")

    def resume(self, host: str | Host) -> None:
        h = self._host(host)
        for part in list(h.paused):
            if h.running(part):
                h.procs[part].send_signal(signal.SIGCONT)
        h.paused.clear()
        self.note(f"resume {h.name}")

    def cut(self, host: str | Host) -> None:
        """Cut the host off the network: its switch port goes down."""
        h = self._host(host)
        sh("ip", "-n", self.hub, "link", "set", h.port, "down")
        h.cut_off = True
        self.note(f"cut {h.name}")

    def heal(self, host: str | Host) -> None:
        h = self._host(host)
        sh("ip", "-n", self.hub, "link", "set", h.port, "up")
        h.cut_off = False
        self.note(f"heal {h.name}")

    def start_part(self, host: str | Host, part: str) -> bool:
        """Start ``part`` on the host again when it does not run; True when started."""
        h = self._host(host)
        if part not in h.parts() or h.running(part):
            return False
        self._spawn(h, part)
        self.note(f"start {h.name} {part}")
        return True

    def restart(self, host: str | Host, part: str) -> None:
        self.kill(host, [part])
        self.start_part(host, part)

    def restore(self) -> list[str]:
        """Heal, resume and start everything that is not running (no waiting); what was done."""
        done = []
        for h in self.hosts.values():
            if h.cut_off:
                self.heal(h)
                done.append(f"heal {h.name}")
            if h.paused:
                self.resume(h)
                done.append(f"resume {h.name}")
            for part in h.parts():
                if self.start_part(h, part):
                    done.append(f"start {h.name} {part}")
        return done

    def crashed(self) -> list[str]:
        """Parts that exited although nobody killed them (a bug or a broken setup)."""
        return [f"{h.name}/{part} exited {p.returncode}: {self.tail(h, part, 5)}"
                for h in self.hosts.values() for part, p in h.procs.items()
                if p.poll() is not None and part not in h.killed]
