"""The Swarm-like ``kubeless service`` verbs: create, update, scale, ls, inspect, rm.

They only write desired state: each builds or changes the same Service
resource that ``apply`` would store (service_flags.py does the flag
parsing), validates it against the CRD, and writes it with a compare on
what it read. The options are generated from ``ServiceFlags`` so the two
cannot drift apart. Published ports are numbered and checked as apply
does: every write goes through kubeless.store.services (published.py says
what it refuses).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import click

from kubeless.api import workload
from kubeless.api.ports import ports_text

from kubeless_cli import published
from kubeless_cli.context import USAGE, CliError, Context, current_namespace, pass_context
from kubeless_cli.flags import flag
from kubeless_cli.progress import converge, parse_timeout, timeout_option
from kubeless_cli.printers import decorate, format_rows
from kubeless_cli.service_flags import (UPDATE_ONLY, FlagError, ServiceFlags, build_service,
                                        flag_name, short_name, update_service)

_POSITIONAL = ("name", "image", "command", "namespace")


def _flag_options(update: bool) -> Callable[[Any], Any]:
    """Click options for every ServiceFlags field (docker's spelling)."""
    def decorate_command(fn: Any) -> Any:
        for f in reversed(dataclasses.fields(ServiceFlags)):
            if f.name in ("command", "namespace") or (f.name in UPDATE_ONLY and not update):
                continue
            if f.name == "image" and not update:
                continue
            if f.name == "name" and update:
                continue
            short = short_name(f.name, update)
            spelled = (short, flag_name(f.name, update)) if short else (flag_name(f.name, update),)
            if f.type == "bool":
                fn = flag(*spelled, f.name)(fn)
            elif f.type == "bool | None":  # --x/--no-x; neither: unchanged
                fn = flag(f"{spelled[-1]}/--no-{spelled[-1][2:]}", f.name, default=None)(fn)
            elif str(f.type).startswith("tuple"):
                fn = click.option(*spelled, f.name, multiple=True, metavar="VALUE")(fn)
            else:
                fn = click.option(*spelled, f.name, metavar="VALUE")(fn)
        return fn
    return decorate_command


def _flags(namespace: str | None, **values: Any) -> ServiceFlags:
    return ServiceFlags(namespace=current_namespace(namespace),
                        **{k: v for k, v in values.items() if v not in (None, ())})


def _validated(doc: dict[str, Any]) -> dict[str, Any]:
    from kubeless.api import ApiError, validate

    try:
        return validate(doc)
    except ApiError as err:
        raise CliError(str(err)) from None


@click.group()
def service() -> None:
    """Manage services the Swarm way (they are Service resources)."""


@service.command("create", context_settings={"allow_interspersed_args": False})
@click.argument("image")
@click.argument("command", nargs=-1)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("-d", "--detach", help="Return at once instead of waiting for the tasks to converge.")
@timeout_option
@_flag_options(update=False)
@pass_context
def create(ctx: Context, /, image: str, command: tuple[str, ...], namespace: str | None,
           detach: bool, timeout: str, **values: Any) -> None:
    """Create a service: IMAGE [COMMAND [ARG...]], as docker service create."""
    try:
        doc = build_service(_flags(namespace, image=image, command=command, **values))
    except FlagError as err:
        raise CliError(str(err), USAGE) from None
    doc = _validated(doc)

    wait = None if detach else parse_timeout(timeout)
    name, ns = doc["metadata"]["name"], doc["metadata"]["namespace"]

    async def run(rstore: Any) -> None:
        from kubeless.store import AlreadyExists

        try:
            await _create(rstore, doc)
        except AlreadyExists:
            raise CliError(f'service "{name}" already exists in namespace {ns}') from None
        click.echo(name)
        if wait is not None:
            await converge(rstore, ns, name, wait)

    ctx.run(run)


async def _create(rstore: Any, doc: dict[str, Any]) -> None:
    """Create a service; one that publishes ports gets them numbered and checked, and is
    written only if no service changed meanwhile (kubeless.store.services)."""
    from kubeless.store import services

    with published.refusals():
        await services.create_service(rstore, doc)


async def _run_before(rstore: Any, ns: str, name: str, force: bool) -> int | None:
    """A job's run before a write that starts a new one (None: nothing to wait for but the
    spec: a scheduled job's edit waits for its next tick, unless forced)."""
    live = await rstore.get("Service", name, ns)
    if live is None or not workload.is_job(live):
        return None
    if (live.get("spec") or {}).get("schedule") and not force:
        return None
    return int(((live.get("status") or {}).get("job") or {}).get("run") or 0)


async def _read_modify_write(rstore: Any, name: str, namespace: str,
                             change: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """Read a service, change it, validate, merge and write it comparing what was read
    (and, when the ports change, guarded against every other service's:
    kubeless.store.services.update_service). False: nothing changed."""
    from kubeless.store import NotFound, services

    try:
        with published.refusals():
            return await services.update_service(rstore, name, namespace,
                                                 lambda live: _validated(change(live)))
    except NotFound as err:
        raise CliError(str(err)) from None


@service.command("update")
@click.argument("name")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("-d", "--detach", help="Return at once instead of waiting for the tasks to converge.")
@timeout_option
@_flag_options(update=True)
@pass_context
def update(ctx: Context, /, name: str, namespace: str | None, detach: bool, timeout: str,
           **values: Any) -> None:
    """Change a service, as docker service update (--force replaces every task)."""
    ns = current_namespace(namespace)
    try:
        flags = _flags(ns, name=name, **values)
    except FlagError as err:
        raise CliError(str(err), USAGE) from None

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        from kubeless.api.service_writes import replicas_refusal

        refusal = replicas_refusal(doc) if flags.replicas is not None else None
        if refusal:
            raise CliError(refusal)
        try:
            return update_service(doc, flags)
        except FlagError as err:
            raise CliError(str(err), USAGE) from None

    changed: dict[str, Any] = {}

    def noted(doc: dict[str, Any]) -> dict[str, Any]:
        new = change(doc)
        changed["job"] = workload.is_job(new)
        return new

    wait = None if detach else parse_timeout(timeout)

    async def run(rstore: Any) -> None:
        run_before = await _run_before(rstore, ns, name, bool(flags.force))
        written = await _read_modify_write(rstore, name, ns, noted)
        click.echo(name)
        if changed.get("job") and flags.force:
            click.echo(f"{name} is a job: a new run starts (kubeless describe service {name} "
                       f"follows it)")
        if wait is not None and written:
            await converge(rstore, ns, name, wait, run_before=run_before)

    ctx.run(run)


@service.command("scale")
@click.argument("pairs", nargs=-1, required=True, metavar="SERVICE=REPLICAS...")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("-d", "--detach", help="Return at once instead of waiting for the tasks to converge.")
@timeout_option
@pass_context
def scale(ctx: Context, pairs: tuple[str, ...], namespace: str | None, detach: bool,
          timeout: str) -> None:
    """Set the replicas of one or more replicated services."""
    ns = current_namespace(namespace)
    wanted = []
    for pair in pairs:
        name, sep, count = pair.partition("=")
        if not sep or not count.isdigit():
            raise CliError(f"invalid scale {pair!r}: use SERVICE=REPLICAS, e.g. web=3", USAGE)
        wanted.append((name, int(count)))

    def set_replicas(count: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def change(doc: dict[str, Any]) -> dict[str, Any]:
            if workload.is_global(doc):
                raise CliError(f'service "{doc["metadata"]["name"]}" is {workload.mode_of(doc)}: '
                               "it runs one task per node and cannot be scaled")
            _refuse_autoscaled(doc)
            return {**doc, "spec": {**doc["spec"], "replicas": count}}
        return change

    wait = None if detach else parse_timeout(timeout)

    async def run(rstore: Any) -> None:
        for name, _ in wanted:  # an autoscaled one refuses them all, before any write
            live = await rstore.get("Service", name, ns)
            if live is not None:
                _refuse_autoscaled(live)
        for name, count in wanted:
            await _read_modify_write(rstore, name, ns, set_replicas(count))
            click.echo(f"{name} scaled to {count}")
        if wait is not None:
            for name, _ in wanted:
                await converge(rstore, ns, name, wait)

    ctx.run(run)


def _refuse_autoscaled(live: dict[str, Any]) -> None:
    """CliError when the autoscaler owns the service's replicas."""
    from kubeless.api.service_writes import replicas_refusal

    refusal = replicas_refusal(live)
    if refusal:
        raise CliError(refusal)


@service.command("ls")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("-A", "--all-namespaces", help="Every namespace.")
@flag("-q", "--quiet", help="Only names.")
@pass_context
def ls(ctx: Context, namespace: str | None, all_namespaces: bool, quiet: bool) -> None:
    """List services: ID, NAME, MODE, REPLICAS, IMAGE, PORTS."""
    ns = None if all_namespaces else current_namespace(namespace)
    result = ctx.run(lambda rstore: rstore.list("Service", ns))
    from kubeless_cli.read_cmds import warn_skipped
    from kubeless.store import Keyspace

    warn_skipped("service", result.skipped, Keyspace(ctx.prefix))
    if quiet:
        click.echo("".join(f"{s['metadata']['name']}\n" for s in result.items), nl=False)
        return
    rows = []
    for raw in result.items:
        s = decorate(raw)
        meta, spec = s["metadata"], s["spec"]
        name = f"{meta['namespace']}/{meta['name']}" if all_namespaces else meta["name"]
        rows.append([meta.get("uid", "").replace("-", "")[:12], name, spec.get("mode", "replicated"),
                     s["status"]["replicasText"], spec["template"]["image"],
                     ports_text(spec.get("ports"))])
    click.echo(format_rows(["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"], rows), nl=False)


@service.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("--pretty", help="Human-readable instead of JSON.")
@pass_context
def inspect(ctx: Context, names: tuple[str, ...], namespace: str | None, pretty: bool) -> None:
    """Show services in full (a JSON array, as docker service inspect)."""
    ns = current_namespace(namespace)

    async def run(rstore: Any) -> list[dict[str, Any]]:
        found = []
        for name in names:
            obj = await rstore.get("Service", name, ns)
            if obj is None:
                raise CliError(f'service "{name}" not found in namespace {ns}')
            found.append(obj)
        return found

    items = ctx.run(run)
    if pretty:
        from kubeless.api import resolve_kind
        from kubeless_cli.printers import describe as describe_text

        click.echo("\n".join(describe_text(resolve_kind("Service"), i) for i in items), nl=False)
    else:
        click.echo(json.dumps(items, indent=2))


@service.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@pass_context
def rm(ctx: Context, names: tuple[str, ...], namespace: str | None) -> None:
    """Remove services (their tasks are shut down by the controllers)."""
    ns = current_namespace(namespace)

    async def run(rstore: Any) -> list[str]:
        from kubeless.store import NotFound

        failed = []
        for name in names:
            try:
                await rstore.delete("Service", name, ns)
                click.echo(name)
            except NotFound:
                failed.append(name)
        return failed

    failed = ctx.run(run)
    if failed:
        raise CliError(f"no such service: {', '.join(failed)}")


def ps_rows(tasks: list[dict[str, Any]], now: float, no_trunc: bool = False) -> list[list[str]]:
    """docker service ps rows: per slot (or node), newest first; history marked ``\\_``."""
    from kubeless.api import human_duration
    from kubeless.api.tasks import task_display_name

    def order(t: dict[str, Any]) -> tuple[Any, ...]:
        spec = t["spec"]
        slot = spec.get("slot")
        return (spec.get("serviceName", ""), slot if slot is not None else 0,
                spec.get("nodeName") or "" if slot is None else "",
                -float((t.get("status") or {}).get("timestamp") or 0))

    rows, previous = [], None
    for t in sorted(tasks, key=order):
        spec, status = t["spec"], t.get("status") or {}
        name = task_display_name(t)
        shown = name if name != previous else f" \\_ {name}"
        previous = name
        when = status.get("timestamp")
        ago = f" {human_duration(int(max(0, now - float(when))))} ago" if when else ""
        error = str(status.get("error") or "")
        rows.append([t["metadata"]["name"] if no_trunc else t["metadata"]["name"][:12], shown,
                     spec.get("template", {}).get("image", ""), spec.get("nodeName") or "",
                     _desired_shown(spec, status),
                     f"{str(status.get('state', 'new')).capitalize()}{ago}",
                     error if no_trunc or len(error) <= 60 else error[:57] + "..."])
    return rows


def _desired_shown(spec: dict[str, Any], status: dict[str, Any]) -> str:
    """A job's task that completed is meant to: Complete, as docker shows it."""
    desired = str(spec.get("desiredState", ""))
    if spec.get("jobRun") and desired == "running" and status.get("state") == "complete":
        desired = "complete"
    return desired.capitalize()


@service.command("ps")
@click.argument("names", nargs=-1, required=True)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("--no-trunc", help="Full task ids and errors.")
@flag("-q", "--quiet", help="Only task ids.")
@pass_context
def ps(ctx: Context, names: tuple[str, ...], namespace: str | None, no_trunc: bool,
       quiet: bool) -> None:
    """List the tasks of services, with their history (as docker service ps)."""
    import time

    from kubeless.store.tasks import list_tasks

    ns = current_namespace(namespace)

    async def run(rstore: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for name in names:
            tasks = (await list_tasks(rstore, ns, name)).items
            if not tasks and await rstore.get("Service", name, ns) is None:
                raise CliError(f'service "{name}" not found in namespace {ns}')
            found += tasks
        return found

    tasks = ctx.run(run)
    if quiet:
        click.echo("".join(f"{t['metadata']['name']}\n" for t in tasks), nl=False)
        return
    head = ["ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"]
    click.echo(format_rows(head, ps_rows(tasks, time.time(), no_trunc)), nl=False)


@service.command("rollback")
@click.argument("name")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("-d", "--detach", help="Return at once instead of waiting for the tasks to converge.")
@timeout_option
@pass_context
def rollback(ctx: Context, name: str, namespace: str | None, detach: bool,
             timeout: str) -> None:
    """Put a service's previous spec back (current and previous swap), as docker service rollback."""
    from kubeless_cli.rollout_cmds import roll_back

    ns = current_namespace(namespace)
    wait = None if detach else parse_timeout(timeout)

    async def run(rstore: Any) -> None:
        await roll_back(rstore, name, ns)
        click.echo(name)
        if wait is not None:
            await converge(rstore, ns, name, wait, rollback=True)

    ctx.run(run)


@service.command("rebalance")
@click.argument("name")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@pass_context
def rebalance(ctx: Context, name: str, namespace: str | None) -> None:
    """Move a replicated service's tasks once until they spread evenly over the eligible
    nodes (update.parallelism at a time, in update.order); see placement.rebalance."""
    import time

    from kubeless_cli.rollout_cmds import request_rebalance

    ns = current_namespace(namespace)
    now = time.time()
    ctx.run(lambda rstore: request_rebalance(rstore, name, ns, now))
    click.echo(f"service {ns}/{name}: rebalance requested")


@service.command("logs")
@click.argument("name")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("-f", "--follow", help="Keep printing output until the tasks stop.")
@click.option("--tail", type=int, default=None, help="Only the last N lines of each task.")
@flag("--no-prefix", help="Print lines without the task@node prefix.")
@pass_context
def logs(ctx: Context, name: str, namespace: str | None, follow: bool, tail: int | None,
         no_prefix: bool) -> None:
    """Print the output of a service's tasks, through their nodes' agents (as docker)."""
    from kubeless_cli.logs_cmd import service_logs

    service_logs(ctx, name, namespace, follow, tail, no_prefix)
