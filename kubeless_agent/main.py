"""The agent process and its command line, ``kubeless-agent``.

``AgentProcess`` assembles one process: identities, registration, the
heartbeat lease, one informer on ``agents/<id>/`` (and one on its own
heartbeat, to put it back if someone deletes it), one reporter and one worker
per node, all on ONE etcd connection. With ``--hollow-nodes N`` it runs N nodes
named ``<name>-0`` ... ``<name>-<N-1>`` (scale tests): they share the one lease
(killing the process takes them all down) and one informer on ``agents/<name>-``
dispatching by node id, so per-node cost is a worker, a runtime and a
heartbeat key.

What an agent reads and writes stays inside what a node's etcd role allows
(``kubeless.store.keys``): its own ``agents/<id>/`` and ``heartbeats/<id>``,
every heartbeat (DNS, the managers' join endpoints), ``endpoints/`` and the
``cluster`` record. Registration's Node write is the one exception, tried for
clusters without etcd auth and skipped when etcd refuses it
(``kubeless_agent.registration``).

Every (non-hollow) agent also serves the routing mesh (``kubeless_agent.mesh``)
and cluster DNS (``kubeless_agent.dns``) from one informer on ``endpoints/``:
published ingress ports on ``--mesh-bind`` (default: the advertise
address), DNS on ``--dns-addr`` (default: the advertise address port 53
and, with the docker runtime, the Docker bridge's gateway port 53, which
containers are given as their only nameserver), forwarding names outside
``kubeless.`` to the nameservers of ``--resolv-conf`` (``kubeless_agent.dns.wiring``).

Every ``--load-period`` (default 10s; 0: never) the agent puts each local node's load
report, ``agents/<id>/load``, bound to the heartbeat lease: CPU and memory per running
task, the host's, and the connections its mesh sent to each endpoint task
(``kubeless_agent.load``); the same figures are metrics of a (non-hollow) agent.

Task logs are served over TLS only (client certificates from the cluster CA
required, ``kubeless.cluster.node_tls``) when the agent has a server identity:
``--server-cert``/``--server-key``/``--client-ca``, else its own ``--cert`` when
that certificate has server usage (a joined node's ``<state-dir>/tls/``);
without one, over plain HTTP.

A node run from its state dir (``init``, ``join``, ``up``) keeps its identity in
``tls/`` renewed (``kubeless.cluster.renewal``): at a random 50-80% of its
certificate's life it makes a new key and has it signed, by the CA key when
this host is a manager holding it, else by a manager's join endpoint
(``POST /renew``, found in the managers' heartbeats, ``joinPort``). Its etcd
connection and logs server then take the new certificate for new connections;
nothing restarts, no container is touched.

The process makes an X25519 key pair in memory at start (never written
anywhere; the hollow nodes of one process share it) and advertises its public
half as ``secretsKey`` in every local heartbeat: the managers seal the node's
copies of secrets to it. The worker opens them and writes each task's secrets
and configs under ``--files-dir`` (default ``/run/kubeless``: a tmpfs per node,
``kubeless_agent.task_files``).

SIGTERM or SIGINT stops it gracefully: tasks are left running and the
heartbeats are marked stopped but NOT revoked (``Heartbeats.release``), so
the node stays ready for the rest of its lease's TTL and an agent started
again within it takes the node over at once and adopts every task (nothing
is replaced). Leaving on purpose is ``kubeless node leave``: its request
(``kubeless_agent.leave``) makes the agent revoke the lease, remove its
tasks' containers and exit; an agent is refused for a node that left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kubeless.aio import guard, unless_stopped
from kubeless.log_setup import configure_logging
from kubeless.api import parse_size
from kubeless.api.units import parse_seconds
from kubeless.cluster import NodeState, StateDir
from kubeless.cluster import CAError
from kubeless.cluster.metrics_endpoint import DEFAULT_ADDR as DEFAULT_METRICS_ADDR
from kubeless.cluster.metrics_endpoint import scrape_address, serve as serve_metrics
from kubeless.cluster.sealing import new_private_key
from kubeless.cluster.node_tls import (ServerTls, choose_server_tls, reload_server_cert,
                                       server_context, server_usage)
from kubeless.cluster.renewal import (LocalSigner, RemoteSigner, Renewal, Signer,
                                      find_join_endpoints)
from kubeless.store import (DEFAULT_PREFIX, Etcd, Informer, KeyValue, Keyspace, ResourceStore,
                            StoreError, TlsConfig, TlsError, add_tls_arguments, check_tls)
from kubeless.store import parse_endpoints
from kubeless.store.codec import decode
from kubeless.store.events import DEFAULT_TTL, EventRecorder, ttl_seconds

from kubeless_agent import metrics
from kubeless_agent.dns.resolvconf import DEFAULT_PATH as DEFAULT_RESOLV_CONF
from kubeless_agent.dns import DnsServer, ReadyNodes, assemble_dns, parse_dns_addr
from kubeless_agent.heartbeat import Heartbeats
from kubeless_agent.heartbeat import watch_prefix as heartbeat_watch_prefix
from kubeless.api.names import dns_label
from kubeless_agent.identity import NodeIdentity, parse_labels
from kubeless_agent.errors import NodeLeft
from kubeless_agent.load.procfs import read_host
from kubeless_agent.load.publisher import LoadPublisher, NodeLoad
from kubeless_agent.leave import (left_message, left_nodes, mark_done, remove_all,
                                   remove_mesh_table)
from kubeless_agent.logs import LogServer
from kubeless_agent.mesh import RoutingMesh
from kubeless_agent.mesh import kernel_metrics
from kubeless_agent.mesh.kernel import MODES as MESH_MODES, KernelMesh, mesh_path
from kubeless_agent.mesh.kernel_host import NftHost
from kubeless_agent.netaddr import bind_address
from kubeless_agent.node_status import advertise, mesh_fields, secrets_fields
from kubeless_agent.registration import register_nodes
from kubeless_agent.runtime import RUNTIMES, Runtime, make_runtime
from kubeless_agent.task_files import DEFAULT_FILES_DIR
from kubeless_agent.worker import AgentsRouter, Reporter, Worker, stop_grace

log = logging.getLogger("kubeless_agent")
TLS_ATTEMPTS = 3  # TLS failures in a row at start before the agent gives up (_until_done)
MESH_MODE_ENV = "KUBELESS_MESH_MODE"  # --mesh-mode's default (the tests': userspace)
LOAD_PERIOD_ENV = "KUBELESS_LOAD_PERIOD"  # --load-period's default

RuntimeFactory = Callable[[NodeIdentity], Runtime]


def default_mesh_mode() -> str:
    """The mesh path when none is given: ``$KUBELESS_MESH_MODE``, else auto (kernel where
    nftables works). The one knob for every agent this process starts, node.yaml's too."""
    return os.environ.get(MESH_MODE_ENV) or "auto"


