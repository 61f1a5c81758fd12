"""``kubeless up``: a whole cluster on this machine in one foreground command.

Like ``nomad agent -dev``: a single-member etcd whose data dir is in the
state dir (reused when the etcd an earlier ``up`` left behind still runs),
then ``kubeless init``'s logic (a cluster record, a root CA, join tokens;
the node restarts from the state dir next time), then this host as a
manager: its agent and its controllers. The runtime is docker when a
Docker Engine answers, else process, and ``up`` says which. With
``--apply FILE`` it applies manifests once the node is ready (``make up``
applies manifests/demo.yaml this way). Ctrl-C stops everything: the agent
marks its heartbeat stopped (not revoked: containers keep running and the
node stays ready), the controllers resign, then the etcd is stopped. The
next ``up`` starts that etcd again (which extends the leases it kept), and
its agent takes the heartbeat over at once and adopts every container.

    <state-dir>/   etcd/ (data), etcd.pid, etcd.log, up.pid, and the node's
                   state (node.yaml, node-id, ca.key, join-tokens.yaml)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from kubeless_cli.cluster_cmds import (cluster_call, explicit_endpoints,
                                       new_node_state, node_resource, run_node, save_init, where,
                                       agent_options, agent_service_options)
from kubeless_cli.context import CliError, Context, pass_context
from kubeless.cluster import ClusterError, NodeState, StateDir

ETCD_BIN = os.environ.get("KUBELESS_ETCD_BIN", "/usr/bin/etcd")


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return os.path.join(base, "kubeless-up")


# -- the etcd member ----------------------------------------------------------------

class DevEtcd:
    """The single etcd member of ``up``: started here, or found still running from before."""

    def __init__(self, state: Path, port: int) -> None:
        self.data_dir = state / "etcd"
        self.pid_file, self.log_file = state / "etcd.pid", state / "etcd.log"
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.pid: int | None = None
        self.reused = False

    def _cmd(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.port + 1}"
        return [ETCD_BIN, "--name", "kubeless-up", "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"kubeless-up={peer}", "--log-level", "warn"]

    def leftover(self) -> int | None:
        """The pid of an etcd an earlier ``up`` started on this data dir, if it still runs."""
        pid = _read_pid(self.pid_file)
        if pid is None:
            return None
        args = _cmdline(pid)
        if not args or str(self.data_dir) not in args:
            return None
        if self.url not in args:
            raise CliError(f"the etcd of this state dir still runs (pid {pid}) on another port "
                           f"than {self.port}: pass its --etcd-port, or stop it (kill {pid})")
        return pid

    async def start(self, deadline: float = 30.0) -> None:
        pid = self.leftover()
        if pid is not None and await self.healthy():
            self.pid, self.reused = pid, True
            return
        if await self.healthy():
            raise CliError(f"another etcd already answers on {self.url} (Debian's etcd "
                           "service? `systemctl stop etcd`): stop it, or pick a free port with "
                           "`kubeless up --etcd-port N` (make up UP_ARGS=\"--etcd-port N\")")
        if not os.access(ETCD_BIN, os.X_OK):
            raise CliError(f"{ETCD_BIN} is missing: install Debian's etcd-server "
                           "(`make up` does)")
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(self._cmd(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                    start_new_session=True)  # Ctrl-C reaches us, not etcd
        self.pid = proc.pid
        self.pid_file.write_text(f"{proc.pid}\n")
        end = time.monotonic() + deadline
        while not await self.healthy():
            if proc.poll() is not None:
                raise CliError(f"etcd exited (code {proc.returncode}); last lines of "
                               f"{self.log_file}:\n{_tail(self.log_file)}")
            if time.monotonic() > end:
                self.stop()
                raise CliError(f"etcd did not answer on {self.url} within {deadline:.0f}s; "
                               f"see {self.log_file}")
            await asyncio.sleep(0.1)

    async def healthy(self) -> bool:
        return await asyncio.to_thread(_health, self.url)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; forget the pid file."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
            end = time.monotonic() + grace
            while _alive(self.pid) and time.monotonic() < end:
                time.sleep(0.05)
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        self.pid = None


def _health(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
            return b'"true"' in r.read()
    except (OSError, ValueError):
        return False


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie child of ours is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


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
@click.option("--metrics-port", type=int, help="Serve Prometheus /metrics on this port.")
@click.option("--apply", "apply_files", multiple=True, type=click.Path(exists=True),
              help="Apply this manifest once the node is ready (repeatable).")
@agent_service_options()[0]
@agent_service_options()[1]
@agent_service_options()[2]
@pass_context
def up(ctx: Context, /, state_dir: str, etcd_port: int, runtime: str, node_name: str | None,
       metrics_port: int | None, apply_files: tuple[str, ...], **agent: Any) -> None:
    """Run a one-node cluster on this machine in the foreground: etcd, controllers, agent.

    etcd listens on 127.0.0.1 only. Ctrl-C stops all of it, etcd included;
    the next `kubeless up` with the same --state-dir finds the same cluster.
    """
    state = StateDir(state_dir)
    cluster_call(state.ensure)
    given = explicit_endpoints(ctx)
    url = f"http://127.0.0.1:{etcd_port}"
    if given and given.rstrip("/") != url:
        click.echo(f"warning: kubeless up runs its own etcd at {url}; --endpoints/"
                   f"KUBELESS_ENDPOINTS ({given}) is not used", err=True)
    opts = {"node_name": node_name, "metrics_port": metrics_port, **agent}
    agent_options(opts)  # a mistake is one line, before anything starts
    try:
        asyncio.run(_up(replace(ctx, endpoints=url), state, etcd_port, runtime, opts,
                        apply_files))
    except KeyboardInterrupt:
        pass


async def _up(ctx: Context, state: StateDir, port: int, runtime: str, opts: dict[str, Any],
              apply_files: tuple[str, ...]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _claim(state.path)
    etcd = DevEtcd(state.path, port)
    try:
        await _until(stop, etcd.start())
        name, why = choose_runtime(runtime)
        node, made = await _until(stop, _cluster(ctx, state, name, opts))
        _banner(state, etcd, node, name, why, made)

        async def apply_all() -> None:
            for path in apply_files:
                await apply_manifest(node, path)

        if not stop.is_set():
            await run_node(node, state, manager=True, stop=stop, on_ready=apply_all)
    except _Stopped:
        pass
    finally:
        if etcd.pid is not None:
            click.echo(f"stopping etcd (pid {etcd.pid})", err=True)
            etcd.stop()
        (state.path / "up.pid").unlink(missing_ok=True)


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
    other = _read_pid(pid_file)
    if other is not None and other != os.getpid() and any("up" == a for a in _cmdline(other)):
        raise CliError(f"kubeless up already runs from {state} (pid {other})")
    pid_file.write_text(f"{os.getpid()}\n")


async def _cluster(ctx: Context, state: StateDir, runtime: str,
                   opts: dict[str, Any]) -> tuple[NodeState, bool]:
    """This machine's node: the one in the state dir, or the first of a new cluster."""
    from kubeless import store
    from kubeless.cluster import bootstrap

    here = where(ctx.endpoints, ctx.prefix)
    rstore = store.connect(ctx.endpoints, ctx.prefix, retry_for=10)
    try:
        if state.has_node():
            stored = state.load_node()
            node = replace(stored, runtime=runtime, endpoints=ctx.endpoints, prefix=ctx.prefix,
                           agent_options={**stored.agent_options, **agent_options(opts)})
            if await bootstrap.read_record(rstore) is not None:
                await bootstrap.resume_node(rstore, state, node, here)
                state.save_node(node)
                return node, False
            # the etcd data was wiped: a new cluster, this state dir's node with it
        node = new_node_state(ctx, ctx.endpoints, {**opts, "runtime": runtime,
                                                   "advertise_addr": "127.0.0.1"}, "manager")
        record, tokens = await bootstrap.create_cluster(rstore, state,
                                                        node_resource(node, "manager"), here)
        node = replace(node, cluster_id=record.id, joined_at=record.created_at)
        save_init(state, node, tokens)
        return node, True
    except ClusterError as err:
        raise CliError(str(err)) from None
    finally:
        await rstore.etcd.close()


