"""``kubeless-controllers`` (``python -m controllers``): run controllers against etcd.

Any number of these processes may run; each controller elects one leader
among them. The process also keeps ``managers/<identity>`` bound to a
lease, so ``node ls`` can say which managers' controllers are alive
(Reachable) and which one leads; its value says where the process serves
``/metrics`` (``kubeless.cluster.metrics_endpoint``: ``--metrics-port``, on
``--metrics-addr``, 127.0.0.1 unless told). ``--identity`` defaults to this host's
node name, tying the process to its node. ``--ca-key`` gives it the cluster
CA's key, from which it derives the cluster's secrets key: the secrets
controller then delivers secrets to nodes (configs it delivers without).
``--dashboard-port`` (default 8484, on ``--dashboard-address`` 127.0.0.1; 0:
none) serves the read-only web dashboard (``controllers.dashboard``) from the
process's view: every replica may, leader or not.
``--autoscale-period`` is how often the autoscaler evaluates every autoscaled
service (it also does whenever a load report, a task or the service changes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence

from kubeless import store
from kubeless.aio import guard
from kubeless.cluster import metrics_endpoint, secrets_key
from kubeless.cluster.errors import CAError
from kubeless.log_setup import configure_logging
from kubeless.api.names import dns_label
from kubeless.store import Compare, KeptLease, Put, StoreError
from kubeless.store.events import ttl_seconds

from controllers import dashboard
from controllers.autoscaler.controller import DEFAULT_PERIOD, AutoscalerController
from controllers.dashboard import app as dashboard_app
from controllers.endpoints.controller import EndpointsController
from controllers.framework import Controller, ControllerRunner
from controllers.health.controller import HealthController
from controllers.metrics import register_view
from controllers.replication.controller import ReplicationController
from controllers.rollout.controller import RolloutController
from controllers.scheduler.controller import SchedulerController
from controllers.secrets.controller import SecretsController
from controllers.view import ClusterView

log = logging.getLogger("kubeless.controllers")

# Each is made with the store and the process's one ClusterView (``assemble`` gives the
# secrets controller the cluster's secrets key too, when the process holds the CA key,
# and the autoscaler its period).
CONTROLLERS: dict[str, Callable[[store.ResourceStore, ClusterView], Controller]] = {
    "replication": ReplicationController,
    "scheduler": SchedulerController,
    "health": HealthController,
    "rollout": RolloutController,
    "endpoints": EndpointsController,
    "secrets": SecretsController,
    "autoscaler": AutoscalerController,
}


def default_identity() -> str:
    """The node name of this host: KUBELESS_NODE, the agent's state dir, else the hostname."""
    if os.environ.get("KUBELESS_NODE"):
        return os.environ["KUBELESS_NODE"]
    state_dir = os.environ.get("KUBELESS_STATE_DIR", "/var/lib/kubeless")
    with contextlib.suppress(OSError):
        with open(os.path.join(state_dir, "node-id")) as f:
            node = f.read().strip()
            if node:
                return node
    return dns_label(socket.gethostname())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kubeless-controllers", description=__doc__.splitlines()[0])
    p.add_argument("--endpoints", default=os.environ.get("KUBELESS_ENDPOINTS",
                                                         store.DEFAULT_ENDPOINT),
                   help="etcd endpoints, comma-separated [env KUBELESS_ENDPOINTS]")
    p.add_argument("--prefix", default=os.environ.get("KUBELESS_PREFIX", store.DEFAULT_PREFIX),
                   help="key prefix of the cluster [env KUBELESS_PREFIX]")
    p.add_argument("--controllers", default=",".join(CONTROLLERS),
                   help=f"which to run, comma-separated (default: {','.join(CONTROLLERS)})")
    p.add_argument("--identity", default=None, help="this process's name (default: node name)")
    p.add_argument("--ca-key", default=os.environ.get("KUBELESS_CA_KEY"),
                   help="the cluster CA's key (PEM): the secrets key derives from it; "
                        "without it no secret is delivered [env KUBELESS_CA_KEY]")
    p.add_argument("--autoscale-period", type=float, default=DEFAULT_PERIOD,
                   help="seconds between the autoscaler's evaluations of every autoscaled "
                        f"service (default {DEFAULT_PERIOD:g})")
    p.add_argument("--lease-ttl", type=int, default=5, help="leader lease TTL in seconds")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus /metrics on this port (plain http; default: none)")
    p.add_argument("--metrics-addr", default=metrics_endpoint.DEFAULT_ADDR,
                   help="listen for /metrics on this address (default 127.0.0.1; 0.0.0.0: "
                        "every address, advertised as this host's name)")
    p.add_argument("--events-ttl", default="1h",
                   help="how long an Event lives after its last occurrence (default 1h; "
                        "0s: record none)")
    p.add_argument("--dashboard-port", type=int, default=dashboard.port_from_env(os.environ),
                   help="serve the read-only web dashboard on this port (default "
                        f"{dashboard.DEFAULT_PORT}; 0: none) [env {dashboard.PORT_ENV}]")
    p.add_argument("--dashboard-address", default=dashboard.DEFAULT_ADDRESS,
                   help="address for the dashboard (default 127.0.0.1; it has no "
                        "authentication: whoever reaches it reads the cluster's state)")
    p.add_argument("--log-level", default="INFO")
    store.add_tls_arguments(p)
    args = p.parse_args(argv)
    names = [n.strip() for n in args.controllers.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTROLLERS]
    if unknown or not names:
        p.error(f"unknown controller {unknown[0] if unknown else '(none)'}; "
                f"known: {', '.join(CONTROLLERS)}")
    args.controller_names = names
    if not 0 <= args.dashboard_port <= 65535:
        p.error("--dashboard-port must be 0 (no dashboard) to 65535")
    if not args.autoscale_period > 0:
        p.error("--autoscale-period must be more than 0 seconds")
    if args.lease_ttl < 2:
        p.error("--lease-ttl must be at least 2 seconds")
    try:
        args.events_ttl = ttl_seconds(args.events_ttl)
    except ValueError as err:
        p.error(str(err))
    args.cluster_key = None
    if args.ca_key:
        try:
            args.cluster_key = secrets_key.load(args.ca_key)
        except CAError as err:
            p.error(str(err))
    try:
        args.tls = store.TlsConfig.from_env(os.environ, args.cacert, args.cert, args.key)
    except store.TlsError as err:
        p.error(str(err))
    return args


