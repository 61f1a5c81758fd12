"""``NodeProcess``: this host's node in the foreground: its agent and, on a manager, controllers.

``kubeless init``, ``join`` (``kubeless_cli.cluster_cmds``) and ``up``
(``kubeless_cli.up_cmd``) run a node the same way: the agent
(``kubeless_agent``), built from the node state the state dir holds
(``AgentConfig.from_node_state``), and on a manager the controllers
(``controllers.main``), under one asyncio TaskGroup. When the node's etcd is
https://, the controllers and the join endpoint present the manager identity
in ``<state-dir>/manager-tls/`` (``manager_tls``), the agent its node
identity in ``tls/``. Both are renewed while running (``kubeless.cluster.renewal``):
the agent renews ``tls/``; a manager holding the CA key renews ``manager-tls/``
by signing it here (``renew_manager_identity``), and the controllers' etcd
connection follows the files. A manager holding the CA key hands it to its
controllers (``--ca-key``): the cluster's secrets key derives from it, and they
deliver secrets to the nodes. A manager that holds
the CA key and has a join port also serves the join endpoint
(``kubeless.cluster.join_server``), and says its port in its agent's heartbeat
(``joinPort``: where the other nodes renew their certificates); when it cannot (no CA key, the port
taken) it says so in its log and the node runs on without it. With a metrics port the
process serves ``/metrics`` once, the agent's and the controllers' together, on the
node's ``metrics_addr`` (127.0.0.1 unless told), and both say that address
(``kubeless.cluster.metrics_endpoint``).

One stop path: SIGINT or SIGTERM, the caller's ``stop`` event, or a part
that ends or crashes all set ``stop``. The agent stops gracefully on it:
its heartbeat is released (marked stopped, never revoked) and no container
is touched, so a restart within the heartbeat's TTL adopts everything. The
controllers are cancelled, which resigns their leaderships. A part that
crashed is then one ``CliError`` line. Leaving on purpose is ``kubeless
node leave`` (``kubeless_cli.leave_cmd``).

It lives in ``kubeless_cli`` because only the top layer may import both the
controllers and the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubeless.cluster import ClusterError, NodeState, StateDir
from kubeless.cluster.metrics_endpoint import (DEFAULT_ADDR, WILDCARDS, MetricsBindError,
                                               serve as serve_metrics)
from kubeless.log_setup import configure_logging
from kubeless_agent.main import AgentConfig, AgentProcess
from kubeless_agent.runtime import Runtime
from kubeless_cli.context import CliError

if TYPE_CHECKING:
    from kubeless.cluster.join_server import JoinRequest
    from kubeless.store import TlsConfig

log = logging.getLogger("kubeless")

OnReady = Callable[[], Awaitable[None]]
SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class NodeProcess:
    """Run ``node`` (its agent, and its controllers when ``manager``) until stopped."""

    node: NodeState
    state: StateDir
    manager: bool
    on_ready: OnReady | None = None  # awaited once the agent is ready (``up --apply``)
    dashboard_port: int | None = None  # the controllers' (None: their default; 0: none)

    def run_in_foreground(self) -> None:
        """Run on a new event loop until SIGINT/SIGTERM (``init``, ``join``)."""
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(self.run())

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (SIGINT and SIGTERM set it) or a part ends."""
        configure_logging()
        await check_runtime(self.node, self.state)
        stop = stop or asyncio.Event()
        with stop_on_signals(stop):
            if self.node.metrics_port:  # one registry: the controllers' metrics too
                try:
                    serve_metrics(metrics_addr(self.node), self.node.metrics_port,
                                  "manager" if self.manager else "agent")
                except MetricsBindError as bind_error:
                    raise CliError(f"{bind_error} (--metrics-port N; 0: none)") from None
            failures = await self._supervise(stop)
        if failures:
            name, err = failures[0]
            raise CliError(f"the {name} stopped: {_leaf(err)}")
        log.info("node %s stopped", self.node.node_id)

    async def _supervise(self, stop: asyncio.Event) -> list[tuple[str, BaseException]]:
        """The parts under one TaskGroup; the parts that crashed, in order."""
        agent = AgentProcess(AgentConfig.from_node_state(self.node, self.state))
        failures: list[tuple[str, BaseException]] = []
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_part("agent", agent.run(stop), stop, failures), name="agent")
            cancelled = [tg.create_task(self._announce(agent), name="announce")]
            if self.manager:
                cancelled.append(tg.create_task(
                    _part("controllers", run_controllers(self.node, self.state,
                                                         self.dashboard_port), stop,
                          failures),
                    name="controllers"))
                if self.node.join_port:
                    cancelled.append(tg.create_task(serve_join(self.node, self.state, agent),
                                                    name="join endpoint"))
                cancelled.append(tg.create_task(renew_manager_identity(self.node, self.state),
                                                name="manager identity renewal"))
            await stop.wait()
            for task in cancelled:  # the agent stops on ``stop``; the runner resigns
                task.cancel()
        return failures

    async def _announce(self, agent: AgentProcess) -> None:
        await agent.ready.wait()
        role = "manager: agent and controllers" if self.manager else "worker: agent"
        log.info("node %s is ready (%s, runtime %s); Ctrl-C stops it", self.node.node_id, role,
                 self.node.runtime)
        if self.on_ready is not None:
            try:
                await self.on_ready()
            except Exception:  # noqa: BLE001 - the node keeps running
                log.exception("node %s: the step run once ready failed", self.node.node_id)


