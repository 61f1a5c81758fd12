"""``kubeless up``: a whole cluster on this machine in one foreground command.

Like ``nomad agent -dev``: a single-member etcd whose data dir is in the
state dir (reused when the etcd an earlier ``up`` left behind still runs),
serving https:// and requiring client certificates from the cluster CA
(``kubeless_cli.up_tls``: the CA and etcd's certificates are made first; a
state dir whose etcd ran plain stays plain, ``--insecure`` makes a plain one),
then ``kubeless init``'s logic (a cluster record, a root CA, join tokens;
the node restarts from the state dir next time), then this host as a
manager: its agent and its controllers. The runtime is docker when a
Docker Engine answers, else process, and ``up`` says which. With
``--apply FILE`` it applies manifests once the node is ready, at every start;
with ``--apply-once FILE`` only when it made the cluster (``make up`` applies
manifests/demo.yaml this way: a restart keeps what the user changed). It serves
the agent's and the controllers' Prometheus metrics from its one process on
127.0.0.1:9101 unless told otherwise (``--metrics-port``, ``--metrics-addr``;
a state dir keeps the last ones given), and prints the URL. Ctrl-C stops everything: the agent
marks its heartbeat stopped (not revoked: containers keep running and the
node stays ready), the controllers resign, then the etcd is stopped. The
next ``up`` starts that etcd again (which extends the leases it kept), and
its agent takes the heartbeat over at once and adopts every container.
Its controllers serve the read-only dashboard on 127.0.0.1 (``--dashboard-port``,
default 8484; 0: none; not kept in the state dir), and ``up`` prints its URL.

    <state-dir>/   etcd/ (data), etcd.pid, etcd.log, up.pid, etcd-pki/ (etcd's
                   certificates), admin/ (the admin identity the banner prints:
                   KUBELESS_CERT_PATH), and the node's state (node.yaml, node-id,
                   ca.key, ca.crt, join-tokens.yaml, tls/, manager-tls/)

The node's agent uses ``tls/``, its controllers and join endpoint
``manager-tls/`` (``kubeless_cli.node_process``); ``up`` itself (making the
cluster, ``--apply``) uses the admin identity.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from controllers import dashboard
from kubeless_cli.cert_expiry import cert_expiry_option
from kubeless_cli.context import CliError, Context, pass_context
from kubeless_cli.flags import flag
from kubeless_cli.node_process import NodeProcess, node_resource, stop_on_signals
from kubeless_cli.node_state import (agent_options, agent_service_options, cluster_call,
                                     explicit_endpoints, join_port_option, metrics_options,
                                     new_node_state, save_init, where)
from kubeless_cli.up_tls import (ADMIN_DIR, ETCD_DATA, ETCD_PKI, Transport, UpTls,
                                 choose_transport, prepare_tls, renew_own_identities)
from kubeless.cluster import ClusterError, NodeState, StateDir, metrics_endpoint
from kubeless.cluster.errors import EtcdElsewhere, EtcdError, EtcdPortTaken
from kubeless.cluster.record import DEFAULT_CERT_EXPIRY
from kubeless.cluster.etcd_server import StateDirEtcd, cmdline, read_pid


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return os.path.join(base, "kubeless-up")


# -- the etcd member ----------------------------------------------------------------

def etcd_error(err: EtcdError, etcd: StateDirEtcd) -> CliError:
    """The launcher's failure, worded for ``up``'s user (its flags, ``make up``)."""
    if isinstance(err, EtcdElsewhere):
        return CliError(f"the etcd of this state dir still runs (pid {err.pid}) on another "
                        f"port than {etcd.member.client_port}: pass its --etcd-port, or stop "
                        f"it (kill {err.pid})")
    if isinstance(err, EtcdPortTaken):
        return CliError(f"another etcd already answers on {etcd.url} (Debian's etcd "
                        "service? `systemctl stop etcd`): stop it, or pick a free port with "
                        "`kubeless up --etcd-port N` (make up UP_ARGS=\"--etcd-port N\")")
    return CliError(str(err))


async def start_etcd(etcd: StateDirEtcd) -> None:
    try:
        await etcd.start(hint="`make up` does")
    except EtcdError as err:
        raise etcd_error(err, etcd) from None


# -- the runtime ----------------------------------------------------------------------

def choose_runtime(asked: str) -> tuple[str, str]:
    """(runtime, why): docker when a Docker Engine answers, else process."""
    if asked != "auto":
        return asked, "as asked with --runtime"
    reason = docker_answers()
    if reason is None:
        return "docker", "a Docker Engine answers (`docker info`)"
    return "process", f"no Docker Engine answers ({reason}); tasks run as local processes"


def docker_answers() -> str | None:
    """None when `docker info` answers, else why not."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        res = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"docker info: {err}"
    if res.returncode != 0:
        return (res.stderr.strip().splitlines() or ["docker info failed"])[-1]
    return None


