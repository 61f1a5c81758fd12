"""``kubeless exec [-i] [-t] TASK -- CMD [ARGS...]``: a command in a running task, as docker exec.

TASK is a task id, a unique prefix of one, or the task's name as ``service ps``
shows it: ``web.2`` (a replicated slot; the running task of that slot) or
``web.<node>`` (a global service's task on that node). Like ``logs``, the CLI
reads the task's node and that node's heartbeat, and asks the agent there
(``POST /exec/<task-id>`` on ``logsPort``, over TLS with the user's certificate:
``kubeless.cluster.exec_wire``, ``kubeless_agent.exec``). Only an ``admin:``
identity may exec; the agent refuses a node's or manager's certificate, and
never serves exec over plain HTTP.

``-i`` sends our stdin to the command (its end closes the command's stdin);
without it the command's stdin is empty. ``-t`` gives the command a terminal:
ours goes to raw mode while it runs (restored on exit) and stdout carries the
terminal's bytes; without ``-t`` stdout and stderr stay apart. The CLI exits
with the command's exit code (126: it cannot run, 127: not found, as docker
exec), or 1 with one line when the task is not found, not running, or its node is
down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import click

from kubeless_cli.context import USAGE, CliError, Context, current_namespace, pass_context
from kubeless_cli.flags import flag

Resource = dict[str, Any]


@click.command("exec", context_settings={"allow_interspersed_args": False})
@flag("-i", "--interactive", help="Send stdin to the command.")
@flag("-t", "--tty", help="Give the command a terminal (ours in raw mode meanwhile).")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@click.argument("task")
@click.argument("command", nargs=-1, required=True)
@pass_context
def exec_(ctx: Context, interactive: bool, tty: bool, namespace: str | None, task: str,
          command: tuple[str, ...]) -> None:
    """Run a command in a running task: TASK is a task id (or unique prefix), or web.2 /
    web.<node> as `service ps` names tasks."""
    if command[:1] == ("--",):  # TASK -- CMD: click keeps the -- once options have ended
        command = command[1:]
    if not command:
        raise CliError("say what to run: kubeless exec TASK -- CMD [ARGS...]", USAGE)
    ns = current_namespace(namespace)

    async def run(rstore: Any) -> int:
        found = await find_task(rstore, ns, task)
        return await _exec(rstore, found, command, interactive, tty, ctx)

    sys.exit(ctx.run(run))


async def find_task(rstore: Any, ns: str, word: str) -> Resource:
    """The running task ``word`` names (see the module docstring); ``CliError`` otherwise."""
    from kubeless.api.tasks import task_display_name
    from kubeless.store.tasks import list_tasks

    service, dot, _ = word.rpartition(".")
    tasks = (await list_tasks(rstore, ns, service if dot else None)).items
    exact = [t for t in tasks if t["metadata"]["name"] == word]
    if not exact and dot:
        exact = [t for t in tasks if task_display_name(t) == word]
    if not exact:
        exact = [t for t in tasks if t["metadata"]["name"].startswith(word)]
        if len(exact) > 1:
            raise CliError(f"task id {word} is ambiguous: "
                           f"{', '.join(t['metadata']['name'] for t in exact)}")
    if not exact:
        raise CliError(f"no such task: {word} (namespace {ns})")
    running = [t for t in exact if _state(t) == "running"
               and (t["spec"].get("desiredState") or "running") == "running"]
    if not running:
        t = max(exact, key=_created)
        raise CliError(f"task {task_display_name(t)} ({t['metadata']['name']}) is not "
                       f"running: {_state(t)}")
    return max(running, key=_created)  # a start-first pair: the new one


def _state(task: Resource) -> str:
    return str((task.get("status") or {}).get("state") or "new")


def _created(task: Resource) -> str:
    return str((task.get("metadata") or {}).get("creationTimestamp") or "")


async def _exec(rstore: Any, task: Resource, command: tuple[str, ...], interactive: bool,
                tty: bool, ctx: Context) -> int:
    from kubeless.cluster.exec_wire import ExecRequest
    from kubeless_cli.logs_cmd import NodeContexts, agent_address, agent_request

    tid = task["metadata"]["name"]
    node = task["spec"].get("nodeName") or (task.get("status") or {}).get("nodeName")
    where = await agent_address(rstore, node) if node else None
    if where is None:
        raise CliError(f"node {node} is down (no heartbeat): cannot exec in task {tid}")
    tls = ctx.tls()
    context = NodeContexts(tls).get(where.node) if where.tls else None
    request = ExecRequest(command, stdin=interactive, tty=tty, size=_terminal_size() if tty
                          else None).to_json()
    reader, writer, status = await agent_request(
        where, context, tls, (f"POST /exec/{quote(tid)} HTTP/1.1\r\nHost: {where.host}\r\n"
                              f"Content-Type: application/json\r\n"
                              f"Content-Length: {len(request)}\r\nConnection: Upgrade\r\n"
                              f"Upgrade: kubeless-exec\r\n\r\n").encode() + request)
    try:
        if status[1:2] != ["101"]:
            body = (await reader.read()).decode("utf-8", "replace").strip()
            raise CliError(f"exec in task {tid}: {body or ' '.join(status).strip()}")
        with _raw_terminal(tty):
            return await _session(reader, writer, interactive)
    finally:
        writer.close()


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   interactive: bool) -> int:
    """Frames out to stdout/stderr, stdin in (``-i``); the exit frame's code."""
    from kubeless.cluster.exec_wire import (EXIT, STDERR, STDIN, FrameError, exit_code, frame,
                                            parse_header)

    sender = asyncio.ensure_future(_send_stdin(writer, frame, STDIN)) if interactive else None
    try:
        while True:
            try:
                stream, size = parse_header(await reader.readexactly(8))
                data = await reader.readexactly(size) if size else b""
            except (asyncio.IncompleteReadError, ConnectionError):
                raise CliError("the agent hung up before the command ended") from None
            except FrameError as err:
                raise CliError(str(err)) from None
            if stream == EXIT:
                return exit_code(data)
            out = sys.stderr.buffer if stream == STDERR else sys.stdout.buffer
            out.write(data)
            out.flush()
    finally:
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender


async def _send_stdin(writer: asyncio.StreamWriter, frame: Any, stdin_stream: int) -> None:
    """Our stdin as STDIN frames, then an empty one (its end). A daemon thread reads it: a
    blocked read must not keep the CLI alive once the command has ended."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def read() -> None:
        while True:
            try:
                data = os.read(sys.stdin.fileno(), 65536)
            except OSError:
                data = b""
            loop.call_soon_threadsafe(chunks.put_nowait, data)
            if not data:
                return

    threading.Thread(target=read, name="exec-stdin", daemon=True).start()
    while True:
        data = await chunks.get()
        writer.write(frame(stdin_stream, data))
        await writer.drain()
        if not data:
            return


def _terminal_size() -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return None
    return (size.lines, size.columns) if size.lines and size.columns else None


@contextlib.contextmanager
def _raw_terminal(tty: bool) -> Iterator[None]:
    """Our terminal in raw mode while a ``-t`` session runs (when stdin is one), restored
    however the session ends."""
    fd = sys.stdin.fileno() if tty else -1
    if not tty or not os.isatty(fd):
        yield
        return
    import termios
    import tty as tty_mode

    saved = termios.tcgetattr(fd)
    tty_mode.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