def default_load_period() -> str:
    """``--load-period`` when none is given: ``$KUBELESS_LOAD_PERIOD``, else 10s."""
    return os.environ.get(LOAD_PERIOD_ENV) or "10s"


@dataclass(frozen=True)
class AgentConfig:
    endpoints: str = "http://127.0.0.1:2379"
    prefix: str = DEFAULT_PREFIX
    runtime: str = "fake"
    node_name: str | None = None
    advertise_addr: str = "127.0.0.1"
    labels: tuple[tuple[str, str], ...] = ()
    heartbeat_ttl: int = 5
    cpus: float | None = None
    memory: int | None = None
    metrics_port: int | None = None  # served by the caller (``_serve``, a node process)
    metrics_addr: str = DEFAULT_METRICS_ADDR  # ...on this address; both in the heartbeat
    hollow_nodes: int = 0
    role: str = "worker"  # the role a new node registers with (a manager join token's)
    logs_port: int | None = 0  # serve task logs here (0: any free port; None: not at all)
    runtime_options: tuple[tuple[str, Any], ...] = ()  # make_runtime keywords (state_dir...)
    mesh: bool = True  # serve the routing mesh (never for hollow nodes)
    mesh_bind: str | None = None  # listen here (None: the advertise address when local)
    # kernel (nftables), userspace (relay) or auto (kernel where nft works). The
    # command's default is auto; embedded agents (tests) keep to userspace unless asked.
    mesh_mode: str = "userspace"
    dns_addrs: tuple[str, ...] | None = None  # ADDR[:PORT]s; None: automatic; (): no DNS
    resolv_conf: str = DEFAULT_RESOLV_CONF  # where DNS finds the upstreams it forwards to
    drain_period: float = 2.0  # seconds a running task behind the mesh waits before its stop
    tls: TlsConfig | None = None  # https:// endpoints: the CA, our certificate and key
    server_tls: ServerTls | None = None  # serve logs over TLS only, client certs required
    renew_dir: Path | None = None  # keep this identity (ca.pem, cert.pem, key.pem) renewed
    ca_dir: Path | None = None  # a state dir holding the CA key: renew by signing here
    join_port: int | None = None  # a join endpoint of this host's: advertised (joinPort)
    files_dir: str = DEFAULT_FILES_DIR  # tasks' secrets and configs: <files_dir>/<node>/
    events_ttl: int = DEFAULT_TTL  # seconds an Event lives after its last occurrence (0: none)
    load_period: float = 10.0  # seconds between load reports (0: none)

    @classmethod
    def from_node_state(cls, node: NodeState, state: StateDir | None = None,
                        role: str | None = None) -> AgentConfig:
        """The agent of a node ``kubeless init``/``join``/``up`` stored (``node.yaml``);
        with ``state``, the process runtime keeps its files under that state dir;
        ``role``: the one a new node registers with (default: the stored one).
        ``ValueError`` when a stored agent option cannot be read."""
        options = node.agent_options
        extra: dict[str, Any] = {}
        if state is not None:
            extra["runtime_options"] = tuple(runtime_options(node.runtime, state).items())
        if "mesh_bind" in options:
            extra["mesh_bind"] = options["mesh_bind"]
        # a node of init/join/up runs the mesh as the command does: auto unless told
        extra["mesh_mode"] = options.get("mesh_mode", default_mesh_mode())
        if "dns_addr" in options:
            extra["dns_addrs"] = dns_addrs(options["dns_addr"])
        if "drain_period" in options:
            extra["drain_period"] = seconds(options["drain_period"])
        extra["load_period"] = seconds(options.get("load_period") or default_load_period(),
                                       "--load-period")
        if state is not None:
            extra.update(state_dir_tls(state, node.endpoints))
        return cls(endpoints=node.endpoints, prefix=node.prefix, runtime=node.runtime,
                   node_name=node.node_id, advertise_addr=node.advertise_addr,
                   labels=tuple(node.labels.items()), metrics_port=node.metrics_port,
                   metrics_addr=node.metrics_addr or DEFAULT_METRICS_ADDR,
                   role=role or node.role, **extra)

    @property
    def serves_mesh(self) -> bool:
        return self.mesh and self.hollow_nodes <= 0

    @property
    def serves_dns(self) -> bool:
        return self.dns_addrs != () and self.hollow_nodes <= 0

    def identities(self) -> list[NodeIdentity]:
        base = NodeIdentity.detect(self.node_name, address=self.advertise_addr,
                                   labels=dict(self.labels), cpus=self.cpus,
                                   memory=self.memory, runtime=self.runtime)
        if self.role != base.role:
            base = replace(base, role=self.role)
        if self.hollow_nodes <= 0:
            return [base]
        return [base.hollow(i) for i in range(self.hollow_nodes)]


