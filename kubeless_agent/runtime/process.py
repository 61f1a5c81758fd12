"""The process runtime: runs a task's command as a local process, for hosts without an engine.

``template.command + template.args`` run under ``/bin/sh`` (a tiny wrapper
that records the exit code in a file), in a session of their own, with the
template's env plus KUBELESS_TASK_NAME, KUBELESS_NODE_NAME, KUBELESS_TASK_ID,
``PORT`` (the first port's published port, else its target) and
``KUBELESS_FILES`` (below, when it has secrets or configs), in the
template's workdir (else the task's directory). The image, mounts, limits
and healthcheck are not applied: there is no container.

Each task has a directory ``<state_dir>/<node>/<task-id>/`` holding
``log`` (stdout and stderr), ``pid`` (JSON: pid, its start time, ports) and
``exit`` (the exit code, written by the wrapper). Because processes run in
their own session, they survive the agent (SIGTERM or SIGKILL), and a
restarted agent adopts them by pid (checked against the start time, so a
reused pid is never mistaken for the task) and learns how the ones that
ended meanwhile exited from ``exit``.

A task's secrets and configs are files the worker wrote before the start
(``files``, a ``NodeFiles`` under ``files_dir``, default ``/run/kubeless``): each
at ``$KUBELESS_FILES/<its path without the leading />`` (a secret with the
default target: ``$KUBELESS_FILES/run/secrets/<name>``), ``KUBELESS_FILES``
being the task's own directory, given in the process's environment when the
task has any. They are in a tmpfs when the agent can mount one (root) or the
directory is on one already; otherwise, unlike docker's, in that 0700
directory on the disk, which the agent says once in its log. Files keep the
references' uid and gid only when the agent runs as root.

A task's usage (``usage``, for the load reports) is its session's, from /proc
(``kubeless_agent.load.procfs``): CPU seconds and RSS of every process in it.

States: accepted, preparing (the executable and workdir exist; a host-mode
port is free), running, complete (exit 0), failed (exit code and the last
log lines), rejected (raised before it runs), shutdown (stop: SIGTERM to the
process group, SIGKILL after the grace period).
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import importlib.metadata
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeless.api.file_refs import file_refs
from kubeless.api.tasks import state_index

from kubeless_agent import metrics
from kubeless.cluster.exec_wire import ExecRequest
from kubeless_agent.errors import NotRunning, RuntimeFailure, UnknownTask
from kubeless_agent.load.procfs import session_usage
from kubeless_agent.runtime import Report, ReportListener, Runtime, Task, Usage, task_id
from kubeless_agent.runtime.docker_spec import environment, exited, template
from kubeless_agent.runtime.exec_session import ExecSession, LocalSession
from kubeless_agent.task_files import DEFAULT_FILES_DIR, NodeFiles

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = "/var/lib/kubeless/process"
LAST_LINES = 10
POLL = 0.2


@dataclass
class _Process:
    pid: int = 0
    state: str | None = None
    stopping: bool = False
    ports: list[dict[str, Any]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    code: int | None = None


class ProcessRuntime(Runtime):
    name = "process"
    files: NodeFiles

    def __init__(self, node_id: str, *, address: str = "127.0.0.1",
                 state_dir: str | None = None, files_dir: str = DEFAULT_FILES_DIR) -> None:
        self.node_id = node_id
        self.files = NodeFiles(files_dir, node_id, on_disk=True)
        self.address = address
        self.dir = Path(state_dir or DEFAULT_STATE_DIR) / node_id
        self._tracked: dict[str, _Process] = {}
        self._listeners: list[ReportListener] = []
        self._background: set[asyncio.Future[Any]] = set()

    def subscribe(self, listener: ReportListener) -> None:
        self._listeners.append(listener)

    def engine_version(self) -> str:
        """The agent is this runtime's engine: ``process <kubeless version>``."""
        return f"process {_kubeless_version()}"

    # runtime_state and watch_state: the defaults (up while the agent is, never changing)

    # -- the protocol -------------------------------------------------------------

    async def start(self, task: Task) -> None:
        tid = task_id(task)
        began = time.monotonic()
        p = self._tracked[tid] = _Process()
        self._emit(tid, {"state": "accepted"})
        argv = [str(a) for a in (template(task).get("command") or [])] + \
               [str(a) for a in (template(task).get("args") or [])]
        env = self._environment(task)
        self._emit(tid, {"state": "preparing"})
        _check_runnable(task, argv, env)
        where = self.dir / tid
        where.mkdir(parents=True, exist_ok=True)
        (where / "exit").unlink(missing_ok=True)
        p.ports = _ports(task)
        proc = await self._spawn_process(task, argv, env, where)
        p.pid = proc.pid
        _write_json(where / "pid", {"pid": proc.pid, "startTime": _start_time(proc.pid),
                                    "ports": p.ports})
        self._watch(tid, p, self._wait_child(p, proc))
        metrics.CONTAINER_START_SECONDS.observe(time.monotonic() - began)
        self._emit(tid, {"state": "running"})

    async def stop(self, task: Task, grace: float) -> None:
        p = self._tracked.get(task_id(task))
        if p is None or not p.pid or p.ended.is_set():
            return
        p.stopping = True
        _killpg(p.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await p.ended.wait()
            return
        _killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await p.ended.wait()

    async def remove(self, task: Task) -> None:
        tid = task_id(task)
        if tid in self._tracked:
            await self.stop(task, 0)
            self._tracked.pop(tid, None)
        await asyncio.to_thread(shutil.rmtree, self.dir / tid, True)

    async def list(self) -> list[tuple[str, Report]]:
        """Adopt what a previous agent left: live processes by pid, ended ones by exit file."""
        found: builtins.list[tuple[str, Report]] = []
        if not self.dir.is_dir():
            return found
        for where in sorted(self.dir.iterdir()):
            if where.is_dir():
                tid = where.name
                p = self._tracked.setdefault(tid, _Process())
                found.append((tid, self._adopt(tid, p, where)))
        return found

    async def close(self) -> None:
        for t in list(self._background):
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # -- usage (load reports) ------------------------------------------------------

    async def usage(self, task_ids: Sequence[str]) -> dict[str, Usage]:
        """Each live task's session (its wrapper shell is the leader): CPU seconds of every
        process in it, reaped children included, and their RSS (``load.procfs``)."""
        leaders = {p.pid: tid for tid in task_ids
                   if (p := self._tracked.get(tid)) is not None and p.pid
                   and not p.ended.is_set()}
        found = await asyncio.to_thread(session_usage, list(leaders))
        return {leaders[sid]: usage for sid, usage in found.items()}

    # -- exec --------------------------------------------------------------------

    async def exec(self, tid: str, request: ExecRequest) -> ExecSession:
        """The command as a local process with the environment and working directory of the
        task's process as they are now (read from /proc: the same for a task adopted from
        an earlier agent), in a session of its own."""
        p = self._tracked.get(tid)
        if p is None:
            raise UnknownTask(f"no process for task {tid} on {self.node_id}")
        if not p.pid or p.ended.is_set() or not _alive(p.pid, None):
            raise NotRunning(f"task {tid} is not running")
        try:
            env, cwd = await asyncio.to_thread(_process_context, p.pid)
        except OSError as err:
            raise NotRunning(f"task {tid}'s process cannot be read: {err}") from err
        return await LocalSession.start(list(request.command), env, cwd, tty=request.tty,
                                        stdin=request.stdin, size=request.size)

    # -- logs --------------------------------------------------------------------

    async def open_logs(self, tid: str, tail: int | None = None,
                        follow: bool = False) -> AsyncIterator[bytes]:
        path = self.dir / tid / "log"
        if not path.exists():
            raise UnknownTask(f"no process for task {tid} on {self.node_id}")
        return self._read_logs(tid, path, tail, follow)

    async def _read_logs(self, tid: str, path: Path, tail: int | None,
                         follow: bool) -> AsyncIterator[bytes]:
        with open(path, "rb") as f:
            lines: collections.deque[bytes] = collections.deque(maxlen=tail if tail else None)
            if tail != 0:
                lines.extend(await asyncio.to_thread(f.readlines))
            else:
                f.seek(0, os.SEEK_END)
            for line in lines:
                yield line
            partial = b""
            while follow:
                p = self._tracked.get(tid)
                done = p is None or p.ended.is_set()
                chunk = await asyncio.to_thread(f.read)
                if chunk:
                    *complete, partial = (partial + chunk).split(b"\n")
                    for line in complete:
                        yield line + b"\n"
                elif done:
                    break
                else:
                    await asyncio.sleep(POLL)
            if partial:
                yield partial + b"\n"

    # -- inside -----------------------------------------------------------------

    def _environment(self, task: Task) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "TZ")}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(environment(task, self.node_id))
        ports = _ports(task)
        if ports:
            env["PORT"] = str(ports[0]["published"])
        if file_refs(template(task)):
            env["KUBELESS_FILES"] = str(self.files.task_dir(task_id(task)))
        return env

    async def _spawn_process(self, task: Task, argv: builtins.list[str], env: dict[str, str],
                             where: Path) -> asyncio.subprocess.Process:
        exit_file = shlex.quote(str(where / "exit"))
        script = f'"$@"; code=$?; echo $code > {exit_file}; exit $code'
        user = template(task).get("user")
        extra: dict[str, Any] = {"user": str(user)} if user else {}
        with open(where / "log", "ab") as out:
            try:
                return await asyncio.create_subprocess_exec(
                    "/bin/sh", "-c", script, "sh", *argv, stdin=asyncio.subprocess.DEVNULL,
                    stdout=out, stderr=asyncio.subprocess.STDOUT, env=env,
                    cwd=str(template(task).get("workdir") or where), start_new_session=True,
                    **extra)
            except (OSError, ValueError, KeyError) as err:
                raise RuntimeFailure(f"starting {argv[0]}: {err}") from err

    def _adopt(self, tid: str, p: _Process, where: Path) -> Report:
        info = _read_json(where / "pid")
        pid = int(info.get("pid") or 0)
        p.pid, p.ports = pid, list(info.get("ports") or [])
        base: Report = {"containerId": f"pid:{pid}" if pid else None, "ports": p.ports}
        if pid and _alive(pid, info.get("startTime")):
            self._watch(tid, p, self._wait_adopted(p, where))
            p.state = "running"
            return {**base, "state": "running"}
        p.ended.set()
        code = _read_exit(where)
        if code is None:
            report = {"state": "failed", "error": "the process ended while the agent was away "
                      "(exit code unknown)"}
        else:
            report = exited(code, _last_lines(where) if code else "")
        p.state = report["state"]
        return {**base, **report}

    def _watch(self, tid: str, p: _Process, waiter: Any) -> None:
        async def watch() -> None:
            code = await waiter
            p.code = code
            p.ended.set()
            if not p.stopping:
                lines = _last_lines(self.dir / tid) if code else ""
                self._emit(tid, exited(code, lines))

        t = asyncio.ensure_future(watch())
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    async def _wait_child(self, p: _Process, proc: asyncio.subprocess.Process) -> int:
        code = await proc.wait()
        return 128 - code if code < 0 else code

    async def _wait_adopted(self, p: _Process, where: Path) -> int:
        """Wait for a process that is not our child (pidfd when the kernel has it, else poll)."""
        try:
            fd = os.pidfd_open(p.pid)
        except (OSError, AttributeError):
            while _alive(p.pid, None):
                await asyncio.sleep(POLL)
        else:
            ended = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_reader(fd, ended.set)
            try:
                await ended.wait()
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        for _ in range(10):  # the wrapper writes the exit file as it ends
            code = _read_exit(where)
            if code is not None:
                return code
            await asyncio.sleep(0.05)
        return 137 if p.stopping else 255

    def _emit(self, tid: str, report: Report) -> None:
        p = self._tracked.get(tid)
        if p is not None:
            if p.state is not None and state_index(report["state"]) < state_index(p.state):
                return
            p.state = report["state"]
            if p.pid:
                report.setdefault("containerId", f"pid:{p.pid}")
            if p.ports:
                report.setdefault("ports", p.ports)
        for listener in self._listeners:
            listener(tid, dict(report))


