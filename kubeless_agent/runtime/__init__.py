"""The Runtime protocol: what the worker needs from docker, process and fake.

A runtime runs tasks (the Task resource of an assignment, as a dict) and
tells the worker what it observes. The worker calls one method per task at
a time (never two calls for one task concurrently) and decides when:

    start(task)          make the task run; return once it is on its way
                         (report later states through the listener). Raise
                         RuntimeFailure (or anything) when it cannot: the
                         worker reports ``rejected`` with the error.
    stop(task, grace)    stop it: SIGTERM, then kill after ``grace`` seconds.
                         Return once it stopped; the worker reports
                         ``shutdown``. Stopping a stopped or unknown task is
                         not an error.
    remove(task)         forget it entirely (container, files); idempotent.
    list()               every task this runtime holds, even from a previous
                         agent process (containers labelled with the task and
                         node ids): [(task_id, report)] to adopt, not restart.
    close()              release the runtime's own resources; tasks keep running.

What a runtime observes reaches the worker through the listener given to
``subscribe``: ``listener(task_id, report)``, called on the event loop
(a runtime with its own threads uses ``loop.call_soon_threadsafe``), never
blocking. A report is a dict with ``state`` (accepted, preparing, starting,
running, complete, failed, rejected, shutdown) and, when known,
``message``, ``error``, ``containerId``, ``exitCode`` and ``ports``
([{target, published, protocol}]). Reports may repeat or arrive late: the
worker keeps states moving forward only.

Optional parts: every runtime subclasses ``Runtime`` and inherits, for what it
cannot do, a default that says so; callers call them, never probe for them:

    engine_version()       what runs the tasks, for ``node ls`` (the Docker Engine's
                           version, ``process <kubeless version>``); default: the name
    runtime_state()        ``{"state": up|down|unknown, "message": ...}`` of the
                           engine; default: always up
    watch_state(watcher)   call ``watcher(runtime_state())`` on the loop when it
                           changes; default: it never changes, nothing to call
    open_logs(tid, tail=None, follow=False)
                           the task's output, line by line (``tail``: the last N;
                           ``follow``: until it stops); ``UnknownTask`` when this
                           runtime holds no such task. Default: ``UnknownTask``
                           (no logs kept, as with fake)
    exec(tid, request)     run ``request.command`` (``kubeless.cluster.exec_wire.ExecRequest``)
                           in the running task: an ``ExecSession`` (``exec_session``);
                           ``UnknownTask`` when not this runtime's, ``NotRunning`` when it
                           runs nothing, ``CannotRun`` (126/127) when the command cannot
                           start. docker through the Engine's exec API, process as a local
                           process with the task's environment and directory, fake a few
                           built-ins. Default: ``UnknownTask``
    supports_cluster_dns   True when its tasks can be given the agent's cluster DNS as
                           their nameserver (docker); then:
    bridge_network()       (gateway, subnet) through which tasks reach the host, or
                           None; default: None
    use_cluster_dns(ns)    tasks started from now on get ``ns`` as their only
                           nameserver (None: the engine's defaults); default: nothing
    usage(task_ids)        ``{task id: (cpu seconds used in total, memory bytes now)}`` for
                           those of the tasks it can measure (``kubeless_agent.load``
                           turns two of them into cores): docker from the engine's
                           stats, process from /proc, fake from a figure a test sets;
                           default: nothing measured ({})
    files                  where the task's secrets and configs are written before
                           ``start`` (``kubeless_agent.task_files``): the worker writes
                           them there and removes them; ``start`` finds them by the
                           task's id. docker and process: a ``NodeFiles`` under
                           ``files_dir``; default: ``NoFiles`` (fake: nothing written)

Errors (``kubeless_agent.errors``, re-exported here): ``RuntimeFailure``, ``UnknownTask``,
``NotRunning``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from kubeless_agent.errors import RuntimeFailure as RuntimeFailure  # re-exported: the protocol's
from kubeless_agent.errors import NotRunning as NotRunning
from kubeless_agent.errors import UnknownTask as UnknownTask
from kubeless_agent.task_files import NoFiles

if TYPE_CHECKING:
    from kubeless.cluster.exec_wire import ExecRequest
    from kubeless_agent.runtime.exec_session import ExecSession

Task = dict[str, Any]  # the Task resource, as in its assignment
Report = dict[str, Any]
ReportListener = Callable[[str, Report], None]
StateWatcher = Callable[[dict[str, str]], None]
Usage = tuple[float, int]  # CPU seconds used since the task started, memory bytes in use

RUNTIME_STATES = ("accepted", "preparing", "starting", "running", "complete", "failed",
                  "rejected", "shutdown")


class Runtime(Protocol):
    """What the agent needs of a runtime; subclass it to inherit the optional parts."""

    name: str
    supports_cluster_dns: bool = False
    files: NoFiles = NoFiles()

    def subscribe(self, listener: ReportListener) -> None: ...

    async def start(self, task: Task) -> None: ...

    async def stop(self, task: Task, grace: float) -> None: ...

    async def remove(self, task: Task) -> None: ...

    async def list(self) -> list[tuple[str, Report]]: ...

    async def close(self) -> None: ...

    # -- optional parts: the defaults are what a runtime without them does -------

    def engine_version(self) -> str:
        return self.name

    def runtime_state(self) -> dict[str, str]:
        return {"state": "up", "message": ""}

    def watch_state(self, watcher: StateWatcher) -> None:
        """The state never changes: nothing to call."""
        return None  # a default, not an abstract method

    async def open_logs(self, tid: str, tail: int | None = None,
                        follow: bool = False) -> AsyncIterator[bytes]:
        raise UnknownTask(f"the {self.name} runtime keeps no logs")

    async def exec(self, tid: str, request: ExecRequest) -> ExecSession:
        raise UnknownTask(f"the {self.name} runtime cannot exec")

    async def bridge_network(self) -> tuple[str, str] | None:
        return None

    async def usage(self, task_ids: Sequence[str]) -> dict[str, Usage]:
        """Nothing measured."""
        return {}

    def use_cluster_dns(self, nameserver: str | None) -> None:
        """Its tasks take no nameserver from the agent."""
        return None  # a default, not an abstract method


def task_id(task: Task) -> str:
    return str(task["metadata"]["name"])


def task_env(task: Task) -> dict[str, str]:
    """The template's env as a dict (accepts a mapping or a list of ``K=V``)."""
    env = ((task.get("spec") or {}).get("template") or {}).get("env") or {}
    if isinstance(env, dict):
        return {str(k): str(v) for k, v in env.items()}
    pairs = (str(item).partition("=") for item in env)
    return {k: v for k, _, v in pairs}


