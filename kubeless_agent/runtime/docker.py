"""The docker runtime: runs each task as a container on a Docker Engine (docker SDK).

What it does, and where:
- ``start`` walks a task through accepted, preparing (the image is present,
  else pulled once), starting (create, start, read the published ports
  back) and running (at once, or when the healthcheck first passes); a
  failure before the container runs raises ``RuntimeFailure`` (the worker
  reports ``rejected``) and leaves no container behind;
- ONE events stream per runtime (a thread) feeds ``die`` (complete or failed
  with the exit code and the last log lines) and ``health_status``
  (running once healthy; unhealthy fails the task and stops its container)
  to the event loop with ``call_soon_threadsafe``;
- ``list`` finds the containers labelled with this node's id, so a
  restarted agent adopts them: nothing is restarted, nothing unlabelled or
  of another node is ever touched;
- ``exec`` runs a command in a task's running container through the Engine's exec
  API (``docker_exec``);
- ``usage`` reads each running container's one-shot stats (``docker_stats``: CPU
  seconds, memory as ``docker stats`` shows it) for the load reports;
- when the engine goes away, ``runtime_state()`` says ``down`` (watchers are
  told), no task is failed for it, and once it answers again the runtime
  subscribes to events again and re-inspects what it tracks (a missed
  ``die`` is not lost).

With cluster DNS (``use_cluster_dns``), containers get the agent's DNS
server as their only nameserver (as Docker's embedded 127.0.0.11 is): an
address of the default bridge (``bridge_network()``: its gateway, found by
``bridge.bridge_gateway``, or another address of its subnet that the
agent's DNS listens on), reachable from every container of that bridge.
The agent answers ``kubeless.`` and forwards every other name upstream.

A task's secrets and configs are files the worker wrote in the node's tmpfs
(``files``, a ``NodeFiles`` under ``files_dir``, never on a disk: without a
tmpfs the task is rejected); each is bind-mounted read-only at its path.

Every blocking SDK call runs in a small thread pool, never on the loop.
Container config (names, labels, ports, mounts, limits, healthcheck) is
built by the pure ``docker_spec`` module.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.types import Healthcheck, Mount
from docker.utils import parse_repository_tag

from kubeless.api.file_refs import file_refs
from kubeless.api.tasks import state_index

from kubeless_agent import metrics
from kubeless_agent.netaddr import bind_address
from kubeless.cluster.exec_wire import ExecRequest
from kubeless_agent.errors import NotRunning, RuntimeFailure, UnknownTask
from kubeless_agent.runtime import (Report, ReportListener, Runtime, StateWatcher, Task, Usage,
                                    task_id)
from kubeless_agent.runtime.bridge import bridge_gateway, interface_ipv4, interface_name
from kubeless_agent.runtime.docker_spec import (LABEL_NODE, LABEL_TASK, ClusterDns,
                                                bind_sources, container_config, exited,
                                                image_of, observed, reported_ports, template)
from kubeless_agent.runtime.docker_exec import DockerSession
from kubeless_agent.runtime.docker_stats import usage_of
from kubeless_agent.runtime.exec_session import ExecSession
from kubeless_agent.task_files import DEFAULT_FILES_DIR, NodeFiles

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_API_VERSION = "1.45"  # the newest Engine API we speak; older engines get theirs
LAST_LINES = 10


@dataclass
class _Container:
    """What the runtime knows of one task's container."""

    task: Task | None
    container_id: str | None = None
    state: str | None = None  # the last state emitted
    stopping: bool = False  # we stop it: its die is not a failure
    began: float = field(default_factory=time.monotonic)
    ports: list[dict[str, Any]] = field(default_factory=list)
    timed: bool = False  # start latency observed