async def keep_manager_key(etcd: store.Etcd, key: str, identity: str, ttl: int,
                           metrics: str | None = None) -> None:
    """Keep ``managers/<identity>`` alive on a lease (its value: the identity and where
    this process serves /metrics); put it again after a loss."""
    value = metrics_endpoint.manager_value(identity, metrics)
    while True:
        try:
            async with KeptLease(etcd, ttl) as lease:
                await etcd.txn([Compare(key, "create", "==", 0)],
                               [Put(key, value, lease.id)])
                await lease.lost.wait()
        except StoreError as err:
            log.warning("manager key: %s; retrying", err)
        await asyncio.sleep(1)


def assemble(rstore: store.ResourceStore, names: Sequence[str],
             cluster_key: secrets_key.ClusterSecretsKey | None = None,
             view: ClusterView | None = None,
             autoscale_period: float = DEFAULT_PERIOD) -> list[Controller]:
    """The named controllers, sharing one ClusterView (``view``, else a new one; its
    metrics registered); the secrets controller with ``cluster_key`` (None: it
    delivers configs only), the autoscaler with its period."""
    view = view if view is not None else ClusterView(rstore)
    register_view(view)

    def make(name: str) -> Controller:
        if name == "secrets":
            return SecretsController(rstore, view, cluster_key)
        if name == "autoscaler":
            return AutoscalerController(rstore, view, autoscale_period)
        return CONTROLLERS[name](rstore, view)

    return [make(n) for n in names]


def scrape_address(args: argparse.Namespace) -> str | None:
    """Where Prometheus scrapes this process (None: no --metrics-port). A manager's node
    process, which serves the port itself, passes the address to say."""
    if args.metrics_port is None:
        return None
    return metrics_endpoint.scrape_address(args.metrics_addr, args.metrics_port,
                                           socket.gethostname())


async def run(args: argparse.Namespace) -> None:
    rstore = store.connect(args.endpoints, args.prefix, tls=args.tls)
    identity = args.identity or default_identity()
    view = ClusterView(rstore)
    controllers = assemble(rstore, args.controller_names, args.cluster_key, view,
                           args.autoscale_period)
    runner = ControllerRunner(rstore, controllers, identity, lease_ttl=args.lease_ttl,
                              events_ttl=args.events_ttl)
    log.info("controllers %s starting as %s on %s; %s", ",".join(args.controller_names),
             identity, args.endpoints,
             f"cluster secrets key {args.cluster_key.key_id}" if args.cluster_key
             else "no CA key (--ca-key): configs are delivered, secrets are not")
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(keep_manager_key(rstore.etcd, rstore.keys.manager(identity), identity,
                                            args.lease_ttl, scrape_address(args)),
                           name="manager key")
            tg.create_task(runner.run(), name="runner")
            if args.tls is not None:  # renewed certificates: new connections present them
                tg.create_task(rstore.etcd.follow_tls_files(), name="tls files")
            if args.dashboard_port:  # it reads the view the runner's informers fill
                tg.create_task(guard("dashboard", dashboard_app.serve(
                    view, args.dashboard_address, args.dashboard_port), log), name="dashboard")
    finally:
        await rstore.etcd.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        store.check_tls(store.parse_endpoints(args.endpoints), args.tls)
    except (store.BadEndpoint, store.TlsError) as err:
        sys.exit(f"error: {err}")
    if args.metrics_port is not None:
        try:
            metrics_endpoint.serve(args.metrics_addr, args.metrics_port, "controllers")
        except metrics_endpoint.MetricsBindError as err:
            sys.exit(f"error: {err}")

    async def serve() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        with contextlib.suppress(asyncio.CancelledError):
            await run(args)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
