"""``kubeless logs TASK`` and ``kubeless service logs NAME``: task output, through the node's agent.

Logs stay on the node that ran the task, as with docker: the CLI reads the
task (its node), then that node's heartbeat (its ``address`` and
``logsPort``), and asks the agent there for ``/logs/<task-id>?tail=N&follow=1``
over HTTP, or over TLS when the heartbeat says ``logsTLS`` (the node's certificate
verified against the cluster CA and the node's address, the user's own
presented: the same ``--cacert``/``--cert``/``--key`` or ``KUBELESS_CERT_PATH``
as for etcd; ``kubeless.cluster.node_tls``). Every line is printed as ``<service>.<slot>.<task-id>@<node> | line``
(``--no-prefix``: bare). A node that is down has no heartbeat: its tasks'
logs cannot be read, and the CLI says so.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import click

from kubeless_cli.context import CliError, Context, current_namespace, pass_context
from kubeless_cli.flags import flag

if TYPE_CHECKING:
    from kubeless.store import TlsConfig


@dataclass(frozen=True)
class AgentAddress:
    """Where a node's agent serves logs, as its heartbeat says."""

    node: str
    host: str
    port: int
    tls: bool = False

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


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
        await stream_tasks(rstore, tasks, follow, tail, not no_prefix, strict=True,
                           tls=ctx.tls())

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
        await stream_tasks(rstore, tasks, follow, tail, not no_prefix, strict=False,
                           tls=ctx.tls())

    ctx.run(run)


async def stream_tasks(rstore: Any, tasks: list[dict[str, Any]], follow: bool,
                       tail: int | None, prefix: bool, *, strict: bool,
                       tls: TlsConfig | None = None) -> None:
    """Print the logs of ``tasks`` concurrently; ``strict``: a task without logs is an error;
    ``tls``: the user's identity, for the nodes that serve logs over TLS."""
    from kubeless.api.tasks import container_name

    streams = []
    contexts = NodeContexts(tls)
    for t in tasks:
        node = t["spec"].get("nodeName") or (t.get("status") or {}).get("nodeName")
        if not node:
            if strict:
                raise CliError(f"task {t['metadata']['name']} has no node yet: no logs")
            continue
        where = await agent_address(rstore, node)
        if where is None:
            if strict:
                raise CliError(f"node {node} is down (no heartbeat): the logs of task "
                               f"{t['metadata']['name']} cannot be read")
            click.echo(f"warning: node {node} is down; skipping {container_name(t)}", err=True)
            continue
        label = f"{container_name(t)}@{node} | " if prefix else ""
        context = contexts.get(where.node) if where.tls else None
        streams.append(_print_stream(where, context, t["metadata"]["name"], label, follow, tail,
                                     strict, tls))
    await asyncio.gather(*streams)


class NodeContexts:
    """One client TLS context for every node (made at the first that needs it)."""

    def __init__(self, tls: TlsConfig | None) -> None:
        self.tls = tls
        self._context: ssl.SSLContext | None = None

    def get(self, node: str) -> ssl.SSLContext:
        from kubeless.cluster.node_tls import client_context
        from kubeless.store import TlsError

        if self._context is None:
            try:
                self._context = client_context(self.tls, node)
            except TlsError as err:
                raise CliError(str(err)) from None
        return self._context


async def agent_address(rstore: Any, node: str) -> AgentAddress | None:
    kv, _ = await rstore.etcd.get(rstore.keys.heartbeat(node))
    if kv is None:
        return None
    try:
        beat = json.loads(kv.value)
        return AgentAddress(node, str(beat["address"]), int(beat["logsPort"]),
                            beat.get("logsTLS") is True)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CliError(f"node {node}'s agent does not serve logs (no logsPort in its "
                       "heartbeat)") from None


async def _print_stream(where: AgentAddress, context: ssl.SSLContext | None, tid: str,
                        label: str, follow: bool, tail: int | None, strict: bool,
                        tls: TlsConfig | None) -> None:
    query = "&".join(([f"tail={tail}"] if tail is not None else []) +
                     (["follow=1"] if follow else []))
    reader, writer, status = await agent_request(
        where, context, tls, f"GET /logs/{quote(tid)}?{query} HTTP/1.1\r\n"
                             f"Host: {where.host}\r\nConnection: close\r\n\r\n".encode())
    try:
        if status[1:2] != ["200"]:
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


async def agent_request(where: AgentAddress, context: ssl.SSLContext | None,
                        tls: TlsConfig | None, request: bytes,
                        ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, list[str]]:
    """Send ``request`` to the node's agent; (reader, writer, the status line's words), the
    headers read. A TLS or connection failure is one ``CliError`` naming what to fix."""
    try:
        reader, writer = await asyncio.open_connection(
            where.host, where.port, ssl=context,
            server_hostname=where.host if context is not None else None)
    except ssl.SSLError as err:
        raise CliError(tls_failure(err, where, tls)) from None
    except OSError as err:
        raise CliError(f"cannot reach the agent at {where}: {err}") from None
    try:
        writer.write(request)
        await writer.drain()
        try:
            first = await reader.readline()
        except (ssl.SSLError, ConnectionError) as err:
            if context is None:
                raise CliError(f"the agent at {where} hung up: {err}") from None
            raise CliError(tls_failure(err, where, tls)) from None
        if not first and context is not None:  # TLS 1.3: the node's alert, or its hangup
            raise CliError(tls_failure(None, where, tls))
        while (await reader.readline()).strip():
            pass
    except BaseException:
        writer.close()
        raise
    return reader, writer, first.decode("latin-1").split(" ", 2)


def tls_failure(err: OSError | None, where: AgentAddress, tls: TlsConfig | None) -> str:
    from kubeless.cluster.node_tls import describe, failure_kind

    if isinstance(err, ssl.SSLCertVerificationError):
        kind = failure_kind(err.reason, err.verify_code)
    else:
        kind = failure_kind(getattr(err, "reason", None), None)
    return describe(kind, where.node, str(where), tls)