# -- metrics ------------------------------------------------------------------------

UP_METRICS_PORT = 9101  # the agent's and the controllers' /metrics: one process


def up_metrics(state: StateDir, opts: dict[str, Any]) -> tuple[str, int]:
    """(address, port) of this up's /metrics (port 0: none): the flags given, else the
    state dir's node, else 127.0.0.1:9101."""
    stored = state.load_node() if state.has_node() else None
    port = opts.get("metrics_port")
    if port is None:
        port = stored.metrics_port if stored and stored.metrics_port is not None \
            else UP_METRICS_PORT
    addr = opts.get("metrics_addr") or (stored.metrics_addr if stored else None) \
        or metrics_endpoint.DEFAULT_ADDR
    return addr, port


def check_metrics_port(addr: str, port: int) -> None:
    """A taken metrics port is one line before anything starts."""
    if not port:
        return
    try:
        with socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr.strip("[]"), port))
    except OSError as err:
        raise CliError(f"cannot serve metrics on {metrics_endpoint.host_port(addr, port)}: "
                       f"{err.strerror or err}: pick another with --metrics-port N (make up "
                       "UP_ARGS=\"--metrics-port N\"), or 0 for none") from None


# -- the command ----------------------------------------------------------------------

@click.command()
@click.option("--state-dir", envvar="KUBELESS_UP_DIR", default=default_state_dir,
              show_default="$XDG_STATE_HOME/kubeless-up or ~/.local/state/kubeless-up",
              help="etcd data, its pid and log, and the node's state [env KUBELESS_UP_DIR].")
@click.option("--etcd-port", type=int, default=2379, show_default=True,
              help="etcd's client port on 127.0.0.1 (its peer port is the next one).")
@click.option("--runtime", type=click.Choice(["auto", "docker", "process", "fake"]),
              default="auto", show_default=True,
              help="auto: docker when a Docker Engine answers, else process.")
@click.option("--node-name", help="Node id (default: the hostname as a DNS label).")
@metrics_options(default_port=f"{UP_METRICS_PORT}, or the port the state dir keeps")[0]
@metrics_options()[1]
@click.option("--dashboard-port", type=click.IntRange(0, 65535), envvar=dashboard.PORT_ENV,
              default=dashboard.DEFAULT_PORT, show_default=True,
              help="Serve the read-only web dashboard on 127.0.0.1 at this port (0: none) "
                   f"[env {dashboard.PORT_ENV}].")
@click.option("--apply", "apply_files", multiple=True, type=click.Path(exists=True),
              help="Apply this manifest once the node is ready, at every start (repeatable).")
@click.option("--apply-once", "apply_once", multiple=True, type=click.Path(exists=True),
              help="Apply this manifest once the node is ready, only when this up makes the "
              "cluster (a fresh state dir): a restart keeps the user's changes (repeatable).")
@flag("--insecure",
      help="A new cluster without TLS: plain http etcd, no client certificates.")
