"""Control-plane figures (issue 3): 1,000 hollow nodes, 10,000 tasks, a 100-node loss.

Setup: one etcd member (kubeless/cluster/etcd_server.py, limits raised, see
``ETCD_ARGS``), the controllers as a subprocess (``python -m controllers
--lease-ttl 5``) and 1,000 hollow nodes as 10 agent subprocesses of 100
(``python -m kubeless_agent --runtime fake --hollow-nodes 100``), so that
killing one process kills 100 nodes. Then 20 services x 500 replicas are
written in one ResourceStore transaction.

The bench watches the whole cluster prefix itself (raw values, decoding
only task keys) to time: the placement rate (first task created to the
10,000th assigned), apply to all 10,000 reported running, and after a
SIGKILL of one agent process, the time until every slot again has a running
task on a live node. Peak memory is VmHWM from /proc/<pid>/status.

Targets: placement >= 1,500 tasks/s; all running < 15 s; replacement of
100 killed nodes' tasks < lease TTL + 3 s; controllers peak < 300 MB.

Transport (issues 14, 15): the whole run is done three times, over plain
http://, over TLS (etcd with https client URLs and ``--client-cert-auth``; the
controllers present a ``manager:bench`` identity, each agent process a
``node:g<k>`` one, the bench's own watch ``admin:bench``) and over TLS with
etcd's auth on, as users run it (the controllers and the bench root, each agent
process its hollow group's role ``hollow:g<k>``: its nodes' keys, a node's
reads; ``kubeless.cluster.permissions``). The figures are printed side by side
with ratios: TLS against plain, TLS+auth against TLS and against plain.
``KUBELESS_BENCH_TRANSPORT=plain``, ``tls`` or ``auth`` runs one, ``both`` plain
and TLS, ``all`` (the default) the three. In every run the bench registers the
hollow nodes' Nodes itself before their agents start, as the join endpoint does
(a node's role may not write ``spec/``), so the setups are the same.

Environment: ``KUBELESS_BENCH_PROFILE=DIR`` runs the controllers and the
second agent under cProfile, one profile per phase (DIR/controllers-setup.prof,
-apply.prof, -kill.prof; DIR/agent-g1-*.prof).
``KUBELESS_BENCH_SCALE=0.1`` scales nodes and tasks down (a quick check).
``KUBELESS_BENCH_CONTROLLERS=replication,scheduler,health`` runs only those controllers
(to see what each costs; the default is all of them).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubeless import store
from kubeless.store import Etcd
from kubeless.cluster.etcd_server import EtcdCluster, free_port
from kubeless.cluster.identities import admin, manager, node
from kubeless.store import TlsConfig

PREFIX = "/bench-cp"
LEASE_TTL = 5
AGENT_PROCESSES = 10
# Raised etcd limits: room for a large keyspace and its history (no auto-compaction).
ETCD_ARGS = ("--quota-backend-bytes", str(8 * 1024 ** 3), "--max-txn-ops", "1024",
             "--max-request-bytes", str(16 * 1024 ** 2))

SCALE = float(os.environ.get("KUBELESS_BENCH_SCALE", "1"))
NODES_PER_PROCESS = max(1, round(100 * SCALE))
SERVICES = 20
REPLICAS = max(1, round(500 * SCALE))
TASKS = SERVICES * REPLICAS
NODES = AGENT_PROCESSES * NODES_PER_PROCESS

SETUP_TIMEOUT = 120.0
RUNNING_TIMEOUT = 180.0
REPLACE_TIMEOUT = 120.0


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def _spawn(name: str, args: list[str], logdir: Path, env: dict[str, str]) -> Proc:
    log = logdir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                 cwd=str(Path(__file__).resolve().parent.parent))
    return Proc(name, popen, log)


# Runs a module under cProfile; each SIGUSR2 dumps the profile so far to
# <stem>-<phase>.prof (phases: setup, apply, kill) and starts a new one.
_PROFILED = """
import cProfile, runpy, signal, sys
stem, module = sys.argv[1], sys.argv[2]
phases = iter(("setup", "apply", "kill"))
prof = cProfile.Profile()
def dump(*_):
    prof.disable()
    prof.dump_stats(f"{stem}-{next(phases, 'more')}.prof")
    prof.clear()
    prof.enable()
