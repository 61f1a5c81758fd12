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

from kubeless.api.columns import state_text
from kubeless_cli import published
from kubeless_cli.apply_cmd import apply_documents, dry_run_option, dry_run_suffix
from kubeless_cli.completion import complete_names
from kubeless_cli.context import USAGE, CliError, Context, current_namespace, pass_context
from kubeless_cli.flags import flag
from kubeless_cli.listing import (Rule, check_format, checked, exact, filter_option, format_option,
                                  labelled, matching, parse_filters, prefix, render)
from kubeless_cli.printers import decorate
from kubeless_cli.progress import converge, parse_timeout, timeout_option
from kubeless_cli.service_flag_help import flag_help
from kubeless_cli.service_flags import (UPDATE_ONLY, FlagError, ServiceFlags, build_service,
                                        env_file_entries, flag_name, short_name, update_service)

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
            metavar, text = flag_help(f.name, update)
            if f.type == "bool":
                fn = flag(*spelled, f.name, help=text)(fn)
            elif f.type == "bool | None":  # --x/--no-x; neither: unchanged
                fn = flag(f"{spelled[-1]}/--no-{spelled[-1][2:]}", f.name, default=None,
                          help=text)(fn)
            elif str(f.type).startswith("tuple"):
                fn = click.option(*spelled, f.name, multiple=True, metavar=metavar,
                                  help=text + " (repeatable)")(fn)
            else:
                fn = click.option(*spelled, f.name, metavar=metavar, help=text)(fn)
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
@click.option("--env-file", "env_files", multiple=True, metavar="FILE",
              help="Read environment variables from a file: KEY=VALUE lines, # comments "
                   "(repeatable; --env wins).")
@dry_run_option
@_flag_options(update=False)
@pass_context
def create(ctx: Context, /, image: str, command: tuple[str, ...], namespace: str | None,
           detach: bool, timeout: str, env_files: tuple[str, ...], dry_run: str,
           **values: Any) -> None:
    """Create a service: IMAGE [COMMAND [ARG...]], as docker service create."""
    try:
        values["env"] = _env_from_files(env_files) + tuple(values.get("env") or ())
        doc = build_service(_flags(namespace, image=image, command=command, **values))
    except FlagError as err:
        raise CliError(str(err), USAGE) from None
    doc = _validated(doc)
    name, ns = doc["metadata"]["name"], doc["metadata"]["namespace"]
    exists = CliError(f'service "{name}" already exists in namespace {ns}')
    if dry_run == "client":
        click.echo(f"service/{name} valid{dry_run_suffix(dry_run)}")
        return

    wait = None if detach else parse_timeout(timeout)

    async def run(rstore: Any) -> None:
        from kubeless.store import AlreadyExists

        if dry_run == "server":
            actions = await apply_documents(rstore, [("service create", doc)], None, True)
            if any(a.verb != "created" for a in actions):
                raise exists
            return
        try:
            await _create(rstore, doc)
        except AlreadyExists:
            raise exists from None
        click.echo(name)
        if wait is not None:
            await converge(rstore, ns, name, wait)

    ctx.run(run)
    if dry_run == "server":
        click.echo(f"service/{name} created{dry_run_suffix(dry_run)}")


def _env_from_files(paths: tuple[str, ...]) -> tuple[str, ...]:
    """--env-file's KEY=VALUE entries, file by file (service_flags.env_file_entries)."""
    import os

    entries: list[str] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise FlagError(f"invalid --env-file {path}: {reason}") from None
        entries += env_file_entries(text, path, dict(os.environ))
    return tuple(entries)


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
@click.argument("name", shell_complete=complete_names("Service"))
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
@click.argument("pairs", nargs=-1, required=True, metavar="SERVICE=REPLICAS...",
                shell_complete=complete_names("Service", suffix="="))
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


SERVICE_FIELDS = ("ID", "Name", "Mode", "Replicas", "Image", "Ports")
SERVICE_TABLE = "table " + "\\t".join(f"{{{{.{f}}}}}" for f in SERVICE_FIELDS)
SERVICE_FILTERS: dict[str, Rule] = {
    "id": prefix(lambda s: s["metadata"].get("uid", "").replace("-", "")),
    "name": prefix(lambda s: s["metadata"]["name"]),
    "label": labelled(lambda s: s["metadata"].get("labels")),
    "mode": exact(lambda s: s["spec"].get("mode", "replicated")),
}


def service_record(raw: dict[str, Any], all_namespaces: bool) -> dict[str, str]:
    """A service as service ls shows it (SERVICE_FIELDS)."""
    s = decorate(raw)
    meta, spec = s["metadata"], s["spec"]
    name = f"{meta['namespace']}/{meta['name']}" if all_namespaces else meta["name"]
    return {"ID": meta.get("uid", "").replace("-", "")[:12], "Name": name,
            "Mode": spec.get("mode", "replicated"), "Replicas": s["status"]["replicasText"],
            "Image": spec["template"]["image"], "Ports": ports_text(spec.get("ports"))}