@join_port_option()
@cert_expiry_option()
@agent_service_options()[0]
@agent_service_options()[1]
@agent_service_options()[2]
@pass_context
def up(ctx: Context, /, state_dir: str, etcd_port: int, runtime: str, node_name: str | None,
       metrics_port: int | None, metrics_addr: str | None, dashboard_port: int,
       apply_files: tuple[str, ...], apply_once: tuple[str, ...], insecure: bool,
       join_port: int | None, cert_expiry: float | None, **agent: Any) -> None:
    """Run a one-node cluster on this machine in the foreground: etcd, controllers, agent.

    etcd listens on 127.0.0.1 only, over TLS with client certificates from the
    cluster CA; the banner prints the admin identity to use it with. Ctrl-C
    stops all of it, etcd included; the next `kubeless up` with the same
    --state-dir finds the same cluster.
    """
    state = StateDir(state_dir)
    cluster_call(state.ensure)
    transport = choose_transport(etcd_certs=(state.path / ETCD_PKI).is_dir(),
                                 etcd_data=(state.path / ETCD_DATA).is_dir(),
                                 insecure=insecure, state=str(state))
    given = explicit_endpoints(ctx)
    url = f"{'https' if transport.tls else 'http'}://127.0.0.1:{etcd_port}"
    if given and given.rstrip("/") != url:
        click.echo(f"warning: kubeless up runs its own etcd at {url}; --endpoints/"
                   f"KUBELESS_ENDPOINTS ({given}) is not used", err=True)
    _ignore_cert_path(state, transport)
    opts = {"node_name": node_name, "metrics_port": metrics_port, "metrics_addr": metrics_addr,
            "join_port": join_port, "cert_expiry": cert_expiry, **agent}
    agent_options(opts)  # a mistake is one line, before anything starts
    check_metrics_port(*up_metrics(state, opts))
    try:
        asyncio.run(_up(replace(ctx, endpoints=url), state, etcd_port, runtime, opts,
                        Applies(apply_files, apply_once), transport, dashboard_port))
    except KeyboardInterrupt:
        pass


def _ignore_cert_path(state: StateDir, transport: Transport) -> None:
    """``up`` chooses every identity itself (its controllers, ``--apply``): a
    KUBELESS_CERT_PATH left exported from another cluster must not reach them (its
    controllers read the environment), so it is dropped from ours, with a warning
    unless it names up's own admin identity."""
    from kubeless.store.tls import CERT_PATH_ENV

    given = os.environ.pop(CERT_PATH_ENV, None)
    ours = str(state.path / ADMIN_DIR) if transport.tls else None
    if given and str(Path(given).expanduser().absolute()) != ours:
        click.echo(f"warning: kubeless up uses its own identities; {CERT_PATH_ENV} "
                   f"({given}) is not used", err=True)


async def _up(ctx: Context, state: StateDir, port: int, runtime: str, opts: dict[str, Any],
              applies: Applies, transport: Transport, dashboard_port: int) -> None:
    stop = asyncio.Event()
    with stop_on_signals(stop):
        await _run(ctx, state, port, runtime, opts, applies, transport, dashboard_port, stop)


async def _run(ctx: Context, state: StateDir, port: int, runtime: str, opts: dict[str, Any],
               applies: Applies, transport: Transport, dashboard_port: int,
               stop: asyncio.Event) -> None:
    _claim(state.path)
    etcd: StateDirEtcd | None = None
    try:
        tls = cluster_call(lambda: prepare_tls(state)) if transport.tls else None
        etcd = StateDirEtcd(state.path, port, name="kubeless-up",
                            tls=tls.etcd if tls is not None else None)
        await _until(stop, start_etcd(etcd))
        name, why = choose_runtime(runtime)
        node, made = await _until(stop, _cluster(ctx, state, name, opts, tls))
        _banner(state, etcd, node, name, why, made, tls, transport.warning)
        if dashboard_port:
            click.echo(f"dashboard: {dashboard_url(dashboard_port)} (read-only)")
        click.echo(f"{metrics_line(node)}\n")
        for path in applies.skipped(made):
            click.echo(f"not applying {path} (--apply-once): the cluster comes from the state "
                       "dir, as it was left", err=True)

        async def apply_all() -> None:
            for path in applies.on_start(made):
                await apply_manifest(node, path, tls)

        if not stop.is_set():
            await NodeProcess(node, state, manager=True, on_ready=apply_all,
                              dashboard_port=dashboard_port).run(stop)
    except _Stopped:
        pass
    finally:
        if etcd is not None and etcd.pid is not None:
            click.echo(f"stopping etcd (pid {etcd.pid})", err=True)
            etcd.stop()
        (state.path / "up.pid").unlink(missing_ok=True)