def state_dir_tls(state: StateDir, endpoints: str) -> dict[str, Any]:
    """The node's identity in ``<state-dir>/tls/`` (``init``, ``join`` and ``up`` write
    one) for a cluster whose etcd is https://: the etcd client's, and the logs server's
    when it has server usage. With a plain http:// etcd neither is used: a user reaching
    etcd without certificates could not read TLS-served logs (TLS comes as a whole)."""
    from kubeless.cluster.pki import finish_pending_pair  # cryptography: only with a state dir

    directory = state.tls_dir
    finish_pending_pair(directory)  # a renewal a crash interrupted
    if not (directory / "cert.pem").is_file():
        return {}
    identity = TlsConfig.from_options(cert_path=str(directory))
    assert identity is not None and identity.cert is not None
    if not endpoints.startswith("https://"):
        return {}
    extra: dict[str, Any] = {"tls": identity, "renew_dir": directory,
                             "ca_dir": state.path if state.has_ca_key() else None}
    serving = choose_server_tls(None, None, None, identity, server_usage(identity.cert))
    if serving is not None:
        extra["server_tls"] = serving
    return extra


def runtime_options(runtime: str, state: StateDir) -> dict[str, Any]:
    """make_runtime's keywords: the process runtime keeps its files under the state dir."""
    return {"state_dir": str(state.path / "process")} if runtime == "process" else {}


class _Stopping(Exception):
    """Raised inside the task group to end it when asked to stop."""


