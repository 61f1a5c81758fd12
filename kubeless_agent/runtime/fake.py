"""The fake runtime: runs nothing, for hollow nodes in scale tests and for tests.

A started task goes accepted -> running at once (or after ``delay``
seconds). A task is made to fail by its template: env
``KUBELESS_FAKE_FAIL=1`` or an image ending in ``:fail`` -> failed
(exitCode 1, error "fake failure"); ``KUBELESS_FAKE_EXIT=<code>`` -> it
exits with that code right after starting (0: complete, else failed).
``KUBELESS_FAKE_START_DELAYS=<s>,<s>,...`` makes a task take that many
seconds to run, picked by its slot (slot 1 the first, cycling), so the
tasks of one batch run apart as real containers do.
``fail(task_id)`` and ``exit(task_id, code)`` end a running task later.
Load (``usage``, for load reports, the autoscaler's tests and benchmarks): a running
task uses ``KUBELESS_FAKE_CPU=<cores>`` (e.g. ``0.8``) and ``KUBELESS_FAKE_MEMORY=<size>``
(e.g. ``64Mi``) of its template's env, 0 without them; ``set_load(task_id, cpu=,
memory=)`` changes them from then on (its CPU seconds are the cores integrated over
the runtime's clock, so a change applies from the moment it is made).
A running task reports its published ports, and, as Docker does, a host port
of its own (from ``FIRST_HOST_PORT`` on) for each ingress port without a number.
Nothing outlives the process: a new fake runtime lists no tasks.
``exec`` into a running task knows a few built-ins (``FakeSession``): ``echo ARGS`` (to
stdout), ``cat`` (stdin to stdout), ``exit N``; any other command is not found (127).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kubeless.api import parse_size

from kubeless.cluster.exec_wire import STDOUT, ExecRequest
from kubeless_agent.errors import NotRunning, UnknownTask
from kubeless_agent.runtime import (Report, ReportListener, Runtime, Task, Usage,
                                    published_ports, task_env, task_id)
from kubeless_agent.runtime.exec_session import CannotRun, ExecSession, QueuedSession

log = logging.getLogger(__name__)
FIRST_HOST_PORT = 32768  # where Docker's ephemeral host ports start


class FakeRuntime(Runtime):
    name = "fake"

    def __init__(self, delay: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay = delay
        self.clock = clock
        self.loads: dict[str, _Load] = {}  # running task id -> what it uses
        self.tasks: dict[str, Report] = {}  # task id -> the last report
        self.calls: list[tuple[str, str]] = []  # (method, task id), for tests
        self._listeners: list[ReportListener] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._next_host_port = FIRST_HOST_PORT

    def subscribe(self, listener: ReportListener) -> None:
        self._listeners.append(listener)

    # -- the protocol ---------------------------------------------------------

    async def start(self, task: Task) -> None:
        tid = task_id(task)
        self.calls.append(("start", tid))
        self._emit(tid, {"state": "accepted", "containerId": f"fake-{tid}"})
        delay = _start_delay(task, self.delay)
        if delay > 0:
            loop = asyncio.get_running_loop()
            self._timers[tid] = loop.call_later(delay, self._run, task)
        else:
            self._run(task)

    async def stop(self, task: Task, grace: float) -> None:
        tid = task_id(task)
        self.calls.append(("stop", tid))
        self._cancel_timer(tid)
        report = self.tasks.get(tid)
        if report is not None and report["state"] in ("accepted", "running"):
            self._emit(tid, {"state": "shutdown", "containerId": report.get("containerId")})

    async def remove(self, task: Task) -> None:
        tid = task_id(task)
        self.calls.append(("remove", tid))
        self._cancel_timer(tid)
        self.tasks.pop(tid, None)
        self.loads.pop(tid, None)

    async def list(self) -> list[tuple[str, Report]]:
        return [(tid, dict(report)) for tid, report in self.tasks.items()]

    async def close(self) -> None:
        for tid in list(self._timers):
            self._cancel_timer(tid)

    async def usage(self, task_ids: Sequence[str]) -> dict[str, Usage]:
        now = self.clock()
        return {tid: load.usage(now) for tid in task_ids if (load := self.loads.get(tid))}

    async def exec(self, tid: str, request: ExecRequest) -> ExecSession:
        report = self.tasks.get(tid)
        if report is None:
            raise UnknownTask(f"no fake task {tid}")
        if report["state"] != "running":
            raise NotRunning(f"task {tid} is {report['state']}")
        return FakeSession.start(request.command)

    # -- test and bench controls ----------------------------------------------

    def set_load(self, tid: str, cpu: float | None = None, memory: int | None = None) -> None:
        """From now on the running task uses ``cpu`` cores and ``memory`` bytes (None: as
        before)."""
        load = self.loads.get(tid)
        if load is not None:
            load.change(self.clock(), cpu, memory)

    def fail(self, tid: str, error: str = "fake failure", exit_code: int = 1) -> None:
        """End a running task as failed."""
        self.exit(tid, exit_code, error)

    def exit(self, tid: str, code: int, error: str | None = None) -> None:
        """End a running task: code 0 -> complete, else failed."""
        report = self.tasks.get(tid)
        if report is None or report["state"] not in ("accepted", "running"):
            return
        self._cancel_timer(tid)
        self._emit(tid, _exited(code, error, report.get("containerId")))

    # -- inside ------------------------------------------------------------------

    def _run(self, task: Task) -> None:
        tid = task_id(task)
        self._timers.pop(tid, None)
        if self.tasks.get(tid, {}).get("state") != "accepted":
            return  # stopped or removed meanwhile
        env = task_env(task)
        image = str(((task.get("spec") or {}).get("template") or {}).get("image") or "")
        container = f"fake-{tid}"
        if env.get("KUBELESS_FAKE_FAIL") == "1" or image.endswith(":fail"):
            self._emit(tid, _exited(1, "fake failure", container))
            return
        self.loads[tid] = _Load.of(env, self.clock())
        self._emit(tid, {"state": "running", "containerId": container,
                         "ports": self._ports(task)})
        if "KUBELESS_FAKE_EXIT" in env:
            try:
                code = int(env["KUBELESS_FAKE_EXIT"])
            except ValueError:
                code = 1
            self._emit(tid, _exited(code, None, container))

    def _ports(self, task: Task) -> builtins.list[dict[str, Any]]:
        """The published ports, and a host port picked for each unnumbered ingress port."""
        picked: builtins.list[dict[str, Any]] = []
        for p in (task.get("spec") or {}).get("ports") or []:
            if isinstance(p, dict) and not p.get("published") and p.get("target") \
                    and (p.get("mode") or "ingress") == "ingress":
                picked.append({"target": p["target"], "published": self._next_host_port,
                               "protocol": p.get("protocol", "tcp")})
                self._next_host_port += 1
        return [*published_ports(task), *picked]

    def _emit(self, tid: str, report: Report) -> None:
        self.tasks[tid] = report
        if report["state"] != "running":
            self.loads.pop(tid, None)
        for listener in self._listeners:
            listener(tid, dict(report))

    def _cancel_timer(self, tid: str) -> None:
        timer = self._timers.pop(tid, None)
        if timer is not None:
            timer.cancel()


@dataclass
class _Load:
    """What a running fake task uses: ``cpu`` cores since ``since``, after ``used`` seconds."""

    cpu: float
    memory: int
    since: float
    used: float = 0.0

    @classmethod
    def of(cls, env: dict[str, str], now: float) -> _Load:
        try:
            cpu = max(float(env.get("KUBELESS_FAKE_CPU") or 0), 0.0)
        except ValueError:
            cpu = 0.0
        try:
            memory = parse_size(env.get("KUBELESS_FAKE_MEMORY") or "0")
        except ValueError:
            memory = 0
        return cls(cpu, memory, now)

    def usage(self, now: float) -> Usage:
        return self.used + self.cpu * max(now - self.since, 0.0), self.memory

    def change(self, now: float, cpu: float | None, memory: int | None) -> None:
        self.used, self.since = self.usage(now)[0], now
        if cpu is not None:
            self.cpu = max(cpu, 0.0)
        if memory is not None:
            self.memory = max(memory, 0)


def _start_delay(task: Task, default: float) -> float:
    """``KUBELESS_FAKE_START_DELAYS`` for the task's slot, else the runtime's delay."""
    raw = task_env(task).get("KUBELESS_FAKE_START_DELAYS")
    slot = (task.get("spec") or {}).get("slot")
    if not raw or not isinstance(slot, int):
        return default
    try:
        delays = [float(d) for d in raw.split(",")]
    except ValueError:
        return default
    return max(delays[(slot - 1) % len(delays)], 0.0)


def _exited(code: int, error: str | None, container: str | None) -> Report:
    if code == 0:
        return {"state": "complete", "exitCode": 0, "containerId": container}
    return {"state": "failed", "exitCode": code, "containerId": container,
            "error": error or f"task exited with code {code}"}


class FakeSession(QueuedSession):
    """The fake runtime's built-ins: ``echo``, ``cat`` and ``exit N``."""

    def __init__(self, command: tuple[str, ...]) -> None:
        super().__init__()
        self.command = command
        self.code = 0
        self.done = asyncio.Event()

    @classmethod
    def start(cls, command: tuple[str, ...]) -> FakeSession:
        name, args = command[0], command[1:]
        session = cls(command)
        if name == "echo":
            session._end(0, " ".join(args).encode() + b"\n")
        elif name == "exit":
            try:
                session._end(int(args[0]) if args else 0)
            except ValueError:
                raise CannotRun(2, f"exit: {args[0]}: numeric argument required") from None
        elif name != "cat":
            raise CannotRun(127, f'exec: "{name}": executable file not found (the fake '
                            "runtime knows echo, cat and exit)")
        return session

    def _end(self, code: int, out: bytes = b"") -> None:
        if out:
            self.queue.put_nowait((STDOUT, out))
        if not self.done.is_set():
            self.code = code
            self.queue.put_nowait(None)
            self.done.set()

    async def write(self, data: bytes) -> None:
        if self.command[0] == "cat" and not self.done.is_set():
            await self.queue.put((STDOUT, data))

    async def close_stdin(self) -> None:
        self._end(0)

    async def wait(self) -> int:
        await self.done.wait()
        return self.code

    async def kill(self) -> None:
        self._end(137)