signal.signal(signal.SIGUSR2, dump)
sys.argv = [module, *sys.argv[3:]]
prof.enable()
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def _python(module: str, profile_to: Path | None) -> list[str]:
    if profile_to is None or os.environ.get("KUBELESS_BENCH_PYSPY"):
        return [sys.executable, "-m", module]
    return [sys.executable, "-c", _PROFILED, str(profile_to), module]


def _dump_profiles(profiled: list[Proc]) -> None:
    """Ask the profiled processes to dump their profile of the phase that ended."""
    for proc in profiled:
        if proc.alive():
            proc.popen.send_signal(signal.SIGUSR2)


def _end(proc: Proc) -> None:
    """End one process by its PID: SIGTERM, then SIGKILL after a grace."""
    if not proc.alive():
        return
    proc.popen.send_signal(signal.SIGTERM)
    try:
        proc.popen.wait(10)
    except subprocess.TimeoutExpired:
        proc.popen.kill()
        proc.popen.wait(5)


def _stop_spies(spies: list[Proc]) -> None:
    for spy in spies:
        if spy.alive():
            spy.popen.send_signal(signal.SIGINT)
            try:
                spy.popen.wait(20)
            except subprocess.TimeoutExpired:
                spy.popen.kill()
                spy.popen.wait(5)


def _spies(profile_dir: Path | None, phase: str, targets: list[Proc], logdir: Path,
           env: dict[str, str]) -> list[Proc]:
    """``KUBELESS_BENCH_PYSPY=1`` (with KUBELESS_BENCH_PROFILE=DIR): sample the controllers
    and one agent with py-spy (installed by hand, not a project dependency)."""
    if not (profile_dir and os.environ.get("KUBELESS_BENCH_PYSPY")):
        return []
    spy = Path(sys.executable).parent / "py-spy"
    return [_spawn(f"py-spy-{phase}-{t.name}", [str(spy), "record", "--pid", str(t.pid), "--rate", "200",
                                        "--format", "raw", "--nonblocking",
                                        "-o", str(profile_dir / f"{phase}-{t.name}.pyspy.txt")],
                   logdir, env) for t in targets]


def vm_hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def scrape_metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
    except OSError:
        return None
    return None


def scrape_reconciles(port: int) -> dict[str, tuple[float, float]]:
    """Per controller: (reconciles, seconds spent in them, awaits included), from /metrics."""
    out: dict[str, list[float]] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    for line in text.splitlines():
        for name, index in (("kubeless_controller_reconcile_duration_seconds_count", 0),
                            ("kubeless_controller_reconcile_duration_seconds_sum", 1)):
            if line.startswith(name + "{"):
                controller = line.split('controller="', 1)[1].split('"', 1)[0]
                out.setdefault(controller, [0.0, 0.0])[index] = float(line.rsplit(" ", 1)[1])
    return {c: (v[0], v[1]) for c, v in out.items()}


def _reconciles_line(before: dict[str, tuple[float, float]],
                     after: dict[str, tuple[float, float]]) -> str:
    parts = []
    for c, (n, secs) in sorted(after.items()):
        n0, s0 = before.get(c, (0.0, 0.0))
        parts.append(f"{c} {n - n0:.0f} ({secs - s0:.1f} s)")
    return "reconciles (count, time in them): " + ", ".join(parts)


def _service(i: int) -> dict[str, Any]:
    return {"apiVersion": "kubeless.io/v1", "kind": "Service",
            "metadata": {"name": f"svc-{i}", "namespace": "default",
                         "labels": {"owner": "bench"}},
            "spec": {"replicas": REPLICAS,
                     "template": {"image": "web:1", "command": ["httpd"],
                                  "args": ["-f", "-p", "80"], "env": {"A": "1"}}}}


@dataclass
class TaskInfo:
    service: str
    slot: int | None
    node: str | None
    desired: str
    state: str | None


