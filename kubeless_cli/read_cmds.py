"""``kubeless get``, ``describe`` and ``delete KIND NAME``: resources by kind and name.

get prints the CRD's printer columns (``-o wide`` adds the priority-1
ones), or YAML, JSON or names; ``--watch`` then prints a row for every
change until interrupted.

A value in etcd that is not a resource (written behind the CLI's back: not
YAML, not a mapping, the wrong kind) is listed, not hidden: ``get`` shows
its row (``<invalid>``) and a warning with the reason on stderr, as it does
for a resource the controllers found invalid (a false condition); ``-o
yaml|json`` leave it out (every document printed can be applied again) and
a named one fails the command; ``describe`` shows its key, reason and value;
``delete`` removes it, comparing the mod revision it was read at.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import click

from kubeless.api import Kind
from kubeless.api.selectors import Selector
from kubeless_cli.completion import complete_kinds, complete_names
from kubeless_cli.context import USAGE, CliError, Context, current_namespace, pass_context
from kubeless_cli.flags import flag
from kubeless_cli.printers import (OUTPUTS, Invalid, condition_warnings, describe_invalid,
                                   describe as describe_text, invalid_warning, render, table)
from kubeless_cli.selector_flag import SELECTOR_HELP, narrowing_selector, selector_of


def _kind(word: str) -> Kind:
    from kubeless.api import UnknownKind, resolve_kind

    try:
        return resolve_kind(word)
    except UnknownKind as err:
        raise CliError(str(err)) from None


def warn(kind: Kind, found: Found) -> None:
    """A stderr line per invalid value and per resource with a false condition."""
    for bad in found.invalid:
        click.echo(invalid_warning(kind, bad), err=True)
    for obj in found.items:
        for line in condition_warnings(kind, obj):
            click.echo(line, err=True)


def warn_skipped(kind_word: str, skipped: list[Any], keys: Any) -> None:
    """For ``service ls`` and ``node ls``: a warning per invalid value (CorruptValue)."""
    kind = _kind(kind_word)
    for err in skipped:
        click.echo(invalid_warning(kind, Invalid.of(err, keys.parse(err.key))), err=True)


def _not_found(kind: Kind, name: str) -> CliError:
    return CliError(f'{kind.singular} "{name}" not found')


@dataclass
class Found:
    """Resources read at one revision, and the values under their keys that are not."""

    items: list[dict[str, Any]]
    revision: int
    invalid: list[Invalid] = field(default_factory=list)


async def fetch(rstore: Any, kind: Kind, names: tuple[str, ...], namespace: str | None,
                selector: Selector | None) -> Found:
    """The named resources (in order), or every one matching, and the invalid values
    among them (none with a selector: their labels are unknown)."""
    from kubeless.store import StoreError

    ns = namespace if kind.namespaced else None
    try:
        result = await _list(rstore, kind, ns, selector)
    except StoreError as err:
        raise CliError(str(err)) from None
    invalid = [] if selector else [Invalid.of(e, rstore.keys.parse(e.key)) for e in result.skipped]
    if not names:
        return Found(result.items, result.revision, invalid)
    by_name = {i["metadata"]["name"]: i for i in result.items}
    bad = {b.name: b for b in invalid}
    missing = [n for n in names if n not in by_name and n not in bad]
    if missing:
        raise _not_found(kind, missing[0])
    return Found([by_name[n] for n in names if n in by_name], result.revision,
                 [bad[n] for n in names if n in bad])


async def _list(rstore: Any, kind: Kind, ns: str | None,
                selector: Selector | None) -> Any:
    """Resources as users see them: nodes with heartbeats, tasks with agents' reports,
    routes with their live split."""
    from kubeless.store.nodes import list_nodes
    from kubeless.store.tasks import list_tasks
    from kubeless_cli.route_cmds import with_live_split

    if kind.kind == "Node":
        result = await list_nodes(rstore)
    elif kind.kind == "Task":
        result = await list_tasks(rstore, ns)
    elif kind.kind == "Route":
        result = await rstore.list(kind.kind, ns, selector)
        result.items = await with_live_split(rstore, result.items)
        return result
    else:
        return await rstore.list(kind.kind, ns, selector)
    if selector:
        result.items = [i for i in result.items if selector.matches(i["metadata"].get("labels"))]
    return result


@click.command()
@click.argument("kind", shell_complete=complete_kinds)
@click.argument("names", nargs=-1, shell_complete=complete_names())
@click.option("-o", "--output", type=click.Choice(OUTPUTS[1:]), help="Output format.")
@click.option("-l", "--selector", help=SELECTOR_HELP)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("-A", "--all-namespaces", help="Every namespace.")
@flag("-w", "--watch", help="After listing, print each change.")
@pass_context
def get(ctx: Context, kind: str, names: tuple[str, ...], output: str | None,
        selector: str | None, namespace: str | None, all_namespaces: bool, watch: bool) -> None:
    """List resources of a kind (services, nodes, tasks, secrets, configs, routes), or the
    ones named."""
    k = _kind(kind)
    ns = None if all_namespaces else current_namespace(namespace)
    sel = selector_of(selector)
    fmt = output or "table"

    async def run(rstore: Any) -> None:
        found = await fetch(rstore, k, names, ns, sel)
        documents = fmt in ("yaml", "json")
        failing = bool(names and documents and found.invalid)  # the error says it all
        warn(k, Found(found.items, found.revision, [] if failing else found.invalid))
        if not found.items and not found.invalid and fmt in ("table", "wide") and not names:
            where = "" if ns is None or not k.namespaced else f" in namespace {ns}"
            click.echo(f"No {k.plural} found{where}.", err=True)
        elif found.items or not documents:
            click.echo(render(k, found.items, fmt, single=len(names) == 1,
                              all_namespaces=all_namespaces, invalid=found.invalid), nl=False)
        if failing:
            bad = found.invalid[0]
            raise CliError(f'{k.singular} "{bad.name}" is not a valid resource in etcd '
                           f"({bad.reason}): `kubeless describe {k.singular} {bad.name}` "
                           f"shows its value")
        if watch:
            await _watch(rstore, k, ns, sel, set(names), found.revision, fmt, all_namespaces)

    try:
        ctx.run(run)
    except KeyboardInterrupt:
        pass


async def _watch(rstore: Any, kind: Kind, ns: str | None, sel: Any, names: set[str],
                 revision: int, fmt: str, all_namespaces: bool) -> None:
    """Print one row (or document) per change after ``revision``."""
    from kubeless.store import CorruptValue, StoreError

    keys = rstore.keys
    prefixes = [keys.kind_prefix(kind.kind, ns)]
    status_prefix = keys.status_prefix(kind.kind, ns)
    if status_prefix:
        prefixes.append(status_prefix)
    queue: asyncio.Queue[str] = asyncio.Queue()

    async def follow(prefix: str) -> None:
        async for batch in rstore.etcd.watch(prefix, revision + 1):
            for ev in batch.events:
                ref = keys.parse(ev.kv.key)
                if ref is not None:
                    await queue.put(ref.name if ev.type == "put" else "")

    tasks = [asyncio.create_task(follow(p)) for p in prefixes]
    try:
        while True:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait([getter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                for t in done:
                    t.result()  # raise the watch's error
                continue
            name = getter.result()
            if not name or (names and name not in names):
                continue
            try:
                obj = await rstore.get(kind.kind, name, ns)
            except CorruptValue as err:
                bad = Invalid.of(err, keys.parse(err.key))
                click.echo(invalid_warning(kind, bad), err=True)
                if fmt in ("table", "wide"):
                    click.echo(table(kind, [], wide=fmt == "wide", header=False,
                                     all_namespaces=all_namespaces, invalid=[bad]), nl=False)
                continue
            if obj is None or (sel and not _matches(obj, sel)):
                continue
            if fmt in ("table", "wide"):
                click.echo(table(kind, [obj], wide=fmt == "wide", all_namespaces=all_namespaces,
                                 header=False), nl=False)
            else:
                click.echo(render(kind, [obj], fmt, single=True), nl=False)
    except StoreError as err:
        raise CliError(f"watch ended: {err}") from None
    finally:
        for t in tasks:
            t.cancel()


def _matches(obj: dict[str, Any], sel: Selector) -> bool:
    return sel.matches(obj["metadata"].get("labels"))


@click.command()
@click.argument("kind", shell_complete=complete_kinds)
@click.argument("names", nargs=-1, shell_complete=complete_names())
@click.option("-l", "--selector", help=SELECTOR_HELP)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@pass_context
def describe(ctx: Context, kind: str, names: tuple[str, ...], selector: str | None,
             namespace: str | None) -> None:
    """Show resources in detail."""
    k = _kind(kind)
    sel = selector_of(selector)

    async def run(rstore: Any) -> tuple[Found, list[Any]]:
        found = await fetch(rstore, k, names, current_namespace(namespace), sel)
        if k.kind not in _WITH_EVENTS or not found.items:
            return found, []
        from kubeless_cli.events_cmd import read_events

        return found, (await read_events(rstore))[0]

    found, events = ctx.run(run)
    if not found.items and not found.invalid:
        raise CliError(f"no {k.plural} found")
    texts = [describe_text(k, i) + _problems(k, i) + _events(k, i, events)
             for i in found.items]
    texts += [describe_invalid(k, bad) for bad in found.invalid]
    click.echo("\n".join(texts), nl=False)


_WITH_EVENTS = frozenset({"Service", "Node", "Task"})


def _events(kind: Kind, obj: dict[str, Any], events: list[Any]) -> str:
    """kubectl's closing ``Events:`` section, for the kinds events are about."""
    if kind.kind not in _WITH_EVENTS:
        return ""
    from datetime import datetime, timezone

    from kubeless_cli.events_cmd import describe_section

    meta = obj.get("metadata") or {}
    return describe_section(events, kind.kind, str(meta.get("name")),
                            meta.get("namespace") if kind.namespaced else None,
                            datetime.now(timezone.utc))