def published_ports(task: Task) -> list[dict[str, Any]]:
    """``[{target, published, protocol}]`` for the task's ports that have a published port."""
    ports = (task.get("spec") or {}).get("ports") or []
    return [{"target": p.get("target"), "published": p.get("published"),
             "protocol": p.get("protocol", "tcp")}
            for p in ports if isinstance(p, dict) and p.get("published")]


RUNTIMES = ("docker", "process", "fake")


def make_runtime(name: str, node_id: str = "", address: str = "127.0.0.1",
                 **options: Any) -> Runtime:
    """A runtime by its ``--runtime`` name, for the node ``node_id`` advertised at ``address``.

    ``options`` go to the runtime's constructor: ``delay`` (fake), ``base_url``
    (docker), ``state_dir`` (process), ``files_dir`` (docker and process).
    """
    if name == "fake":
        from kubeless_agent.runtime.fake import FakeRuntime
        options.pop("files_dir", None)  # it writes no files
        return FakeRuntime(**options)
    if name == "docker":
        from kubeless_agent.runtime.docker import DockerRuntime
        return DockerRuntime(node_id, address=address, **options)
    if name == "process":
        from kubeless_agent.runtime.process import ProcessRuntime
        return ProcessRuntime(node_id, address=address, **options)
    raise ValueError(f"unknown runtime {name!r} (known: {', '.join(RUNTIMES)})")