def dashboard_url(port: int) -> str:
    """Where the controllers ``up`` runs serve their dashboard."""
    return f"http://{dashboard.DEFAULT_ADDRESS}:{port}/"


@dataclass(frozen=True)
class Applies:
    """Manifests to apply once the node is ready: ``always`` at every start (``--apply``),
    ``once`` only when this ``up`` made the cluster (``--apply-once``; ``make up``'s demo)."""

    always: tuple[str, ...] = ()
    once: tuple[str, ...] = ()

    def on_start(self, made: bool) -> tuple[str, ...]:
        return self.always + (self.once if made else ())

    def skipped(self, made: bool) -> tuple[str, ...]:
        return () if made else self.once


class _Stopped(Exception):
    """Ctrl-C arrived while starting."""


async def _until(stop: asyncio.Event, coro: Any) -> Any:
    """Await ``coro`` unless ``stop`` is set first."""
    work = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not work.done():
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        raise _Stopped
    return work.result()


def _claim(state: Path) -> None:
    """One ``up`` per state dir: refuse when another still runs."""
    pid_file = state / "up.pid"
    other = read_pid(pid_file)
    if other is not None and other != os.getpid() and any("up" == a for a in cmdline(other)):
        raise CliError(f"kubeless up already runs from {state} (pid {other})")
    pid_file.write_text(f"{os.getpid()}\n")


async def _cluster(ctx: Context, state: StateDir, runtime: str, opts: dict[str, Any],
                   tls: UpTls | None) -> tuple[NodeState, bool]:
    """This machine's node: the one in the state dir, or the first of a new cluster
    (made with the admin identity and the CA ``prepare_tls`` made, under TLS)."""
    from kubeless import store
    from kubeless.cluster import access, bootstrap

    here = where(ctx.endpoints, ctx.prefix)
    rstore = store.connect(ctx.endpoints, ctx.prefix, retry_for=10,
                           tls=tls.admin if tls is not None else None)
    try:
        if state.has_node():
            stored = state.load_node()
            addr, port = up_metrics(state, opts)
            node = replace(stored, runtime=runtime, endpoints=ctx.endpoints, prefix=ctx.prefix,
                           agent_options={**stored.agent_options, **agent_options(opts)},
                           join_port=stored.join_port if opts.get("join_port") is None
                           else opts["join_port"], metrics_port=port, metrics_addr=addr)
            found = await bootstrap.read_record(rstore)
            if found is not None:
                await bootstrap.resume_node(rstore, state, node, here)
                if tls is not None:
                    renew_own_identities(state, node.node_id, node.advertise_addr,
                                         lifetime=found.record.cert_expiry)
                state.save_node(node)
                if tls is not None:
                    await access.enable_for_node(rstore.etcd, rstore.keys, node.node_id)
                return node, False
            # the etcd data was wiped: a new cluster, this state dir's node with it
        addr, port = up_metrics(state, opts)
        node = new_node_state(ctx, ctx.endpoints, {**opts, "runtime": runtime,
                                                   "advertise_addr": "127.0.0.1",
                                                   "metrics_port": port, "metrics_addr": addr},
                              "manager")
        record, tokens = await bootstrap.create_cluster(
            rstore, state, node_resource(node, "manager"), here,
            ca=tls.ca if tls is not None else None,
            cert_expiry=opts.get("cert_expiry") or DEFAULT_CERT_EXPIRY)
        node = replace(node, cluster_id=record.id, joined_at=record.created_at)
        save_init(state, node, tokens)
        from kubeless.cluster.join_server import issue_own_identities

        issue_own_identities(state, node.node_id, node.advertise_addr, "manager",
                             record.cert_expiry)
        if tls is not None:
            await access.enable_for_node(rstore.etcd, rstore.keys, node.node_id)
        return node, True
    except ClusterError as err:
        raise CliError(str(err)) from None
    finally:
        await rstore.etcd.close()