@service.command("ls")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("-A", "--all-namespaces", help="Every namespace.")
@flag("-q", "--quiet", help="Only names.")
@filter_option("id=, name=, label=KEY[=VALUE], mode=")
@format_option(SERVICE_FIELDS)
@pass_context
def ls(ctx: Context, namespace: str | None, all_namespaces: bool, quiet: bool,
       filters: tuple[str, ...], template: str | None) -> None:
    """List services: ID, NAME, MODE, REPLICAS, IMAGE, PORTS."""
    wanted = checked(lambda: parse_filters(filters, SERVICE_FILTERS))
    checked(lambda: check_format(template, SERVICE_FIELDS))
    ns = None if all_namespaces else current_namespace(namespace)
    result = ctx.run(lambda rstore: rstore.list("Service", ns))
    from kubeless_cli.read_cmds import warn_skipped
    from kubeless.store import Keyspace

    warn_skipped("service", result.skipped, Keyspace(ctx.prefix))
    items = matching(result.items, wanted, SERVICE_FILTERS)
    if quiet:
        click.echo("".join(f"{s['metadata']['name']}\n" for s in items), nl=False)
        return
    records = [service_record(s, all_namespaces) for s in items]
    click.echo(checked(lambda: render(template, SERVICE_FIELDS, records, SERVICE_TABLE)),
               nl=False)


@service.command("inspect")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_names("Service"))
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("--pretty", help="Human-readable, in docker's layout, instead of JSON.")
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
        from kubeless_cli.pretty import service_pretty

        click.echo("\n".join(service_pretty(decorate(i)) for i in items), nl=False)
    else:
        click.echo(json.dumps(items, indent=2))


@service.command("rm")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_names("Service"))
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


def ps_order(task: dict[str, Any]) -> tuple[Any, ...]:
    """Where a task goes in service ps: by service, then slot (a global service's by
    node); in a slot the task wanted running heads it, then the newest first (docker
    sorts by creation): a start-first update's Shutdown task is history, not the head."""
    from kubeless.api.tasks import created_at

    spec, status = task["spec"], task.get("status") or {}
    slot = spec.get("slot")
    newest = created_at(task) or float(status.get("timestamp") or 0)
    return (spec.get("serviceName", ""), slot if slot is not None else 0,
            spec.get("nodeName") or "" if slot is None else "",
            spec.get("desiredState") != "running", -newest)


def ps_rows(tasks: list[dict[str, Any]], now: float, no_trunc: bool = False) -> list[list[str]]:
    """docker service ps rows: per slot (or node), the task wanted running first, then
    the newest; history marked ``\\_``."""
    from kubeless.api import human_duration
    from kubeless.api.tasks import task_display_name

    rows, previous = [], None
    for t in sorted(tasks, key=ps_order):
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
                     f"{state_text(status.get('state', 'new'))}{ago}",
                     error if no_trunc or len(error) <= 60 else error[:57] + "..."])
    return rows


def _desired_shown(spec: dict[str, Any], status: dict[str, Any]) -> str:
    """A job's task that completed is meant to: Complete, as docker shows it."""
    desired = str(spec.get("desiredState", ""))
    if spec.get("jobRun") and desired == "running" and status.get("state") == "complete":
        desired = "complete"
    return state_text(desired)


PS_FIELDS = ("ID", "Name", "Image", "Node", "DesiredState", "CurrentState", "Error")
PS_TABLE = "table " + "\\t".join(f"{{{{.{f}}}}}" for f in PS_FIELDS)
PS_FILTERS: dict[str, Rule] = {
    "id": prefix(lambda t: t["metadata"]["name"]),
    "name": prefix(lambda t: _display_name(t)),
    "node": exact(lambda t: t["spec"].get("nodeName") or ""),
    "desired-state": exact(lambda t: t["spec"].get("desiredState") or ""),
}


def _display_name(task: dict[str, Any]) -> str:
    from kubeless.api.tasks import task_display_name

    return task_display_name(task)


@service.command("ps")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_names("Service"))
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("--no-trunc", help="Full task ids and errors.")
@flag("-q", "--quiet", help="Only task ids.")
@filter_option("id=, name=, node=, desired-state=running|shutdown|remove")
@format_option(PS_FIELDS)
@pass_context
def ps(ctx: Context, names: tuple[str, ...], namespace: str | None, no_trunc: bool,
       quiet: bool, filters: tuple[str, ...], template: str | None) -> None:
    """List the tasks of services, with their history (as docker service ps)."""
    import time

    from kubeless.store.tasks import list_tasks

    wanted = checked(lambda: parse_filters(filters, PS_FILTERS))
    checked(lambda: check_format(template, PS_FIELDS))
    ns = current_namespace(namespace)

    async def run(rstore: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for name in names:
            tasks = (await list_tasks(rstore, ns, name)).items
            if not tasks and await rstore.get("Service", name, ns) is None:
                raise CliError(f'service "{name}" not found in namespace {ns}')
            found += tasks
        return found

    tasks = matching(ctx.run(run), wanted, PS_FILTERS)
    if quiet:
        click.echo("".join(f"{t['metadata']['name']}\n" for t in tasks), nl=False)
        return
    records = [dict(zip(PS_FIELDS, row)) for row in ps_rows(tasks, time.time(), no_trunc)]
    click.echo(checked(lambda: render(template, PS_FIELDS, records, PS_TABLE)), nl=False)


@service.command("rollback")
@click.argument("name", shell_complete=complete_names("Service"))
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
@click.argument("name", shell_complete=complete_names("Service"))
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