async def _part(name: str, coro: Coroutine[Any, Any, None], stop: asyncio.Event,
                failures: list[tuple[str, BaseException]]) -> None:
    """Run one part; however it ends (returned, crashed), the whole node stops."""
    try:
        await coro
    except Exception as err:  # noqa: BLE001 - reported by run() as one line
        failures.append((name, err))
    finally:
        stop.set()


def manager_tls(node: NodeState, state: StateDir) -> TlsConfig | None:
    """The manager identity in ``<state-dir>/manager-tls/`` for a node whose etcd is
    https:// and that holds one; else None (plain etcd, or a manager that joined through
    etcd, whose controllers fall back on KUBELESS_CERT_PATH as before)."""
    from kubeless.store import TlsConfig

    from kubeless.cluster.pki import finish_pending_pair

    directory = state.manager_tls_dir
    finish_pending_pair(directory)  # a renewal a crash interrupted
    if not node.endpoints.startswith("https://") or not (directory / "cert.pem").is_file():
        return None
    return TlsConfig.from_options(cert_path=str(directory))


def tls_flags(tls: TlsConfig | None) -> list[str]:
    """``--cacert``, ``--cert`` and ``--key`` for ``tls`` (flags win over the environment)."""
    if tls is None:
        return []
    pairs = (("--cacert", tls.cacert), ("--cert", tls.cert), ("--key", tls.key))
    return [arg for flag, path in pairs if path is not None for arg in (flag, str(path))]


async def run_controllers(node: NodeState, state: StateDir,
                          dashboard_port: int | None = None) -> None:
    """The controllers of this manager, through their command line's entry point, with
    the manager identity when etcd is https://, and the CA key when this manager holds
    it (the cluster's secrets key derives from it: they deliver secrets to nodes); their
    dashboard on loopback, on ``dashboard_port`` when given."""
    from kubeless.cluster.ca import KEY_FILE
    from controllers.main import parse_args, run

    ca_key = ["--ca-key", str(state.path / KEY_FILE)] if state.has_ca_key() else []
    dashboard = ["--dashboard-port", str(dashboard_port)] if dashboard_port is not None else []
    await run(parse_args(["--endpoints", node.endpoints, "--prefix", node.prefix,
                          "--identity", node.node_id, *ca_key, *dashboard,
                          *metrics_flags(node),
                          *tls_flags(manager_tls(node, state))]))


def metrics_addr(node: NodeState) -> str:
    return node.metrics_addr or DEFAULT_ADDR


def metrics_flags(node: NodeState) -> list[str]:
    """What the controllers say in ``managers/<id>``: the port this node process serves
    (``run`` only advertises it; the process serves it once for agent and controllers),
    on the node's advertise address when it listens on every address."""
    if not node.metrics_port:
        return []
    addr = metrics_addr(node)
    return ["--metrics-port", str(node.metrics_port),
            "--metrics-addr", node.advertise_addr if addr in WILDCARDS else addr]


