"""``kubeless node``: ls, inspect, update, promote, demote, rm, leave (as ``docker node``).

Nodes are registered by their agents; ``node leave`` (``leave_cmd``) is run
on a node to take it out of the cluster. Users change their availability
(active, pause, drain), labels and role. ``node ls`` merges each Node with
its heartbeat (Ready while the agent's lease lives), shows the manager
status of manager nodes (Leader when its controllers lead, Reachable when
they are alive, Unreachable when they are not) and the engine version its
agent reports, and marks with ``*`` the node this CLI runs on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import click

from kubeless.api.columns import state_text
from kubeless_cli.completion import complete_names
from kubeless_cli.context import USAGE, CliError, Context, pass_context
from kubeless_cli.flags import flag
from kubeless_cli.listing import (Rule, check_format, checked, exact, filter_option, format_option,
                                  labelled, matching, parse_filters, prefix, render)

Change = Callable[[dict[str, Any]], dict[str, Any]]


def local_node_id(names: set[str]) -> str | None:
    """The node this CLI runs on (``*`` in node ls): ``KUBELESS_NODE``, else the node-id
    of this host's state dir (``KUBELESS_STATE_DIR`` or /var/lib/kubeless, then
    ``kubeless up``'s) that names one of ``names``; None when there is none."""
    if os.environ.get("KUBELESS_NODE"):
        return os.environ["KUBELESS_NODE"]
    from kubeless_cli.up_cmd import default_state_dir
    from kubeless.cluster import DEFAULT_STATE_DIR, StateDir

    dirs = (os.environ.get("KUBELESS_STATE_DIR") or DEFAULT_STATE_DIR,
            os.environ.get("KUBELESS_UP_DIR") or default_state_dir())
    ids = (StateDir(d).node_id() for d in dirs)
    return next((i for i in ids if i in names), None)


def manager_status(node: dict[str, Any], leaders: set[str], live: set[str]) -> str:
    if node["spec"].get("role") != "manager":
        return ""
    name = node["metadata"]["name"]
    if name in leaders:
        return "Leader"
    return "Reachable" if name in live else "Unreachable"


NODE_COLUMNS = ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION"]


def node_rows(nodes: list[dict[str, Any]], leaders: set[str], live: set[str],
              me: str | None) -> list[list[str]]:
    """node ls's rows (NODE_COLUMNS), by id; ``me``'s id is marked ``*`` as docker does."""
    rows = []
    for n in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name, status = n["metadata"]["name"], n.get("status") or {}
        rows.append([f"{name} *" if name == me else name, status.get("hostname", ""),
                     state_text(status.get("state", "down")),
                     state_text(n["spec"].get("availability", "active")),
                     manager_status(n, leaders, live), str(status.get("engineVersion") or "")])
    return rows


@click.group()
def node() -> None:
    """Manage nodes (as docker node)."""


NODE_FIELDS = ("ID", "Hostname", "Status", "Availability", "ManagerStatus", "EngineVersion")
NODE_TABLE = "table " + "\t".join(f"{{{{.{f}}}}}" for f in NODE_FIELDS)
NODE_FILTERS: dict[str, Rule] = {
    "id": prefix(lambda n: n["metadata"]["name"]),
    "name": prefix(lambda n: (n.get("status") or {}).get("hostname") or n["metadata"]["name"]),
    "label": labelled(lambda n: n["metadata"].get("labels")),
    "node.label": labelled(lambda n: n["metadata"].get("labels")),
    "role": exact(lambda n: n["spec"].get("role", "worker")),
    "availability": exact(lambda n: n["spec"].get("availability", "active")),
}