def _banner(state: StateDir, etcd: StateDirEtcd, node: NodeState, runtime: str, why: str,
            made: bool, tls: UpTls | None, warning: str | None) -> None:
    how = f"reused, pid {etcd.pid}" if etcd.reused else f"started, pid {etcd.pid}"
    security = ("TLS, client certificates from the cluster CA" if tls is not None
                else "plain http, NO TLS")
    click.echo(
        f"kubeless up: a one-node cluster on this machine\n"
        f"  etcd       {etcd.url} ({how}; data in {etcd.data_dir}, log {etcd.log_file})\n"
        f"  security   {security}\n"
        f"  runtime    {runtime}: {why}\n"
        f"  node       {node.node_id} (manager: agent and controllers)\n"
        f"  cluster    {node.cluster_id} ({'new' if made else 'from the state dir'})\n"
        f"  state dir  {state}\n"
        + (f"  join       {node.advertise_addr}:{node.join_port} (the join endpoint; "
           "join-token prints the command)\n" if node.join_port else "")
        + "\n"
        + (f"{warning}\n\n" if warning else "")
        + f"Use it from another terminal:\n"
        f"  export KUBELESS_ENDPOINTS={etcd.url}\n"
        + (f"  export KUBELESS_CERT_PATH={tls.admin_dir}\n" if tls is not None else "")
        + f"  kubeless get nodes\n"
        f"  kubeless apply -f manifests/demo.yaml\n"
        f"  kubeless get services\n"
        f"  kubeless service ps web\n"
        f"A worker on this machine: kubeless join-token worker --state-dir {state}\n"
        f"Ctrl-C stops the agent, the controllers and etcd; running containers are left\n"
        f"for the next `kubeless up` to adopt (`kubeless service rm NAME` removes them).\n")


def metrics_line(node: NodeState) -> str:
    """The banner's ``metrics: URL`` line (``none`` with --metrics-port 0)."""
    if not node.metrics_port:
        return "metrics: none (--metrics-port 0)"
    addr = node.metrics_addr or metrics_endpoint.DEFAULT_ADDR
    shown = metrics_endpoint.scrape_address(addr, node.metrics_port, node.advertise_addr)
    where = ("on loopback only" if addr.startswith("127.") or addr in ("::1", "[::1]")
             else f"listening on {addr}")
    return (f"metrics: http://{shown}/metrics (the agent's and the controllers', one process; "
            f"http without TLS, {where}; Prometheus: `kubeless prometheus targets`, "
            "manifests/prometheus/)")


async def apply_manifest(node: NodeState, path: str, tls: UpTls | None) -> None:
    """``kubeless apply -f path`` against this cluster, its output on ours; with the
    admin identity under TLS."""
    identity = ["--cacert", str(tls.admin.cacert), "--cert", str(tls.admin.cert),
                "--key", str(tls.admin.key)] if tls is not None else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubeless_cli.main", "--endpoints", node.endpoints,
        "--prefix", node.prefix, *identity, "apply", "-f", path, stdin=subprocess.DEVNULL)
    code = await proc.wait()
    if code != 0:
        click.echo(f"warning: applying {path} failed (exit {code}); the cluster keeps "
                   "running", err=True)
