"""``kubeless events`` and the ``Events:`` section ``describe`` ends with, as kubectl's.

Events are what controllers and agents recorded (``kubeless.api.events``);
they live an hour after their last occurrence. ``events`` lists them oldest
first (``--for service/web`` narrows to one object, a service's including its
tasks'; ``--types Warning``), and ``--watch`` then prints each new occurrence
until interrupted.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Any

import click

from kubeless.api import events as ev
from kubeless_cli.context import CliError, Context, USAGE, current_namespace, pass_context
from kubeless_cli.flags import flag

_HEADER = ("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")


@click.command()
@click.option("--for", "for_", metavar="KIND/NAME",
              help="Only events about this object: service/web (with its tasks'), "
                   "task/ID, node/NAME.")
@click.option("--types", multiple=True, metavar="TYPE",
              help="Only these types: Normal, Warning (repeat or comma-separate).")
@flag("-w", "--watch", help="After listing, print each new occurrence until interrupted.")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@flag("-A", "--all-namespaces", help="Events of every namespace.")
@pass_context
def events(ctx: Context, for_: str | None, types: tuple[str, ...], watch: bool,
           namespace: str | None, all_namespaces: bool) -> None:
    """List what controllers and agents did, and why (the last hour)."""
    wanted_types = [t.strip() for word in types for t in word.split(",") if t.strip()]
    for t in wanted_types:
        if t.capitalize() not in ev.TYPES:
            raise CliError(f"--types {t}: expected Normal or Warning", USAGE)
    target = None
    if for_:
        try:
            target = ev.parse_for(for_)
        except ValueError as err:
            raise CliError(str(err), USAGE) from None
    ns = None if all_namespaces else current_namespace(namespace)

    def keep(event: ev.Event) -> bool:
        if ns is not None and not _in_namespace(event, ns):
            return False
        if target is not None and not ev.for_object(event, target[0], target[1], ns):
            return False
        return bool(ev.of_types([event], wanted_types))

    async def run(rstore: Any) -> None:
        found, revision = await read_events(rstore)
        shown = ev.by_time(e for e in found if keep(e))
        now = datetime.now(timezone.utc)
        if shown:
            click.echo(_table([_row(e, now, all_namespaces) for e in shown], all_namespaces))
        elif not watch:
            where = "any namespace" if ns is None else f"namespace {ns}"
            click.echo(f"No events found in {where}.")
        if watch:
            await _follow(rstore, revision, keep, all_namespaces, header=not shown)

    ctx.run(run)


def _in_namespace(event: ev.Event, ns: str) -> bool:
    """Node events (cluster-scoped) show in every namespace, as they concern everyone."""
    involved = event.get("involvedObject") or {}
    return involved.get("kind") == "Node" or involved.get("namespace") == ns


async def read_events(rstore: Any) -> tuple[list[ev.Event], int]:
    """Every Event: the controllers', and every known node's agent's."""
    from kubeless.store.events import list_events

    nodes = await rstore.list("Node")
    names = [n["metadata"]["name"] for n in nodes.items]
    return await list_events(rstore.etcd, rstore.keys, names)


async def _follow(rstore: Any, revision: int, keep: Any, all_namespaces: bool, *,
                  header: bool) -> None:
    """Print new occurrences: the controllers' and agents' prefixes, watched together."""
    import asyncio

    from kubeless.store import StoreError
    from kubeless.store.events import decode_event

    queue: asyncio.Queue[ev.Event] = asyncio.Queue()
    keys = rstore.keys

    async def pump(prefix: str, only_events: bool) -> None:
        async for batch in rstore.etcd.watch(prefix, revision + 1):
            for change in batch.events:
                if change.type != "put" or (only_events and not keys.is_agent_event(change.kv.key)):
                    continue
                event = decode_event(change.kv.value)
                if event is not None and keep(event):
                    await queue.put(event)

    tasks = [asyncio.create_task(pump(keys.events_prefix(), False)),
             asyncio.create_task(pump(keys.agents_prefix(), True))]
    try:
        if header:
            click.echo(_table([], all_namespaces))
        sys.stdout.flush()  # a pipe (a script, a test) sees each line as it comes
        while True:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait([getter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                for t in done:
                    t.result()  # a watch that ended says why
                raise CliError("watch ended")
            now = datetime.now(timezone.utc)
            click.echo(_table([_row(getter.result(), now, all_namespaces)], all_namespaces,
                              header=False))
            sys.stdout.flush()
    except StoreError as err:
        raise CliError(f"watch ended: {err}") from None
    finally:
        for t in tasks:
            t.cancel()


def _row(event: ev.Event, now: datetime, all_namespaces: bool) -> list[str]:
    often = ev.frequency(event, now)
    message = str(event.get("message") or "")
    row = [ev.last_seen(event, now), str(event.get("type") or ""),
           str(event.get("reason") or ""), ev.object_text(event),
           f"{message} ({often})" if often else message]
    if all_namespaces:
        row.insert(0, str((event.get("involvedObject") or {}).get("namespace") or ""))
    return row


def _table(rows: list[list[str]], all_namespaces: bool, *, header: bool = True) -> str:
    head = list(_HEADER)
    if all_namespaces:
        head.insert(0, "NAMESPACE")
    shown = ([head] if header else []) + rows
    if not shown:
        return ""
    widths = [max(len(r[i]) for r in shown) for i in range(len(head) - 1)]
    lines = ["   ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:-1])) + "   " + r[-1]
             for r in shown]
    return "\n".join(lines)


def describe_section(events: list[ev.Event], kind: str, name: str, namespace: str | None,
                     now: datetime) -> str:
    """kubectl's ``Events:`` block for one object (``<none>`` when there are none)."""
    mine = ev.by_time(e for e in events if ev.for_object(e, kind, name, namespace))
    if not mine:
        return "Events:  <none>\n"
    rows = [["Type", "Reason", "Age", "From", "Message"],
            ["----", "------", "---", "----", "-------"]]
    for event in mine:
        often = ev.frequency(event, now)
        age = ev.last_seen(event, now) + (f" ({often})" if often else "")
        source = event.get("source") or {}
        origin = str(source.get("component") or "")
        if source.get("host") and origin == "agent":
            origin = f"agent/{source['host']}"
        rows.append([str(event.get("type") or ""), str(event.get("reason") or ""), age,
                     origin, str(event.get("message") or "")])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    body = "\n".join("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:4])) + "  " + r[4]
                     for r in rows)
    return "Events:\n" + body + "\n"