def _problems(kind: Kind, obj: dict[str, Any]) -> str:
    """``Invalid:`` and what validation finds wrong with a stored Service or Node (a
    value written behind the CLI's back); empty when it is valid."""
    from kubeless.api import ApiError, validate

    if kind.kind in ("Task", "Secret", "Config"):  # written by kubeless, not as users write them
        return ""
    try:
        validate({k: v for k, v in obj.items() if k != "status"})
    except ApiError as err:
        problems = getattr(err, "violations", None) or [str(err)]
        return "Invalid:\n" + "".join(f"  {p}\n" for p in problems)
    return ""


@click.command()
@click.argument("kind", required=False, shell_complete=complete_kinds)
@click.argument("names", nargs=-1, shell_complete=complete_names())
@click.option("-f", "--filename", "files", multiple=True, help="Delete what these files declare.")
@flag("-R", "--recursive", help="Read folders given with -f recursively.")
@click.option("-l", "--selector", help="Delete every resource of KIND with these labels.")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("--ignore-not-found", help="A missing resource is not an error.")
@pass_context
def delete(ctx: Context, kind: str | None, names: tuple[str, ...], files: tuple[str, ...],
           recursive: bool, selector: str | None, namespace: str | None,
           ignore_not_found: bool) -> None:
    """Delete resources: by files (-f), by KIND NAME..., or by KIND -l selector."""
    if files:
        if kind:
            raise CliError("give either -f FILES or KIND NAME, not both", USAGE)
        from kubeless_cli.apply_cmd import delete_from_files

        for line in delete_from_files(ctx, files, recursive, namespace, ignore_not_found):
            click.echo(line)
        return
    if not kind or not (names or selector):
        raise CliError("say what to delete: -f FILE, KIND NAME..., or KIND -l key=value", USAGE)
    k = _kind(kind)
    ns = current_namespace(namespace) if k.namespaced else None
    sel = narrowing_selector(selector) if selector else None

    async def run(rstore: Any) -> list[str]:
        from kubeless.api import ApiError
        from kubeless.cluster.secrets import Doomed, delete_resources
        from kubeless.store import StoreError

        async def read() -> Doomed:
            if sel is not None:
                return Doomed((await fetch(rstore, k, (), ns, sel)).items)
            missing, items, invalid = await _named(rstore, k, names, ns)
            if missing and not ignore_not_found:
                raise _not_found(k, missing[0])
            return Doomed(items, invalid)  # invalid: compared with the revision read

        try:  # a Secret or Config is refused while a Service uses it
            doomed = await delete_resources(rstore, read, what=f"deleting {k.plural}")
        except (StoreError, ApiError) as err:
            raise CliError(f"{err}; nothing was deleted") from None
        gone = [obj["metadata"]["name"] for obj in doomed.items]
        gone += [rstore.keys.parse(err.key).name for err in doomed.invalid]
        return [f'{k.singular} "{name}" deleted' for name in gone]

    for line in ctx.run(run):
        click.echo(line)


async def _named(rstore: Any, kind: Kind, names: tuple[str, ...], ns: str | None,
                 ) -> tuple[list[str], list[dict[str, Any]], list[Any]]:
    """(missing names, the resources named, the invalid values named: CorruptValue
    carrying the mod revision each was read at)."""
    from kubeless.store import CorruptValue

    missing: list[str] = []
    items: list[dict[str, Any]] = []
    invalid: list[Any] = []
    for name in names:
        try:
            obj = await rstore.get(kind.kind, name, ns)
        except CorruptValue as err:
            invalid.append(err)
            continue
        if obj is None:
            missing.append(name)
        else:
            items.append(obj)
    return missing, items, invalid