class AgentProcess:
    """One agent process: one node, or many hollow nodes on one etcd connection."""

    def __init__(self, config: AgentConfig, *,
                 runtime_factory: RuntimeFactory | None = None) -> None:
        self.config = config
        self.idents = config.identities()
        self.runtime_factory = runtime_factory or (lambda ident: make_runtime(
            config.runtime, ident.node_id, ident.address, files_dir=config.files_dir,
            **dict(config.runtime_options)))
        self.ready = asyncio.Event()
        self.etcd: Etcd | None = None
        self.keys = Keyspace(config.prefix)
        self.runtimes: dict[str, Runtime] = {}
        self.workers: dict[str, Worker] = {}
        self.heartbeats: Heartbeats | None = None
        self.reporter: Reporter | None = None
        self.informer: Informer | None = None
        self.recorders: list[EventRecorder] = []  # one per node of this process
        self.own_heartbeats: Informer | None = None  # puts back a heartbeat someone deleted
        self.log_server: LogServer | None = None
        self.endpoints: Informer | None = None
        self.mesh: RoutingMesh | KernelMesh | None = None
        self.dns: DnsServer | None = None
        self.ready_nodes: ReadyNodes | None = None
        self.renewal: Renewal | None = None
        self.load: LoadPublisher | None = None
        self.leaving = False  # kubeless node leave asked: revoke, remove every task, exit
        self._stop: asyncio.Event | None = None
        self.secrets_key = new_private_key()  # in memory only: copies open in this process
        # heartbeat fields: secretsKey, and those others set: a manager's joinPort (its
        # node process, or --join-port)
        self._advertised: dict[str, Any] = secrets_fields(self.secrets_key)
        if config.join_port:
            self._advertised["joinPort"] = config.join_port
        if config.metrics_port:  # where Prometheus scrapes this process (metrics_endpoint)
            self._advertised["metrics"] = scrape_address(
                config.metrics_addr, config.metrics_port, config.advertise_addr)

    def advertise(self, fields: dict[str, Any]) -> None:
        """Say ``fields`` in every local node's heartbeat (a manager's ``joinPort``)."""
        self._advertised.update(fields)
        if self.heartbeats is not None:
            for ident in self.idents:
                self.heartbeats.update(ident.node_id, fields)

    @property
    def node_ids(self) -> list[str]:
        return [i.node_id for i in self.idents]

    @property
    def lease_id(self) -> int:
        """The heartbeat lease every local node's heartbeat is bound to (0: none yet)."""
        return self.heartbeats.lease_id if self.heartbeats is not None else 0

    @property
    def lease_losses(self) -> int:
        return self.heartbeats.losses if self.heartbeats is not None else 0

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (or a long-lived task crashes, which raises)."""
        etcd = self.etcd = Etcd(parse_endpoints(self.config.endpoints), tls=self.config.tls)
        self._stop = stop
        try:
            if not await _until_done("checking the node has not left",
                                     lambda: self._check_not_left(etcd), stop) or \
                    not await _until_done("registering", lambda: register_nodes(
                        ResourceStore(etcd, self.keys), self.idents), stop):
                return
            # The heartbeat first: a restarted agent takes its node over before the slower
            # assembly (adopting containers, DNS), well within the previous agent's TTL.
            self.heartbeats = Heartbeats(etcd, self.keys, self.idents, self.config.heartbeat_ttl)
            self.advertise(dict(self._advertised))
            async with asyncio.TaskGroup() as tg:
                _spawn(tg, "heartbeat", self.heartbeats.run())
                await self._assemble(etcd)
                for name, coro in self._loops():
                    _spawn(tg, name, coro)
                _spawn(tg, "startup", self._startup())
                await stop.wait()
                raise _Stopping
        except* _Stopping:
            pass
        finally:
            await asyncio.shield(self._close())

    async def _assemble(self, etcd: Etcd) -> None:
        self.reporter = Reporter(etcd)
        assert self.heartbeats is not None
        for ident in self.idents:
            runtime = self.runtimes[ident.node_id] = self.runtime_factory(ident)
            worker = Worker(ident.node_id, runtime, self.reporter, self.keys,
                            drain_period=self.config.drain_period,
                            secrets_key=self.secrets_key, events=self._events(etcd, ident.node_id))
            await worker.adopt()
            self.workers[ident.node_id] = worker
        prefix = self.keys.agent(self.idents[0].node_id) if self.config.hollow_nodes <= 0 \
            else hollow_prefix(self.keys, self.node_ids)
        self.informer = Informer(etcd, prefix, _decode)
        informer = self.informer
        self.informer.add_handler(AgentsRouter(
            self.keys, self.workers, self.reporter,
            revision_of=lambda key: informer.revisions.get(key, 0), on_leave=self._on_leave))
        self.own_heartbeats = Informer(etcd, heartbeat_watch_prefix(self.keys, self.node_ids),
                                       _decode)
        self.own_heartbeats.add_handler(self.heartbeats.on_event)
        metrics.NODES.set(len(self.idents))
        await self._serve_logs()
        await self._assemble_services(etcd)
        self.load = self._load_publisher(etcd)
        self.renewal = self._renewal(etcd)

    def _load_publisher(self, etcd: Etcd) -> LoadPublisher | None:
        """Load reports every ``load_period`` (none at 0); hollow nodes report the sum of
        their tasks as their host, and set no metrics."""
        period = self.config.load_period
        if period <= 0:
            return None
        hollow = self.config.hollow_nodes > 0
        nodes = [NodeLoad(i.node_id, self.runtimes[i.node_id], self.workers[i.node_id].running,
                          capacity=(i.cpus, i.memory) if hollow else None) for i in self.idents]
        return LoadPublisher(etcd, self.keys, nodes, lambda: self.lease_id, period,
                             mesh=self.mesh, host=None if hollow else read_host,
                             set_metrics=not hollow)

    def _renewal(self, etcd: Etcd) -> Renewal | None:
        """The loop keeping ``renew_dir`` renewed: signed here when this host holds the
        CA key, else through a manager's join endpoint."""
        directory = self.config.renew_dir
        if directory is None:
            return None
        rstore = ResourceStore(etcd, self.keys)
        signer: Signer = RemoteSigner(directory, lambda: find_join_endpoints(rstore))
        if self.config.ca_dir is not None:
            from kubeless.cluster.pki import CA

            try:
                signer = LocalSigner(CA.load(self.config.ca_dir), rstore)
            except CAError as err:
                log.warning("renewing through the join endpoints: %s", err)
        return Renewal(directory, signer, self._renewed, what="node identity")

    async def _renewed(self) -> None:
        """A renewed identity: new etcd connections and new logs clients get it."""
        assert self.etcd is not None
        self.etcd.reload_tls()
        server = self.log_server
        if server is not None and server.ssl_context is not None \
                and self.config.server_tls is not None:
            reload_server_cert(server.ssl_context, self.config.server_tls)

    async def _assemble_services(self, etcd: Etcd) -> None:
        """The mesh and DNS, fed by one informer on ``endpoints/``."""
        config = self.config
        if not (config.serves_mesh or config.serves_dns):
            return
        self.endpoints = Informer(etcd, self.keys.root + "endpoints/", _decode)
        if config.serves_mesh:
            self.mesh = await self._mesh(self.endpoints.synced)
            self.endpoints.add_handler(self.mesh.on_endpoints)
        if config.serves_dns:
            assert self.heartbeats is not None
            self.dns = await assemble_dns(
                config.dns_addrs, bind_address(config.advertise_addr), config.resolv_conf,
                self.runtimes[self.idents[0].node_id], self.heartbeats, self.node_ids)
            self.endpoints.add_handler(self.dns.on_endpoints)
            self.ready_nodes = ReadyNodes(etcd, self.keys, self.dns.set_ready)

    async def _mesh(self, synced: asyncio.Event) -> RoutingMesh | KernelMesh:
        """The kernel path where ``--mesh-mode`` and the host allow it, else userspace."""
        config = self.config
        bind = config.mesh_bind or bind_address(config.advertise_addr)
        node_id = self.idents[0].node_id
        unavailable = None
        if config.mesh_mode != "userspace":
            unavailable = await asyncio.to_thread(NftHost().probe)
        path = mesh_path(config.mesh_mode, unavailable)
        kernel_metrics.use_path(path)
        self.advertise(mesh_fields(path))
        if path == "kernel":
            mesh = KernelMesh(node_id, [bind], synced=synced)
            log.info("mesh: kernel path, nftables table %s for %s", mesh.table, bind)
            return mesh
        if unavailable is not None:
            log.warning("mesh: userspace path: nftables does not work here: %s", unavailable)
        return RoutingMesh(bind, node=node_id)  # node: externalTrafficPolicy Local

    async def _serve_logs(self) -> None:
        assert self.heartbeats is not None
        port = None
        config = self.config
        if config.logs_port is not None:
            context = server_context(config.server_tls) if config.server_tls else None
            self.log_server = LogServer(self.runtimes, bind_address(config.advertise_addr),
                                        config.logs_port, context)
            port = await self.log_server.start()
        for ident in self.idents:
            advertise(self.heartbeats, ident.node_id, self.runtimes[ident.node_id], port,
                      logs_tls=config.server_tls is not None)

    def _events(self, etcd: Etcd, node_id: str) -> EventRecorder | None:
        """The node's Event recorder; none for hollow nodes (a scale test's thousands of
        task starts would only measure history) or with ``events_ttl`` 0."""
        if self.config.hollow_nodes > 0 or self.config.events_ttl <= 0:
            return None
        recorder = EventRecorder(etcd, self.keys.agent_events_prefix(node_id),
                                 component="agent", host=node_id, ttl=self.config.events_ttl)
        self.recorders.append(recorder)
        return recorder

    def _loops(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        assert self.heartbeats and self.reporter and self.informer
        loops = [("reporter", self.reporter.run()),
                 ("informer", self.informer.run())]
        loops += [(f"events {r.host}", r.run()) for r in self.recorders]
        for name, part in (("own-heartbeats", self.own_heartbeats),
                           ("endpoints", self.endpoints), ("mesh", self.mesh),
                           ("dns", self.dns), ("ready-nodes", self.ready_nodes),
                           ("renewal", self.renewal), ("load", self.load)):
            if part is not None:
                loops.append((name, part.run()))
        if self.etcd is not None and self.config.tls is not None:
            loops.append(("tls-files", self.etcd.follow_tls_files()))
        return loops

    async def _startup(self) -> None:
        assert self.heartbeats and self.informer
        await self.informer.synced.wait()
        if self.endpoints is not None:
            await self.endpoints.synced.wait()
        if self.mesh is not None:
            await self.mesh.settled.wait()
        if self.dns is not None:  # containers started from now on get a nameserver that works
            await self.dns.settled.wait()
        for worker in self.workers.values():
            worker.resync()
        await self.heartbeats.live.wait()
        log.info("agent ready: %d node(s) (%s%s)", len(self.idents), self.idents[0].node_id,
                 ", ..." if len(self.idents) > 1 else "")
        self.ready.set()

    async def _check_not_left(self, etcd: Etcd) -> None:
        left = await left_nodes(etcd, self.keys, self.node_ids)
        if left:
            raise NodeLeft(left_message(left[0]))

    def _on_leave(self, node_id: str) -> None:
        if not self.leaving:
            log.warning("node %s is leaving the cluster (kubeless node leave): revoking its "
                        "heartbeat, removing its tasks, stopping", node_id)
        self.leaving = True
        if self._stop is not None:
            self._stop.set()

    async def _close(self) -> None:
        if self.log_server is not None:
            await self.log_server.close()
        for worker in self.workers.values():
            await worker.close()
        if self.reporter is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.reporter.flush()
        if self.heartbeats is not None:
            await (self.heartbeats.close() if self.leaving else self.heartbeats.release())
        if self.leaving:
            await self._leave()
        for runtime in self.runtimes.values():
            with contextlib.suppress(Exception):
                await runtime.close()
        if self.etcd is not None:
            await self.etcd.close()

    async def _leave(self) -> None:
        """The node left: remove every task this agent's runtimes hold, then say so."""
        assert self.etcd is not None
        for node_id, runtime in self.runtimes.items():
            worker = self.workers.get(node_id)
            graces = {tid: stop_grace(rec.task) for tid, rec in worker.records.items()} \
                if worker is not None else {}
            removed = await remove_all(runtime, graces)
            if isinstance(self.mesh, KernelMesh) and node_id == self.mesh.node_id:
                await self.mesh.remove()
            elif self.config.hollow_nodes <= 0:
                await remove_mesh_table(node_id)  # one a kernel-path run of this node left
            with contextlib.suppress(Exception):
                await mark_done(self.etcd, self.keys, node_id, removed)
            log.warning("node %s left the cluster; %d task(s) removed", node_id, removed)


async def _until_done(what: str, step: Callable[[], Coroutine[Any, Any, Any]],
                      stop: asyncio.Event) -> bool:
    """Run ``step`` until it succeeds, again while etcd cannot serve it (an agent started
    while etcd has no quorum waits for it, as a kubelet does); False when stopped first.

    A TLS failure (our certificate refused, etcd's not trusted) does not go away by
    waiting: seen ``TLS_ATTEMPTS`` times in a row, it is raised and the agent exits with
    its one line. Not at the first: a member dying mid-handshake can look like one."""
    delay, tls_failures = 0.2, 0
    while True:
        try:
            return await unless_stopped(step(), stop)
        except TlsError as err:
            tls_failures += 1
            if tls_failures >= TLS_ATTEMPTS:
                raise
            log.warning("%s: %s; trying again in %.1fs", what, err, delay)
        except StoreError as err:
            tls_failures = 0
            log.warning("%s: %s; retrying in %.1fs", what, err, delay)
        try:
            async with asyncio.timeout(delay):
                await stop.wait()
            return False
        except TimeoutError:
            delay = min(delay * 2, 5.0)


def hollow_prefix(keys: Keyspace, node_ids: Sequence[str]) -> str:
    """The narrowest ``agents/`` prefix covering every local node (``agents/<name>-``).

    Only a filter: the router still dispatches by node id, so a foreign node
    that shares the prefix is ignored. Watching all of ``agents/`` instead
    would make every hollow process decode every other process's
    assignments and reports (10 processes: 10 times the work).
    """
    return keys.root + "agents/" + os.path.commonprefix(list(node_ids))


def _decode(kv: KeyValue) -> Any:
    return decode(kv.key, kv.value)


def _spawn(tg: asyncio.TaskGroup, name: str, coro: Coroutine[Any, Any, None]) -> None:
    """A long-lived task of the agent, named; its crash is logged before it escalates."""
    tg.create_task(guard(f"agent task {name}", coro, log), name=name)


@contextlib.asynccontextmanager
async def running_agent(config: AgentConfig, *, runtime_factory: RuntimeFactory | None = None,
                        timeout: float = 30.0) -> AsyncIterator[AgentProcess]:
    """Run an agent in this event loop until the block ends (tests, benchmarks)."""
    agent = AgentProcess(config, runtime_factory=runtime_factory)
    stop = asyncio.Event()
    runner = asyncio.create_task(agent.run(stop), name="agent")
    ready = asyncio.create_task(agent.ready.wait())
    try:
        done, _ = await asyncio.wait({runner, ready}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            runner.result()
            raise RuntimeError("the agent stopped before it was ready")
        if ready not in done:
            raise TimeoutError(f"the agent was not ready after {timeout}s")
        yield agent
    finally:
        ready.cancel()
        stop.set()
        await runner


# -- the command line ---------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> AgentConfig:
    p = argparse.ArgumentParser(prog="kubeless-agent", description="The kubeless node agent.")
    p.add_argument("--endpoints", default="http://127.0.0.1:2379",
                   help="etcd endpoints, comma-separated")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="the cluster's key prefix")
    p.add_argument("--runtime", default="docker", choices=RUNTIMES, help="task runtime")
    p.add_argument("--join-port", type=int, metavar="PORT",
                   help="a join endpoint on this host listens on PORT (a manager's, run "
                        "apart): say so in the heartbeat, where nodes find where to renew "
                        "their certificates")
    p.add_argument("--logs-port", type=int, default=0,
                   help="serve task logs on this port (default: any free port, in the heartbeat)")
    p.add_argument("--process-dir", default=None,
                   help="process runtime: where task logs and pid files live "
                        "(default /var/lib/kubeless/process)")
    p.add_argument("--files-dir", default=DEFAULT_FILES_DIR, metavar="DIR",
                   help="where tasks' secrets and configs are written, in a tmpfs mounted "
                        "at DIR/<node-id> (default /run/kubeless)")
    p.add_argument("--node-name", help="node id (default: the hostname as a DNS label)")
    p.add_argument("--advertise-addr", default="127.0.0.1", help="this node's address")
    p.add_argument("--labels", default="", help="node labels, k=v,... (at registration)")
    p.add_argument("--heartbeat-ttl", type=int, default=5, help="heartbeat lease TTL, seconds")
    p.add_argument("--cpus", type=float, help="CPUs to advertise (default: all)")
    p.add_argument("--memory", help="memory to advertise, e.g. 4Gi (default: MemTotal)")
    p.add_argument("--metrics-port", type=int,
                   help="serve Prometheus /metrics on this port (plain http; default: none)")
    p.add_argument("--metrics-addr", default=DEFAULT_METRICS_ADDR,
                   help="listen for /metrics on this address (default 127.0.0.1; 0.0.0.0: "
                        "every address, advertised as --advertise-addr)")
    p.add_argument("--hollow-nodes", type=int, default=0,
                   help="run N hollow nodes <node-name>-0..N-1 in this process")
    p.add_argument("--mesh-bind", metavar="ADDR",
                   help="routing mesh: listen on published ports at ADDR (default: the "
                        "advertise address; 0.0.0.0 for every address)")
    p.add_argument("--no-mesh", action="store_true", help="do not serve the routing mesh")
    p.add_argument("--mesh-mode", choices=MESH_MODES,
                   default=default_mesh_mode(),
                   help="routing mesh data path: kernel (an nftables table of this node's), "
                        "userspace (a relay in the agent), or auto (default: kernel where "
                        "nft works and may change the ruleset, else userspace) [env KUBELESS_MESH_MODE]")
    p.add_argument("--dns-addr", metavar="ADDR[:PORT],...",
                   help="cluster DNS: listen here (default: the advertise address port 53 "
                        "and, with the docker runtime, the Docker bridge gateway port 53, "
                        "the containers' nameserver); 'none': no DNS")
    p.add_argument("--resolv-conf", default=DEFAULT_RESOLV_CONF, metavar="PATH",
                   help="cluster DNS forwards names outside kubeless. to this file's "
                        "nameservers (default /etc/resolv.conf)")
    p.add_argument("--drain-period", default="2s",
                   help="wait this long before stopping a running task behind the mesh "
                        "(default 2s)")
    p.add_argument("--events-ttl", default="1h",
                   help="how long an Event of this node's lives after its last occurrence "
                        "(default 1h; 0s: record none)")
    p.add_argument("--load-period", default=default_load_period(), metavar="DURATION",
                   help="publish this node's load report (CPU and memory per task, mesh "
                        "connections) this often; 0: never (default 10s) "
                        "[env KUBELESS_LOAD_PERIOD]")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    add_tls_arguments(p)
    add_server_tls_arguments(p)
    args = p.parse_args(argv)
    try:
        labels = parse_labels(args.labels)
        memory = parse_size(args.memory) if args.memory else None
        if args.heartbeat_ttl < 2:
            raise ValueError("--heartbeat-ttl must be at least 2 seconds")
        config = AgentConfig(
            endpoints=args.endpoints, prefix=args.prefix, runtime=args.runtime,
            node_name=dns_label(args.node_name) if args.node_name else None,
            advertise_addr=args.advertise_addr, labels=tuple(labels.items()),
            heartbeat_ttl=args.heartbeat_ttl, cpus=args.cpus, memory=memory,
            metrics_port=args.metrics_port, metrics_addr=args.metrics_addr,
            hollow_nodes=max(args.hollow_nodes, 0),
            logs_port=args.logs_port, join_port=args.join_port,
            runtime_options=(("state_dir", args.process_dir),)
            if args.runtime == "process" and args.process_dir else (),
            mesh=not args.no_mesh, mesh_bind=args.mesh_bind, mesh_mode=args.mesh_mode,
            dns_addrs=dns_addrs(args.dns_addr), resolv_conf=args.resolv_conf,
            drain_period=seconds(args.drain_period), files_dir=args.files_dir,
            events_ttl=ttl_seconds(args.events_ttl),
            load_period=seconds(args.load_period, "--load-period"),
            tls=TlsConfig.from_env(os.environ, args.cacert, args.cert, args.key))
        check_tls(parse_endpoints(config.endpoints), config.tls)
        config = replace(config, server_tls=serving_identity(args, config.tls))
    except (ValueError, StoreError) as err:  # BadEndpoint is a ValueError; TlsError a StoreError
        p.error(str(err))
    configure_logging(args.log_level)
    return config


def add_server_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """The logs server's own identity (default: the agent's, when it may serve)."""
    parser.add_argument("--server-cert", metavar="FILE",
                        help="serve task logs over TLS with this certificate (default: --cert "
                             "when it has server usage, as a joined node's does)")
    parser.add_argument("--server-key", metavar="FILE", help="the server certificate's key")
    parser.add_argument("--client-ca", metavar="FILE",
                        help="require client certificates signed by this CA (default: --cacert)")


def serving_identity(args: argparse.Namespace, identity: TlsConfig | None) -> ServerTls | None:
    """The logs server's identity from the flags, its files checked up front (TlsError)."""
    serves = identity is not None and identity.cert is not None and server_usage(identity.cert)
    chosen = choose_server_tls(args.server_cert, args.server_key, args.client_ca, identity,
                               serves)
    if chosen is not None:
        server_context(chosen)
    return chosen


def dns_addrs(text: str | None) -> tuple[str, ...] | None:
    """``--dns-addr``: None (automatic), () for ``none``, else the checked addresses."""
    if text is None:
        return None
    if text.strip().lower() in ("none", "off", ""):
        return ()
    addrs = tuple(a.strip() for a in text.split(",") if a.strip())
    for a in addrs:
        parse_dns_addr(a)
    return addrs


def seconds(text: str, option: str = "--drain-period") -> float:
    """``2s``, ``500ms`` or a plain number of seconds (>= 0, finite) for ``option``."""
    return parse_seconds(text, option)


async def _serve(config: AgentConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if config.metrics_port is not None:
        serve_metrics(config.metrics_addr, config.metrics_port, "agent")
    await AgentProcess(config).run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        asyncio.run(_serve(config))
    except Exception as err:  # already logged by the task that failed
        while isinstance(err, ExceptionGroup) and err.exceptions:
            err = err.exceptions[0]  # the cause, not "unhandled errors in a TaskGroup"
        print(f"kubeless-agent: {err}", file=sys.stderr)
        return 1
    return 0