@dataclass
class Watcher:
    """What the bench knows of the cluster, from one raw watch of the whole prefix."""

    keys: store.Keyspace
    tasks: dict[str, TaskInfo] = field(default_factory=dict)  # task id -> info
    running: set[tuple[str, str]] = field(default_factory=set)  # (node, task id) reported running
    heartbeats: set[str] = field(default_factory=set)  # nodes with a heartbeat key
    first_task_at: float | None = None
    assigned: set[str] = field(default_factory=set)  # task ids ever seen with a node
    assigned_all_at: float | None = None
    created_all_at: float | None = None
    running_all_at: float | None = None
    events: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.tasks_prefix = self.keys.kind_prefix("Task")
        self.agents_prefix = self.keys.agents_prefix()

    def apply(self, ev: store.WatchEvent, now: float) -> None:
        self.events += 1
        key = ev.kv.key
        if key.startswith(self.tasks_prefix):
            tid = key.rsplit("/", 1)[1]
            if ev.type == "delete":
                self.tasks.pop(tid, None)
                return
            task = json.loads(ev.kv.value)
            spec, status = task.get("spec") or {}, task.get("status") or {}
            if self.first_task_at is None:
                self.first_task_at = now
            info = TaskInfo(spec.get("serviceName", ""), spec.get("slot"), spec.get("nodeName"),
                            spec.get("desiredState", "running"), status.get("state"))
            self.tasks[tid] = info
            if self.created_all_at is None and len(self.tasks) >= TASKS:
                self.created_all_at = now
            if info.node and tid not in self.assigned:
                self.assigned.add(tid)
                if len(self.assigned) >= TASKS and self.assigned_all_at is None:
                    self.assigned_all_at = now
        elif (beat := self.keys.parse_heartbeat(key)) is not None:
            (self.heartbeats.add if ev.type == "put" else self.heartbeats.discard)(beat)
        elif key.startswith(self.agents_prefix):
            node, _, rest = key[len(self.agents_prefix):].partition("/")
            if rest.startswith("tasks/"):
                ref = (node, rest[6:])
                if ev.type == "put" and b'"state":"running"' in ev.kv.value:
                    self.running.add(ref)
                    if len(self.running) >= TASKS and self.running_all_at is None:
                        self.running_all_at = now
                else:
                    self.running.discard(ref)

    def slots_running(self, dead: set[str]) -> int:
        """How many (service, slot) pairs have a running task on a live node."""
        good: set[tuple[str, int | None]] = set()
        for tid, t in self.tasks.items():
            if (t.desired == "running" and t.node and t.node not in dead
                    and t.node in self.heartbeats and (t.node, tid) in self.running):
                good.add((t.service, t.slot))
        return len(good)

    async def run(self, etcd: Etcd, start_revision: int) -> None:
        async for batch in etcd.watch(self.keys.root, start_revision, progress_notify=False):
            now = time.monotonic()
            for ev in batch.events:
                self.apply(ev, now)
            self.changed.set()


async def _wait(what: str, cond: Callable[[], bool], watcher: Watcher, deadline: float,
                procs: list[Proc]) -> float:
    """Wait until cond() holds (checked on watch progress, at most every 50 ms); its time."""
    while True:
        if cond():
            return time.monotonic()
        dead = [p.name for p in procs if not p.alive()]
        if dead:
            raise RuntimeError(f"waiting for {what}: {', '.join(dead)} exited:\n"
                               + next(p for p in procs if not p.alive()).tail())
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{what}: not reached before the deadline")
        await asyncio.sleep(0.05)  # a resolution of 50 ms; the bench must not eat the CPU
        watcher.changed.clear()
        try:
            await asyncio.wait_for(watcher.changed.wait(), min(0.2, remaining))
        except asyncio.TimeoutError:
            pass


@dataclass
class Figures:
    """One run's figures (None: not measured)."""

    placement_rate: float | None = None  # tasks/s
    all_running: float | None = None  # s from apply
    replacement: float | None = None  # s from the kill
    controllers_mb: float | None = None


@dataclass
class Transport:
    """How the run's processes reach etcd: plain, or TLS with an identity each (and
    each admitted as its etcd user when the cluster has auth)."""

    name: str
    cluster: EtcdCluster

    def flags(self, common_name: str, *, hollow: bool = False) -> list[str]:
        """--cacert/--cert/--key of identity ``common_name`` (none when plain);
        ``hollow``: an agent process's ``node:<group>``, a hollow group."""
        return self.cluster.client_flags(common_name, PREFIX, hollow=hollow)[2:]

    def client_tls(self) -> TlsConfig | None:
        return self.cluster.client_tls(admin("bench").common_name, PREFIX)


