"""``kubeless logs TASK`` and ``kubeless service logs NAME``: task output, through the node's agent.

Logs stay on the node that ran the task, as with docker: the CLI reads the
task (its node), then that node's heartbeat (its ``address`` and
``logsPort``), and asks the agent there for ``/logs/<task-id>?tail=N&follow=1``
over HTTP. Every line is printed as ``<service>.<slot>.<task-id>@<node> | line``
(``--no-prefix``: bare). A node that is down has no heartbeat: its tasks'
logs cannot be read, and the CLI says so.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any
from urllib.parse import quote

import click

from kubeless_cli.context import CliError, Context, current_namespace, pass_context
from kubeless_cli.flags import flag


@click.command("logs")
@click.argument("task_id")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("-f", "--follow", help="Keep printing output until the task stops.")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@flag("--no-prefix", help="Print lines without the task@node prefix.")
@pass_context
def logs(ctx: Context, task_id: str, namespace: str | None, follow: bool, tail: int | None,
         no_prefix: bool) -> None:
    """Print a task's output (the task id, or a unique prefix of it)."""
    ns = current_namespace(namespace)

    async def run(rstore: Any) -> None:
        from kubeless.store.tasks import list_tasks

        tasks = [t for t in (await list_tasks(rstore, ns)).items
                 if t["metadata"]["name"].startswith(task_id)]
        if not tasks:
            raise CliError(f"no such task: {task_id} (namespace {ns})")
        if len(tasks) > 1:
            raise CliError(f"task id {task_id} is ambiguous: "
                           f"{', '.join(t['metadata']['name'] for t in tasks)}")
        await stream_tasks(rstore, tasks, follow, tail, not no_prefix, strict=True)

    ctx.run(run)


def service_logs(ctx: Context, name: str, namespace: str | None, follow: bool,
                 tail: int | None, no_prefix: bool) -> None:
    """``kubeless service logs``: the output of every task of a service that still has it."""
    ns = current_namespace(namespace)

    async def run(rstore: Any) -> None:
        from kubeless.store.tasks import list_tasks

        tasks = (await list_tasks(rstore, ns, name)).items
        if not tasks and await rstore.get("Service", name, ns) is None:
            raise CliError(f'service "{name}" not found in namespace {ns}')
        tasks.sort(key=lambda t: (t["spec"].get("slot") or 0, t["metadata"]["name"]))
        await stream_tasks(rstore, tasks, follow, tail, not no_prefix, strict=False)

    ctx.run(run)


async def stream_tasks(rstore: Any, tasks: list[dict[str, Any]], follow: bool,
                       tail: int | None, prefix: bool, *, strict: bool) -> None:
    """Print the logs of ``tasks`` concurrently; ``strict``: a task without logs is an error."""
    from kubeless.api.tasks import container_name

    streams = []
    for t in tasks:
        node = t["spec"].get("nodeName") or (t.get("status") or {}).get("nodeName")
        if not node:
            if strict:
                raise CliError(f"task {t['metadata']['name']} has no node yet: no logs")
            continue
        where = await _agent_address(rstore, node)
        if where is None:
            if strict:
                raise CliError(f"node {node} is down (no heartbeat): the logs of task "
                               f"{t['metadata']['name']} cannot be read")
            click.echo(f"warning: node {node} is down; skipping {container_name(t)}", err=True)
            continue
        label = f"{container_name(t)}@{node} | " if prefix else ""
        streams.append(_print_stream(where, t["metadata"]["name"], label, follow, tail, strict))
    await asyncio.gather(*streams)


async def _agent_address(rstore: Any, node: str) -> tuple[str, int] | None:
    kv, _ = await rstore.etcd.get(rstore.keys.heartbeat(node))
    if kv is None:
        return None
    try:
        beat = json.loads(kv.value)
        return str(beat["address"]), int(beat["logsPort"])
    except (ValueError, KeyError, TypeError):
        raise CliError(f"node {node}'s agent does not serve logs (no logsPort in its "
                       "heartbeat)") from None


async def _print_stream(where: tuple[str, int], tid: str, label: str, follow: bool,
                        tail: int | None, strict: bool) -> None:
    query = "&".join(([f"tail={tail}"] if tail is not None else []) +
                     (["follow=1"] if follow else []))
    try:
        reader, writer = await asyncio.open_connection(*where)
    except OSError as err:
        raise CliError(f"cannot reach the agent at {where[0]}:{where[1]}: {err}") from None
    try:
        writer.write(f"GET /logs/{quote(tid)}?{query} HTTP/1.1\r\nHost: {where[0]}\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        status = (await reader.readline()).decode("latin-1").split(" ", 2)
        while (await reader.readline()).strip():
            pass
        if len(status) < 2 or status[1] != "200":
            body = (await reader.read()).decode("utf-8", "replace").strip()
            if strict:
                raise CliError(f"logs of task {tid}: {body or ' '.join(status).strip()}")
            return
        out = sys.stdout.buffer
        head = label.encode()
        while line := await reader.readline():
            out.write(head + line if line.endswith(b"\n") else head + line + b"\n")
            out.flush()
    finally:
        writer.close()