class DockerRuntime(Runtime):
    name = "docker"
    supports_cluster_dns = True
    files: NodeFiles

    def __init__(self, node_id: str, *, address: str = "127.0.0.1", base_url: str | None = None,
                 timeout: float = 60.0, workers: int = 16, reconnect_interval: float = 1.0,
                 pull: bool = True, files_dir: str = DEFAULT_FILES_DIR) -> None:
        self.node_id = node_id
        self.files = NodeFiles(files_dir, node_id, on_disk=False)
        self.bind_addr = bind_address(address)
        self.base_url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self.timeout = timeout
        self.reconnect_interval = reconnect_interval
        self.pull = pull
        self._client = self._new_client(max_pool_size=workers)
        self._events_client = self._new_client(max_pool_size=2)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"docker-{node_id}")
        self._tracked: dict[str, _Container] = {}
        self._listeners: list[ReportListener] = []
        self._watchers: list[StateWatcher] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._state = {"state": "unknown", "message": "not connected yet"}
        self._background: set[asyncio.Task[None]] = set()
        self._negotiated = False
        self._engine_version = ""  # known once connected (_negotiate, off the loop)
        self._bridge: tuple[str, str] | None = None
        self.dns: ClusterDns | None = None

    def _new_client(self, max_pool_size: int) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.base_url, timeout=int(self.timeout),
                                   version=MAX_API_VERSION, max_pool_size=max_pool_size)

    def _negotiate(self) -> None:
        """Speak the engine's API version when it is older than ours (blocking; a thread)."""
        info = self._events_client.api.version(api_version=False)
        self._engine_version = str(info.get("Version") or "")
        engine = str(info.get("ApiVersion") or "")
        version = min(MAX_API_VERSION, engine, key=_version_key) if engine else MAX_API_VERSION
        for client in (self._client, self._events_client):
            client.api._version = version  # the SDK's own negotiation ("auto") needs the engine
        self._negotiated = True

    # -- the protocol ---------------------------------------------------------------

    def subscribe(self, listener: ReportListener) -> None:
        self._listeners.append(listener)
        self._watch_events()

    async def start(self, task: Task) -> None:
        tid = task_id(task)
        old = self._tracked.get(tid)
        c = self._tracked[tid] = _Container(task, container_id=old.container_id if old else None)
        self._watch_events()
        self._emit(tid, {"state": "accepted"})
        if self._state["state"] == "down":
            raise RuntimeFailure(f"the Docker Engine is unreachable: {self._state['message']}")
        image = image_of(task)
        self._emit(tid, {"state": "preparing", "message": f"preparing image {image}"})
        await self._ensure_image(image)
        for source in bind_sources(task):
            if not source or not os.path.exists(source):
                raise RuntimeFailure(f"bind mount source {source!r} does not exist on this node")
        files = self.files.bind_mounts(tid, file_refs(template(task)))
        config = container_config(task, self.node_id, self.bind_addr, self.dns, files)
        self._emit(tid, {"state": "starting", "message": "creating the container"})
        c.container_id = await self._create(config)
        try:
            await self._call(self._client.api.start, c.container_id)
        except RuntimeFailure as err:
            await self._remove_quietly(c.container_id)
            c.state = "rejected"
            raise RuntimeFailure(_start_error(str(err), config["host_config"]["port_bindings"])) \
                from err
        inspect = await self._call(self._client.api.inspect_container, c.container_id)
        c.ports = reported_ports(task, inspect)
        await self._observe(tid, c, inspect)

    async def stop(self, task: Task, grace: float) -> None:
        tid = task_id(task)
        c = self._tracked.get(tid)
        ids = [c.container_id] if c and c.container_id else await self._ids_of(tid)
        if c is not None:
            c.stopping = True
        for cid in ids:
            await self._ignore_missing(self._client.api.stop, cid, timeout=max(0, round(grace)))

    async def remove(self, task: Task) -> None:
        tid = task_id(task)
        c = self._tracked.pop(tid, None)
        ids = set(await self._ids_of(tid))
        if c is not None and c.container_id:
            ids.add(c.container_id)
        for cid in ids:
            await self._ignore_missing(self._client.api.remove_container, cid, force=True, v=True)

    async def list(self) -> list[tuple[str, Report]]:
        self._watch_events()
        found = []
        summaries = await self._call(self._client.api.containers, all=True,
                                     filters={"label": [f"{LABEL_NODE}={self.node_id}"]})
        for summary in summaries:
            tid = (summary.get("Labels") or {}).get(LABEL_TASK)
            if not tid:
                continue
            try:
                inspect = await self._call(self._client.api.inspect_container, summary["Id"])
            except RuntimeFailure:
                continue  # removed meanwhile
            c = self._tracked.setdefault(tid, _Container(None, container_id=summary["Id"]))
            c.timed = True
            report = observed(inspect, None, await self._last_lines(summary["Id"], inspect))
            c.ports, c.state = report.get("ports") or [], report["state"]
            found.append((tid, report))
        return found

    async def close(self) -> None:
        self._closing.set()
        stream, self._stream = self._stream, None
        if stream is not None:
            await asyncio.to_thread(_close_quietly, stream)
        for t in list(self._background):
            t.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
        for client in (self._client, self._events_client):
            _close_quietly(client)

    # -- cluster DNS -----------------------------------------------------------------

    async def bridge_network(self) -> tuple[str, str] | None:
        """The default bridge's (gateway, subnet), e.g. ("172.17.0.1", "172.17.0.0/16"): the
        host as containers reach it (``bridge.bridge_gateway``: the IPAM gateway, else the
        bridge interface's address, else the subnet's first host). None, logged, when
        neither the engine nor the kernel says."""
        if self._bridge is None:
            try:
                network = await self._call(self._client.api.inspect_network, "bridge")
            except RuntimeFailure as err:
                log.warning("docker: no bridge network for cluster DNS: %s", err)
                return None
            found = bridge_gateway(network, interface_ipv4(interface_name(network)))
            if found is None:
                log.warning("docker: the bridge network has no gateway, %s has no address "
                            "and no subnet is configured: no cluster DNS for containers",
                            interface_name(network))
                return None
            log.info("docker: containers reach the host at %s (%s, subnet %s)", found.gateway,
                     found.source, found.subnet)
            self._bridge = (found.gateway, found.subnet)
        return self._bridge

    def use_cluster_dns(self, nameserver: str | None) -> None:
        """Containers started from now on get ``nameserver`` (the agent's DNS) as their only
        nameserver; None: the engine's defaults (the agent cannot serve them)."""
        self.dns = ClusterDns((nameserver,)) if nameserver else None

    # -- usage (load reports) ---------------------------------------------------------

    async def usage(self, task_ids: Sequence[str]) -> dict[str, Usage]:
        """Each running task's (CPU seconds, memory bytes) from the engine's one-shot stats,
        the containers asked in parallel (the runtime's thread pool); a task whose stats
        cannot be read this time is left out (the engine is away, it just stopped)."""
        wanted = [(tid, c.container_id) for tid in task_ids
                  if (c := self._tracked.get(tid)) is not None and c.container_id
                  and c.state == "running"]
        found = await asyncio.gather(*(self._stats(cid) for _, cid in wanted))
        return {tid: usage for (tid, _), usage in zip(wanted, found) if usage is not None}

    async def _stats(self, cid: str) -> Usage | None:
        try:
            stats = await self._call(self._one_shot_stats, cid)
        except RuntimeFailure as err:
            log.debug("docker: stats of %s: %s", cid[:12], err)
            return None
        return usage_of(stats)

    def _one_shot_stats(self, cid: str) -> Any:
        """One sample at once (Engine API 1.41+); older engines take a second to answer,
        filling precpu_stats we do not use: slower, still right (blocking; a thread)."""
        api = self._client.api
        if _version_key(api._version) >= (1, 41):
            return api.stats(cid, stream=False, one_shot=True)
        return api.stats(cid, stream=False)

    # -- runtime health and logs ---------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._state["state"] == "up"

    def runtime_state(self) -> dict[str, str]:
        """``{"state": "up"|"down"|"unknown", "message": ...}`` of the engine."""
        return dict(self._state)

    def engine_version(self) -> str:
        """The Docker Engine's version, as of the last connection ("" before the first)."""
        return self._engine_version

    def watch_state(self, watcher: StateWatcher) -> None:
        """Call ``watcher(runtime_state())`` on the loop whenever the engine comes or goes."""
        self._watchers.append(watcher)

    async def open_logs(self, tid: str, tail: int | None = None,
                        follow: bool = False) -> AsyncIterator[bytes]:
        """The task's output, line by line (``tail``: the last N; ``follow``: until it stops).

        UnknownTask when this node has no container for the task.
        """
        c = self._tracked.get(tid)
        ids = [c.container_id] if c and c.container_id else await self._ids_of(tid)
        if not ids:
            raise UnknownTask(f"no container for task {tid} on {self.node_id}")
        stream = await self._call(self._client.api.logs, ids[0], stream=True, follow=follow,
                                  tail="all" if tail is None else tail)
        return _lines_of(stream)

    # -- events -----------------------------------------------------------------------

    # -- exec ----------------------------------------------------------------------------

    async def exec(self, tid: str, request: ExecRequest) -> ExecSession:
        """``request.command`` in the task's running container (``docker_exec``)."""
        ids = await self._ids_of(tid)
        if not ids:
            raise UnknownTask(f"no container for task {tid} on {self.node_id}")
        inspect = await self._call(self._client.api.inspect_container, ids[0])
        if not (inspect.get("State") or {}).get("Running"):
            raise NotRunning(f"task {tid}'s container is not running")
        return await DockerSession.start(self._call, self._client.api, ids[0], request)

    def _watch_events(self) -> None:
        if self._thread is not None or self._closing.is_set():
            return
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside a loop: the first async call starts it
        self._thread = threading.Thread(target=self._events_thread, daemon=True,
                                        name=f"docker-events-{self.node_id}")
        self._thread.start()

    def _events_thread(self) -> None:
        """Connect, stream events, and on any loss go down and try again."""
        filters = {"type": "container", "label": [LABEL_TASK, f"{LABEL_NODE}={self.node_id}"]}
        connected_once = False
        while not self._closing.is_set():
            try:
                self._negotiate()
                since = int(time.time())
                self._stream = self._events_client.api.events(decode=True, filters=filters,
                                                              since=since)
                self._set_state("up", "")
                if connected_once:
                    self._threadsafe(self._spawn, self._resync())
                connected_once = True
                for event in self._stream:
                    self._threadsafe(self._on_event, event)
                if not self._closing.is_set():
                    self._set_state("down", "the Docker Engine closed the events stream")
            except Exception as err:  # the engine is away: say so, retry, never crash
                if self._closing.is_set():
                    return
                self._set_state("down", _engine_error(err))
            self._closing.wait(self.reconnect_interval)

    def _threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:
                pass  # the loop closed under us

    def _set_state(self, state: str, message: str) -> None:
        if self._state["state"] == state:
            return
        log.log(logging.WARNING if state == "down" else logging.INFO,
                "docker runtime on %s: engine %s%s", self.node_id, state,
                f" ({message})" if message else "")
        self._state = {"state": state, "message": message}
        self._threadsafe(self._notify_state)

    def _notify_state(self) -> None:
        for watcher in self._watchers:
            try:
                watcher(self.runtime_state())
            except Exception:
                log.exception("runtime state watcher failed")

    def _on_event(self, event: dict[str, Any]) -> None:
        actor = event.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        c = self._tracked.get(str(attrs.get(LABEL_TASK)))
        cid = actor.get("ID") or event.get("id")
        if c is None or c.container_id != cid:
            return
        action = str(event.get("Action") or event.get("status") or "")
        tid = str(attrs[LABEL_TASK])
        if action == "die" and not c.stopping:
            self._spawn(self._finish(tid, c, int(attrs.get("exitCode") or 0)))
        elif action.startswith("health_status"):
            status = action.partition(":")[2].strip()
            if status == "healthy":
                self._running(tid, c)
            elif status == "unhealthy" and not c.stopping:
                self._emit(tid, {"state": "failed", "error": "container unhealthy"})
                c.stopping = True
                self._spawn(self._ignore_missing(self._client.api.stop, cid, timeout=10))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)
        t.add_done_callback(_log_failure)

    async def _resync(self) -> None:
        """After the engine came back: inspect what we track (a die may have been missed)."""
        for tid, c in list(self._tracked.items()):
            if not c.container_id or c.stopping or state_index(c.state) > state_index("running"):
                continue
            try:
                inspect = await self._call(self._client.api.inspect_container, c.container_id)
            except RuntimeFailure as err:
                if "No such container" in str(err):
                    self._emit(tid, {"state": "failed", "error": "the container disappeared"})
                continue
            await self._observe(tid, c, inspect)

    # -- state changes -------------------------------------------------------------------

    async def _observe(self, tid: str, c: _Container, inspect: dict[str, Any]) -> None:
        report = observed(inspect, c.task)
        if report["state"] == "running":
            self._running(tid, c)
        elif report["state"] in ("complete", "failed") and "exitCode" in report:
            await self._finish(tid, c, int(report["exitCode"]))
        else:
            self._emit(tid, report)

    def _running(self, tid: str, c: _Container) -> None:
        if not c.timed:
            c.timed = True
            metrics.CONTAINER_START_SECONDS.observe(time.monotonic() - c.began)
        self._emit(tid, {"state": "running", "containerId": c.container_id, "ports": c.ports})

    async def _finish(self, tid: str, c: _Container, code: int) -> None:
        if c.stopping or state_index(c.state) > state_index("running"):
            return  # already told (start saw it exit, then the die event came)
        lines = await self._last_lines(c.container_id) if code else ""
        if not c.stopping:
            self._emit(tid, {**exited(code, lines), "containerId": c.container_id})

    def _emit(self, tid: str, report: Report) -> None:
        c = self._tracked.get(tid)
        if c is not None:
            if c.state is not None and state_index(report["state"]) < state_index(c.state):
                return
            c.state = report["state"]
            report.setdefault("containerId", c.container_id)
            if c.ports:
                report.setdefault("ports", c.ports)
        for listener in self._listeners:
            listener(tid, dict(report))

    # -- blocking calls, off the loop ---------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            if not self._negotiated:
                await loop.run_in_executor(self._executor, self._negotiate)
            return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        except docker.errors.APIError as err:
            raise RuntimeFailure(str(err.explanation or err)) from err
        except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
            raise RuntimeFailure(f"the Docker Engine is unreachable: {_engine_error(err)}") \
                from err

    async def _ignore_missing(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            await self._call(fn, *args, **kwargs)
        except RuntimeFailure as err:
            if not isinstance(err.__cause__, docker.errors.NotFound):
                raise

    async def _remove_quietly(self, cid: str) -> None:
        try:
            await self._ignore_missing(self._client.api.remove_container, cid, force=True, v=True)
        except RuntimeFailure as err:
            log.warning("removing container %s: %s", cid[:12], err)

    async def _ensure_image(self, image: str) -> None:
        try:
            await self._call(self._client.api.inspect_image, image)
            return
        except RuntimeFailure as err:
            if not isinstance(err.__cause__, docker.errors.NotFound) or not self.pull:
                raise RuntimeFailure(f"image {image} not found: {err}") from err
        repo, tag = parse_repository_tag(image)
        try:
            await self._call(self._client.api.pull, repo, tag=tag or "latest")
        except RuntimeFailure as err:
            raise RuntimeFailure(f"image {image} not found and cannot be pulled: {err}") from err

    async def _create(self, config: dict[str, Any]) -> str:
        """Create the container (replacing a leftover of ours with that name)."""
        await self._remove_leftover(config["name"])
        kwargs = dict(config)
        host = dict(kwargs.pop("host_config"))
        host["mounts"] = [Mount(m["Target"], m.get("Source"), type=m["Type"],
                                read_only=m["ReadOnly"]) for m in host["mounts"]]
        kwargs["host_config"] = self._client.api.create_host_config(**host)
        if "healthcheck" in kwargs:
            kwargs["healthcheck"] = Healthcheck(**kwargs["healthcheck"])
        created = await self._call(self._client.api.create_container, **kwargs)
        return str(created["Id"])

    async def _remove_leftover(self, name: str) -> None:
        try:
            inspect = await self._call(self._client.api.inspect_container, name)
        except RuntimeFailure:
            return
        found = (inspect.get("Config") or {}).get("Labels") or {}
        if found.get(LABEL_NODE) != self.node_id:
            raise RuntimeFailure(f"a container named {name} exists and is not this node's")
        await self._remove_quietly(inspect["Id"])

    async def _ids_of(self, tid: str) -> builtins.list[str]:
        summaries = await self._call(self._client.api.containers, all=True, filters={
            "label": [f"{LABEL_TASK}={tid}", f"{LABEL_NODE}={self.node_id}"]})
        return [s["Id"] for s in summaries]

    async def _last_lines(self, cid: str | None, inspect: dict[str, Any] | None = None) -> str:
        if not cid or (inspect and ((inspect.get("State") or {}).get("ExitCode") or 0) == 0):
            return ""
        try:
            out = await self._call(self._client.api.logs, cid, tail=LAST_LINES)
        except RuntimeFailure:
            return ""
        return bytes(out).decode("utf-8", "replace").strip()


async def _lines_of(stream: Any) -> AsyncIterator[bytes]:
    """Lines of a blocking docker stream, read by a thread of its own (a follow may last)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1000)

    def pump() -> None:
        try:
            for chunk in stream:
                asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
        except Exception:
            pass
        finally:
            with _suppress_closed_loop():
                asyncio.run_coroutine_threadsafe(queue.put(None), loop)

    threading.Thread(target=pump, daemon=True, name="docker-logs").start()
    buffer = b""
    try:
        while (chunk := await queue.get()) is not None:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line + b"\n"
        if buffer:
            yield buffer + b"\n"
    finally:
        await asyncio.to_thread(_close_quietly, stream)


class _suppress_closed_loop:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return exc[0] is RuntimeError


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _close_quietly(thing: Any) -> None:
    try:
        thing.close()
    except Exception:
        pass


def _log_failure(t: asyncio.Task[None]) -> None:
    if not t.cancelled() and t.exception() is not None:
        log.warning("docker runtime: %s", t.exception())


def _engine_error(err: BaseException) -> str:
    text = str(err)
    return text if len(text) < 200 else text[:197] + "..."


def _start_error(message: str, ports: dict[str, Any]) -> str:
    if "port is already allocated" in message or "address already in use" in message:
        taken = ", ".join(f"{b[1]}/{k.partition('/')[2]}" for k, b in ports.items()
                          if len(b) == 2)
        return f"published port {taken or '?'} is already in use on this node ({message})"
    return f"starting the container: {message}"