TRANSPORTS: dict[str, dict[str, bool]] = {  # name -> EtcdCluster's tls and auth
    "plain": {"tls": False, "auth": False},
    "TLS": {"tls": True, "auth": False},
    "TLS+auth": {"tls": True, "auth": True},
}
CHOICES = {"plain": ["plain"], "tls": ["TLS"], "auth": ["TLS+auth"], "both": ["plain", "TLS"],
           "all": list(TRANSPORTS)}


async def _register(rstore: store.ResourceStore) -> None:
    """Every hollow node's Node, written by the bench as the join endpoint would."""
    from kubeless_agent import AgentConfig
    from kubeless_agent.registration import register_nodes

    for k in range(AGENT_PROCESSES):
        config = AgentConfig(runtime="fake", node_name=f"g{k}",
                             hollow_nodes=NODES_PER_PROCESS)
        await register_nodes(rstore, config.identities())


async def _run(transport: Transport, logdir: Path, profile_dir: Path | None) -> Figures:
    figures = Figures()
    endpoints = transport.cluster.endpoints
    rstore = store.connect(endpoints, PREFIX, tls=transport.client_tls())
    keys = rstore.keys
    env = {**os.environ, "KUBELESS_ENDPOINTS": endpoints, "KUBELESS_PREFIX": PREFIX,
           "PYTHONUNBUFFERED": "1"}
    metrics_port = free_port()
    procs: list[Proc] = []
    spies: list[Proc] = []
    watch_task: asyncio.Task[None] | None = None
    try:
        _, rev = await rstore.etcd.get(keys.root + "cluster")
        watcher = Watcher(keys)
        watch_task = asyncio.create_task(watcher.run(rstore.etcd, rev + 1))

        started = time.monotonic()
        await _register(rstore)
        controllers = _spawn("controllers", [
            *_python("controllers", profile_dir / "controllers" if profile_dir else None),
            "--endpoints", endpoints, "--prefix", PREFIX, "--lease-ttl", str(LEASE_TTL),
            "--identity", "bench", "--metrics-port", str(metrics_port),
            *transport.flags(manager("bench").common_name),
            *(["--controllers", os.environ["KUBELESS_BENCH_CONTROLLERS"]]
              if os.environ.get("KUBELESS_BENCH_CONTROLLERS") else []),
            "--log-level", os.environ.get("KUBELESS_BENCH_LOG_LEVEL", "WARNING")], logdir, env)
        procs.append(controllers)
        agents: list[Proc] = []
        for k in range(AGENT_PROCESSES):
            prof = profile_dir / f"agent-g{k}" if profile_dir and k == 1 else None
            agents.append(_spawn(f"agent-g{k}", [
                *_python("kubeless_agent", prof),
                "--endpoints", endpoints, "--prefix", PREFIX, "--runtime", "fake",
                "--hollow-nodes", str(NODES_PER_PROCESS), "--node-name", f"g{k}",
                "--heartbeat-ttl", str(LEASE_TTL), "--log-level", "WARNING",
                *transport.flags(node(f"g{k}").common_name, hollow=True)], logdir, env))
        procs.extend(agents)
        profiled = [controllers, agents[1]] if profile_dir else []
        await _wait(f"{NODES} heartbeats", lambda: len(watcher.heartbeats) >= NODES, watcher,
                    started + SETUP_TIMEOUT, procs)
        print(f"setup: {NODES} hollow nodes in {AGENT_PROCESSES} agent processes ready in "
              f"{time.monotonic() - started:.1f} s; etcd args: {' '.join(ETCD_ARGS)}",
              flush=True)
        # Let the controllers' informers see every node (scheduler needs them all).
        await asyncio.sleep(2.0)

        # -- apply: 20 services x 500 replicas, one transaction -------------------
        spies += _spies(profile_dir, "apply", [controllers, agents[1]], logdir, env)
        _dump_profiles(profiled)
        reconciles = scrape_reconciles(metrics_port)
        txn = rstore.transaction()
        for i in range(SERVICES):
            txn.create(_service(i))
        applied = time.monotonic()
        await txn.commit()
        await _wait(f"{TASKS} tasks assigned", lambda: watcher.assigned_all_at is not None,
                    watcher, applied + RUNNING_TIMEOUT, procs)
        await _wait(f"{TASKS} tasks running", lambda: watcher.running_all_at is not None,
                    watcher, applied + RUNNING_TIMEOUT, procs)
        _stop_spies(spies)
        _dump_profiles(profiled)
        assert watcher.first_task_at is not None and watcher.assigned_all_at is not None
        assert watcher.running_all_at is not None and watcher.created_all_at is not None
        span = watcher.assigned_all_at - watcher.first_task_at
        rate = TASKS / span if span > 0 else float("inf")
        figures.placement_rate = rate
        figures.all_running = watcher.running_all_at - applied
        placed = scrape_metric(metrics_port, "kubeless_scheduler_placements_total")
        print(f"placement rate: {rate:,.0f} tasks/s ({TASKS:,} tasks: first created "
              f"{watcher.first_task_at - applied:.2f} s after apply, all assigned "
              f"{watcher.assigned_all_at - applied:.2f} s after apply; metrics say "
              f"{placed:.0f} placements) (target >= 1,500 tasks/s)"
              if placed is not None else
              f"placement rate: {rate:,.0f} tasks/s (target >= 1,500 tasks/s)", flush=True)
        print(f"  after apply: all created +{watcher.created_all_at - applied:.1f} s, "
              f"all assigned +{watcher.assigned_all_at - applied:.1f} s, "
              f"all running +{watcher.running_all_at - applied:.1f} s", flush=True)
        print(f"apply to all {TASKS:,} running: {watcher.running_all_at - applied:.2f} s "
              f"(target < 15 s)", flush=True)
        now_reconciles = scrape_reconciles(metrics_port)
        print("  " + _reconciles_line(reconciles, now_reconciles), flush=True)
        reconciles = now_reconciles

        # -- kill one agent process (100 nodes) -------------------------------------
        victim = agents[0]
        dead = {f"g0-{i}" for i in range(NODES_PER_PROCESS)}
        agents_hwm = [vm_hwm_mb(a.pid) for a in agents]
        spies += _spies(profile_dir, "kill", [controllers, agents[1]], logdir, env)
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        victim.popen.wait(10)
        others = [p for p in procs if p is not victim]
        before = set(watcher.tasks)
        lost = {tid for tid, t in watcher.tasks.items() if t.node in dead}
        marks: dict[str, float] = {}

        def replaced() -> bool:
            now = time.monotonic() - killed_at
            new = [t for tid, t in watcher.tasks.items() if tid not in before]
            steps = {"heartbeats gone": not (dead & watcher.heartbeats),
                     "lost tasks orphaned": all(
                         (watcher.tasks.get(tid) is None
                          or watcher.tasks[tid].state != "assigned") for tid in lost),
                     "replacements created": len(new) >= len(lost),
                     "replacements assigned": sum(1 for t in new if t.node) >= len(lost)}
            for name, ok in steps.items():
                if ok and name not in marks:
                    marks[name] = now
            return steps["heartbeats gone"] and watcher.slots_running(dead) >= TASKS

        await _wait(f"{TASKS} slots running on live nodes after the kill", replaced,
                    watcher, killed_at + REPLACE_TIMEOUT, others)
        took = time.monotonic() - killed_at
        figures.replacement = took
        _stop_spies(spies)
        _dump_profiles(profiled)
        print(f"  after the kill ({len(lost)} tasks lost): " + ", ".join(
            f"{k} +{v:.1f} s" for k, v in marks.items()) + f", all running +{took:.1f} s",
            flush=True)
        print("  " + _reconciles_line(reconciles, scrape_reconciles(metrics_port)), flush=True)
        limit = LEASE_TTL + 3
        print(f"replacement of {NODES_PER_PROCESS} killed nodes' tasks: {took:.2f} s "
              f"(lease TTL {LEASE_TTL} s; target < {limit} s, margin {limit - took:+.2f} s)",
              flush=True)

        ctl_hwm = figures.controllers_mb = vm_hwm_mb(controllers.pid)
        # the victim's as taken before the kill; the others' now
        agents_hwm = [agents_hwm[0]] + [vm_hwm_mb(a.pid) for a in agents[1:]]
        known = [m for m in agents_hwm if m is not None]
        print(f"controllers peak memory (VmHWM): {ctl_hwm:.0f} MB (target < 300 MB)"
              if ctl_hwm is not None else "controllers peak memory: unknown", flush=True)
        if known:
            print(f"agent processes peak memory (VmHWM, {NODES_PER_PROCESS} nodes each): "
                  f"max {max(known):.0f} MB, sum {sum(known):.0f} MB (for information)",
                  flush=True)
        print(f"(bench watch: {watcher.events:,} events seen)", flush=True)
    finally:
        _stop_spies(spies)
        for p in procs:
            _end(p)
        if watch_task is not None:
            watch_task.cancel()
            await asyncio.gather(watch_task, return_exceptions=True)
        await rstore.etcd.close()
    return figures