# -- helpers (small I/O) -----------------------------------------------------------------

def _ports(task: Task) -> list[dict[str, Any]]:
    """The task's ports as the process serves them: published, else the target."""
    found = []
    for p in (task.get("spec") or {}).get("ports") or []:
        port = int(p.get("published") or p["target"])
        found.append({"target": int(p["target"]), "published": port,
                      "protocol": p.get("protocol") or "tcp", "mode": p.get("mode") or "ingress"})
    return found


def _check_runnable(task: Task, argv: list[str], env: dict[str, str]) -> None:
    if not argv:
        raise RuntimeFailure("the process runtime runs template.command and args; "
                             "this task has neither")
    if shutil.which(argv[0], path=env.get("PATH")) is None:
        raise RuntimeFailure(f"command {argv[0]!r} not found on this node")
    workdir = template(task).get("workdir")
    if workdir and not os.path.isdir(str(workdir)):
        raise RuntimeFailure(f"workdir {workdir} does not exist on this node")
    for p in _ports(task):
        kind = socket.SOCK_DGRAM if p["protocol"] == "udp" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", p["published"]))
            except OSError:
                raise RuntimeFailure(f"port {p['published']}/{p['protocol']} is already in use "
                                     "on this node") from None


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _alive(pid: int, start_time: str | None) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or fields[19] == start_time


def _process_context(pid: int) -> tuple[dict[str, str], str]:
    """(environment, working directory) of a live process, from /proc."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    env = dict(item.decode(errors="replace").partition("=")[::2]
               for item in raw.split(b"\0") if item)
    return env, os.readlink(f"/proc/{pid}/cwd")


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _read_exit(where: Path) -> int | None:
    try:
        return int((where / "exit").read_text().strip())
    except (OSError, ValueError):
        return None


def _last_lines(where: Path) -> str:
    try:
        with open(where / "log", "rb") as f:
            lines = collections.deque(f, maxlen=LAST_LINES)
    except OSError:
        return ""
    return b"".join(lines).decode("utf-8", "replace").strip()


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _kubeless_version() -> str:
    try:
        return importlib.metadata.version("kubeless")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