@node.command("ls")
@flag("-q", "--quiet", help="Only node ids.")
@filter_option("id=, name=, label=KEY[=VALUE], role=manager|worker, availability=")
@format_option(NODE_FIELDS)
@pass_context
def ls(ctx: Context, quiet: bool, filters: tuple[str, ...], template: str | None) -> None:
    """List nodes: ID (* this one), HOSTNAME, STATUS, AVAILABILITY, MANAGER STATUS, ENGINE VERSION."""
    from kubeless.store.nodes import list_nodes, manager_state

    wanted = checked(lambda: parse_filters(filters, NODE_FILTERS))
    checked(lambda: check_format(template, NODE_FIELDS))

    async def run(rstore: Any) -> tuple[Any, set[str], set[str]]:
        result = await list_nodes(rstore)
        leaders, live = await manager_state(rstore)
        return result, leaders, live

    result, leaders, live = ctx.run(run)
    from kubeless_cli.read_cmds import warn_skipped
    from kubeless.store import Keyspace

    warn_skipped("node", result.skipped, Keyspace(ctx.prefix))
    nodes = matching(result.items, wanted, NODE_FILTERS)
    if quiet:
        click.echo("".join(f"{n['metadata']['name']}\n" for n in nodes), nl=False)
        return
    me = local_node_id({n["metadata"]["name"] for n in result.items})
    records = [dict(zip(NODE_FIELDS, row)) for row in node_rows(nodes, leaders, live, me)]
    click.echo(checked(lambda: render(template, NODE_FIELDS, records, NODE_TABLE)), nl=False)


async def _get_node(rstore: Any, name: str) -> dict[str, Any]:
    from kubeless.store.nodes import heartbeats
    from kubeless.api.nodes import with_heartbeat

    found = await rstore.get("Node", name)
    if found is None:
        raise CliError(f'node "{name}" not found')
    return with_heartbeat(found, (await heartbeats(rstore)).get(name))


@node.command("inspect")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_names("Node"))
@flag("--pretty", help="Human-readable, in docker's layout, instead of JSON.")
@pass_context
def inspect(ctx: Context, names: tuple[str, ...], pretty: bool) -> None:
    """Show nodes in full (JSON array), with what their heartbeat says."""
    from kubeless.store.nodes import manager_state

    async def run(rstore: Any) -> tuple[list[dict[str, Any]], set[str], set[str]]:
        found = [await _get_node(rstore, n) for n in names]
        leaders, live = await manager_state(rstore) if pretty else (set(), set())
        return found, leaders, live

    found, leaders, live = ctx.run(run)
    if not pretty:
        click.echo(json.dumps(found, indent=2))
        return
    from kubeless_cli.pretty import node_pretty

    click.echo("\n".join(node_pretty(n, manager_status(n, leaders, live)) for n in found),
               nl=False)


def _modify(ctx: Context, name: str, change: Change) -> None:
    from kubeless.api import ApiError, validate

    async def run(rstore: Any) -> None:
        live = await rstore.get("Node", name)
        if live is None:
            raise CliError(f'node "{name}" not found')
        try:
            new = validate(change(live))
        except ApiError as err:
            raise CliError(str(err)) from None
        new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        if new != live:
            await rstore.update(new)
        await keep_users(rstore, name, new["spec"].get("role", "worker"))

    ctx.run(run)


async def keep_users(rstore: Any, name: str, role: str) -> None:
    """The node's etcd users as its role says (TLS etcd only): a manager's
    ``manager:<id>`` holds root, a worker has none (``node demote`` takes it away).
    After the Node's write: run again, it converges."""
    from kubeless.cluster import access

    if access.keeps_users(rstore.etcd):
        await access.admit_node(rstore.etcd, rstore.keys, name, role)


def _label_changes(adds: tuple[str, ...], removes: tuple[str, ...]) -> Change:
    pairs = []
    for item in adds:
        key, sep, value = item.partition("=")
        if not key:
            raise CliError(f"invalid --label-add {item!r}: use key=value", USAGE)
        pairs.append((key, value if sep else ""))

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        labels = dict(doc["metadata"].get("labels") or {})
        for key in removes:
            labels.pop(key, None)
        labels.update(pairs)
        return {**doc, "metadata": {**doc["metadata"], "labels": labels}}
    return change