RATIOS = (("TLS", "plain", "TLS cost"), ("TLS+auth", "TLS", "auth cost"),
          ("TLS+auth", "plain", "both cost"))


def ratio_lines(runs: dict[str, Figures]) -> list[str]:
    """The side-by-side table: each figure per transport run, and the cost of each step
    as a ratio (>1 means worse: a lower rate, a longer time, more memory): TLS against
    plain, auth against TLS, TLS+auth against plain (those whose two runs were made)."""
    rows = (("placement rate (tasks/s)", "placement_rate", True),
            ("apply to all running (s)", "all_running", False),
            ("replacement after the kill (s)", "replacement", False),
            ("controllers peak memory (MB)", "controllers_mb", False))
    names = [n for n in TRANSPORTS if n in runs]
    ratios = [r for r in RATIOS if r[0] in runs and r[1] in runs]
    lines = [f"{'':32} " + " ".join(f"{n:>10}" for n in names) + " "
             + " ".join(f"{label:>10}" for _, _, label in ratios)]
    for label, attr, higher_is_better in rows:
        values = {n: getattr(runs[n], attr) for n in names}
        cells = [f"{values[n] or 0:>10.2f}" for n in names]
        for over, under, _ in ratios:
            a, b = values[under], values[over]
            if a is None or b is None or a <= 0 or b <= 0:
                cells.append(f"{'n/a':>10}")
                continue
            cells.append(f"{(a / b if higher_is_better else b / a):>9.2f}x")
        lines.append(f"{label:32} " + " ".join(cells))
    return lines