async def renew_manager_identity(node: NodeState, state: StateDir) -> None:
    """Keep ``manager-tls/`` renewed, signed with the CA key this manager holds, until
    cancelled (nothing to do without either: logged)."""
    from kubeless import store
    from kubeless.cluster.pki import CA
    from kubeless.cluster.renewal import LocalSigner, Renewal

    tls = manager_tls(node, state)
    if tls is None or not state.has_ca_key():
        return
    try:
        ca = CA.load(state.path)
        rstore = store.connect(node.endpoints, node.prefix, retry_for=10, tls=tls)
    except (ClusterError, store.StoreError) as err:
        log.warning("the manager identity will not be renewed: %s", err)
        return

    async def renewed() -> None:
        rstore.etcd.reload_tls()

    try:
        await Renewal(state.manager_tls_dir, LocalSigner(ca, rstore), renewed,
                      what="manager identity").run()
    finally:
        await asyncio.shield(rstore.etcd.close())


async def serve_join(node: NodeState, state: StateDir, agent: AgentProcess | None = None) -> None:
    """Serve the join endpoint until cancelled, its port said in ``agent``'s heartbeat;
    a reason it cannot is logged, not fatal (nodes still join through etcd, as before)."""
    from kubeless import store
    from kubeless.cluster.join_server import JoinServer
    from kubeless.cluster.pki import CA

    if not state.has_ca_key():
        log.warning("no join endpoint: this manager holds no CA key in %s (it joined "
                    "through etcd, not through a join endpoint)", state)
        return
    try:
        ca = CA.load(state.path)
    except ClusterError as err:
        log.warning("no join endpoint: %s", err)
        return
    try:
        rstore = store.connect(node.endpoints, node.prefix, retry_for=10,
                               tls=manager_tls(node, state))
    except store.StoreError as err:  # https:// without a manager identity here
        log.warning("no join endpoint: %s", err)
        return
    server = JoinServer(rstore, ca, lambda r, role: joining_node(node, r, role),
                        node.endpoints, node.prefix, (node.advertise_addr, "127.0.0.1"),
                        node.join_port)
    try:
        await server.start()
    except OSError as err:
        log.warning("no join endpoint: cannot listen on port %d: %s", node.join_port,
                    err.strerror or err)
        await rstore.etcd.close()
        return
    if agent is not None:
        agent.advertise({"joinPort": server.port})
    try:
        await rstore.etcd.follow_tls_files()  # manager-tls/ renewed: forever
        await asyncio.Event().wait()
    finally:
        await server.close()
        await asyncio.shield(rstore.etcd.close())


def joining_node(manager: NodeState, request: JoinRequest, role: str) -> dict[str, Any]:
    """The Node resource of a node joining through this manager's join endpoint
    (what ``bootstrap.join_cluster`` registers), as its own agent would describe it."""
    node = NodeState(cluster_id=manager.cluster_id, node_id=request.node_name, role=role,
                     endpoints=manager.endpoints, prefix=manager.prefix, runtime=request.runtime,
                     advertise_addr=request.advertise_addr, labels=dict(request.labels))
    resource = node_resource(node, role)
    if request.hostname:
        resource["status"]["hostname"] = request.hostname
    return resource


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` while the block runs (then the handlers go)."""
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)


def node_runtime(node: NodeState, state: StateDir) -> Runtime:
    """The node's runtime, made as its agent makes it (raises whatever that raises)."""
    agent = AgentProcess(AgentConfig.from_node_state(node, state))
    return agent.runtime_factory(agent.idents[0])


async def check_runtime(node: NodeState, state: StateDir) -> None:
    """Fail before registering anything when the runtime cannot be made here."""
    try:
        runtime = node_runtime(node, state)
    except Exception as err:  # noqa: BLE001 - any reason is the user's to read
        raise CliError(f"the {node.runtime} runtime cannot start: {err}") from None
    with contextlib.suppress(Exception):
        await runtime.close()


def node_resource(node: NodeState, role: str) -> dict[str, Any]:
    """The Node resource registration creates (the agent's own idea of this host)."""
    config = AgentConfig.from_node_state(node, role=role)
    resource: dict[str, Any] = config.identities()[0].node_resource()
    return resource


def _leaf(err: BaseException) -> BaseException:
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    return err