@node.command("update")
@click.argument("name", shell_complete=complete_names("Node"))
@click.option("--availability", type=click.Choice(["active", "pause", "drain"]),
              help="active takes tasks, pause takes no new ones, drain moves its tasks away.")
@click.option("--label-add", multiple=True, metavar="KEY=VALUE", help="Add or change a label.")
@click.option("--label-rm", multiple=True, metavar="KEY", help="Remove a label.")
@click.option("--role", type=click.Choice(["worker", "manager"]), help="Change the role.")
@pass_context
def update(ctx: Context, name: str, availability: str | None, label_add: tuple[str, ...],
           label_rm: tuple[str, ...], role: str | None) -> None:
    """Change a node's availability, labels or role."""
    labels = _label_changes(label_add, label_rm)

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        spec = dict(doc["spec"])
        if availability:
            spec["availability"] = availability
        if role:
            spec["role"] = role
        return labels({**doc, "spec": spec})

    _modify(ctx, name, change)
    click.echo(name)


def _set_role(role: str) -> Callable[..., None]:
    @pass_context
    def command(ctx: Context, names: tuple[str, ...]) -> None:
        for name in names:
            _modify(ctx, name, lambda doc: {**doc, "spec": {**doc["spec"], "role": role}})
            verb = "promoted to a manager" if role == "manager" else "demoted to a worker"
            click.echo(f"Node {name} {verb} in the cluster.")
    return command


node.command("promote", help="Make nodes managers.")(
    click.argument("names", nargs=-1, required=True, shell_complete=complete_names("Node"))(_set_role("manager")))
node.command("demote", help="Make nodes workers.")(
    click.argument("names", nargs=-1, required=True, shell_complete=complete_names("Node"))(_set_role("worker")))


@node.command("rm")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_names("Node"))
@flag("-f", "--force", help="Remove a node that is still up.")
@pass_context
def rm(ctx: Context, names: tuple[str, ...], force: bool) -> None:
    """Remove nodes from the cluster (a node that is up needs --force)."""
    async def run(rstore: Any) -> None:
        for name in names:
            current = await _get_node(rstore, name)
            if current["status"]["state"] == "ready" and not force:
                raise CliError(f"node {name} is up: run `kubeless node leave` on it (or stop "
                               "its agent and let its heartbeat expire), or use --force")
            await rstore.delete("Node", name)
            await forget_leave(rstore, name)
            await forget_users(rstore, name)
            await end_heartbeat(rstore, name)
            click.echo(name)

    ctx.run(run)


async def forget_users(rstore: Any, name: str) -> None:
    """A removed node's etcd users and role go (TLS etcd only): etcd refuses its
    certificates from their next request on."""
    from kubeless.cluster import access

    if access.keeps_users(rstore.etcd):
        await access.remove_node(rstore.etcd, name)


async def end_heartbeat(rstore: Any, name: str) -> None:
    """A removed node's heartbeat lease is revoked (``--force`` on a node still up): etcd
    checks every write against the deleted user, but not a lease keep-alive, so an agent
    still running there would otherwise keep its old heartbeat alive for ever."""
    kv, _ = await rstore.etcd.get(rstore.keys.heartbeat(name))
    if kv is not None and kv.lease:
        await rstore.etcd.lease_revoke(kv.lease)


async def forget_leave(rstore: Any, name: str) -> None:
    """A removed node's leave request goes with it: the name may join again."""
    from kubeless.store import Compare, Delete

    kv, _ = await rstore.etcd.get(rstore.keys.leave(name))
    if kv is not None:
        await rstore.etcd.txn([Compare(kv.key, "mod", "==", kv.mod_revision)], [Delete(kv.key)])


from kubeless_cli.leave_cmd import leave  # noqa: E402 - registered on the group above

node.add_command(leave)