def _banner(state: StateDir, etcd: DevEtcd, node: NodeState, runtime: str, why: str,
            made: bool) -> None:
    how = f"reused, pid {etcd.pid}" if etcd.reused else f"started, pid {etcd.pid}"
    click.echo(
        f"kubeless up: a one-node cluster on this machine\n"
        f"  etcd       {etcd.url} ({how}; data in {etcd.data_dir}, log {etcd.log_file})\n"
        f"  runtime    {runtime}: {why}\n"
        f"  node       {node.node_id} (manager: agent and controllers)\n"
        f"  cluster    {node.cluster_id} ({'new' if made else 'from the state dir'})\n"
        f"  state dir  {state}\n\n"
        f"Use it from another terminal:\n"
        f"  export KUBELESS_ENDPOINTS={etcd.url}\n"
        f"  kubeless get nodes\n"
        f"  kubeless apply -f manifests/demo.yaml\n"
        f"  kubeless get services\n"
        f"  kubeless service ps web\n"
        f"A worker on this machine: kubeless join-token worker --state-dir {state}\n"
        f"Ctrl-C stops the agent, the controllers and etcd; running containers are left\n"
        f"for the next `kubeless up` to adopt (`kubeless service rm NAME` removes them).\n")


async def apply_manifest(node: NodeState, path: str) -> None:
    """``kubeless apply -f path`` against this cluster, its output on ours."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubeless_cli.main", "--endpoints", node.endpoints,
        "--prefix", node.prefix, "apply", "-f", path, stdin=subprocess.DEVNULL)
    code = await proc.wait()
    if code != 0:
        click.echo(f"warning: applying {path} failed (exit {code}); the cluster keeps "
                   "running", err=True)