def _one(name: str, profile_dir: Path | None) -> Figures:
    print(f"-- transport: {name}", flush=True)
    cluster = EtcdCluster(1, extra_args=ETCD_ARGS, **TRANSPORTS[name]).start()
    logdir = Path(tempfile.mkdtemp(prefix=f"kubeless-bench-cp-{name.lower()}-"))
    try:
        figures = asyncio.run(_run(Transport(name, cluster), logdir, profile_dir))
    except BaseException:
        print(f"(process logs kept in {logdir})", flush=True)
        raise
    else:
        if os.environ.get("KUBELESS_BENCH_KEEP_LOGS"):
            print(f"(process logs kept in {logdir})", flush=True)
        else:
            shutil.rmtree(logdir, ignore_errors=True)
    finally:
        cluster.stop()
    return figures


def main() -> None:
    profile = os.environ.get("KUBELESS_BENCH_PROFILE")
    profile_dir = Path(profile).resolve() if profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
    wanted = os.environ.get("KUBELESS_BENCH_TRANSPORT", "all")
    if wanted not in CHOICES:
        sys.exit(f"KUBELESS_BENCH_TRANSPORT={wanted}: use {', '.join(CHOICES)}")
    runs = {name: _one(name, profile_dir) for name in CHOICES[wanted]}
    if len(runs) > 1:
        print(f"control plane, {' vs '.join(runs)} (same machine, same run):", flush=True)
        for line in ratio_lines(runs):
            print("  " + line, flush=True)
