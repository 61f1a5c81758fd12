"""The Swarm-like ``kubeless secret`` and ``kubeless config`` verbs: create, ls, inspect, rm.

One factory makes both groups, so the two cannot drift apart. ``create``
reads the value from a file or standard input (``-``), builds the very
document ``apply -f`` would take (the value as ``data``), validates it, and
stores it through ``kubeless.cluster.secrets`` (a Secret sealed to the
cluster's key); ``rm`` is refused while a Service uses it. ``ls`` and
``inspect`` show what ``kubeless.api.secrets.public_view`` shows: a
Secret's size, never its value nor its sealed text (a Config's ``inspect``
shows its data, as docker's does). No message here holds a value.
"""

from __future__ import annotations

import base64
import json
import sys
from datetime import datetime, timezone
from typing import Any

import click

from kubeless.api.file_refs import MAX_BYTES
from kubeless_cli.completion import complete_names
from kubeless_cli.context import USAGE, CliError, Context, current_namespace, pass_context
from kubeless_cli.flags import flag
from kubeless_cli.printers import format_rows

namespace_option = click.option("-n", "--namespace", help="Namespace (default: default).")


def read_value(path: str) -> bytes:
    """The bytes of FILE, or of standard input for ``-``; at most MAX_BYTES + 1 are read."""
    where = "standard input" if path == "-" else path
    try:
        if path == "-":
            data: bytes = sys.stdin.buffer.read(MAX_BYTES + 1)
        else:
            with open(path, "rb") as stream:
                data = stream.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file or directory; nothing was written") from None
    except OSError as err:
        raise CliError(f"{where}: cannot read it: {err.strerror or err}; nothing was written") \
            from None
    if len(data) > MAX_BYTES:
        raise CliError(f"{where}: the value is more than {MAX_BYTES} bytes ({MAX_BYTES // 1024} "
                       "KiB, Swarm's limit); nothing was written")
    return data


def parse_labels(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--label k=v`` (repeatable; ``k`` alone is an empty value, as docker's)."""
    labels = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key:
            raise CliError(f"invalid --label {pair!r}: use KEY=VALUE", USAGE)
        labels[key] = value
    return labels


def document(kind: str, name: str, namespace: str, labels: dict[str, str],
             value: bytes) -> dict[str, Any]:
    """The document ``apply -f`` would take for this value, validated."""
    from kubeless.api import ApiError, validate

    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    doc = {"apiVersion": "kubeless.io/v1", "kind": kind, "metadata": meta,
           "data": base64.b64encode(value).decode()}
    try:
        return validate(doc)
    except ApiError as err:
        raise CliError(f"{err}; nothing was written") from None


def ls_rows(items: list[dict[str, Any]], all_namespaces: bool,
            now: datetime) -> list[list[str]]:
    """docker secret|config ls's rows, as this model has them: ID, NAME, SIZE, CREATED."""
    from kubeless.api import age

    rows = []
    for obj in sorted(items, key=lambda o: (o["metadata"].get("namespace", ""),
                                            o["metadata"]["name"])):
        meta, spec = obj["metadata"], obj.get("spec") or {}
        name = f"{meta.get('namespace')}/{meta['name']}" if all_namespaces else meta["name"]
        created = age(meta.get("creationTimestamp"), now)
        rows.append([str(meta.get("uid", "")).replace("-", "")[:12], name,
                     str(spec.get("size", "")), f"{created} ago"])
    return rows


def _group(kind: str) -> click.Group:
    word = kind.lower()
    what = "sensitive values, sealed in etcd" if kind == "Secret" else "values stored plain"

    @click.group(name=word, help=f"Manage {word}s the Swarm way ({what}; {kind} resources).")
    def group() -> None:
        pass

    @group.command("create")
    @click.argument("name")
    @click.argument("file", metavar="FILE|-")
    @click.option("-l", "--label", "labels", multiple=True, metavar="KEY=VALUE",
                  help=f"A label of the {word} (repeatable).")
    @namespace_option
    @pass_context
    def create(ctx: Context, name: str, file: str, labels: tuple[str, ...],
               namespace: str | None) -> None:
        from kubeless.cluster.errors import ClusterError
        from kubeless.cluster.secrets import create as store_new
        from kubeless.store import AlreadyExists

        ns = current_namespace(namespace)
        doc = document(kind, name, ns, parse_labels(labels), read_value(file))

        async def run(rstore: Any) -> None:
            try:
                await store_new(rstore, doc)
            except AlreadyExists:
                raise CliError(f'{word} "{name}" already exists in namespace {ns}') from None
            except ClusterError as err:
                raise CliError(f"{err}; nothing was written") from None

        ctx.run(run)
        click.echo(name)

    create.help = (f"Create a {word} from FILE, or from standard input with -, as docker "
                   f"{word} create (500 KiB at most; the value never changes afterwards).")

    @group.command("ls")
    @namespace_option
    @flag("-A", "--all-namespaces", help="Every namespace.")
    @flag("-q", "--quiet", help="Only names.")
    @pass_context
    def ls(ctx: Context, namespace: str | None, all_namespaces: bool, quiet: bool) -> None:
        from kubeless.store import Keyspace
        from kubeless_cli.read_cmds import warn_skipped

        ns = None if all_namespaces else current_namespace(namespace)
        result = ctx.run(lambda rstore: rstore.list(kind, ns))
        warn_skipped(word, result.skipped, Keyspace(ctx.prefix))
        if quiet:
            click.echo("".join(f"{o['metadata']['name']}\n" for o in result.items), nl=False)
            return
        rows = ls_rows(result.items, all_namespaces, datetime.now(timezone.utc))
        click.echo(format_rows(["ID", "NAME", "SIZE", "CREATED"], rows), nl=False)

    ls.help = f"List {word}s: ID, NAME, SIZE (bytes), CREATED."

    @group.command("inspect")
    @click.argument("names", nargs=-1, required=True, shell_complete=complete_names(kind))
    @namespace_option
    @flag("--pretty", help="Human-readable instead of JSON.")
    @pass_context
    def inspect(ctx: Context, names: tuple[str, ...], namespace: str | None,
                pretty: bool) -> None:
        from kubeless.api import resolve_kind
        from kubeless.api.secrets import public_view
        from kubeless_cli.printers import describe

        ns = current_namespace(namespace)

        async def run(rstore: Any) -> list[dict[str, Any]]:
            found = []
            for name in names:
                obj = await rstore.get(kind, name, ns)
                if obj is None:
                    raise CliError(f'{word} "{name}" not found in namespace {ns}')
                found.append(public_view(obj))
            return found

        items = ctx.run(run)
        if pretty:
            click.echo("\n".join(describe(resolve_kind(kind), i) for i in items), nl=False)
        else:
            click.echo(json.dumps(items, indent=2))

    inspect.help = (f"Show {word}s (a JSON array, as docker {word} inspect)"
                    + ("; never the value." if kind == "Secret" else "."))

    @group.command("rm")
    @click.argument("names", nargs=-1, required=True, shell_complete=complete_names(kind))
    @namespace_option
    @pass_context
    def rm(ctx: Context, names: tuple[str, ...], namespace: str | None) -> None:
        ns = current_namespace(namespace)

        async def run(rstore: Any) -> list[str]:
            failed = []
            for name in names:
                problem = await _remove(rstore, kind, name, ns)
                if problem is None:
                    click.echo(name)
                else:
                    failed.append(problem)
            return failed

        failed = ctx.run(run)
        if failed:
            raise CliError("; ".join(failed))

    rm.help = f"Remove {word}s, each unless a service uses it (as docker {word} rm)."
    return group


async def _remove(rstore: Any, kind: str, name: str, ns: str) -> str | None:
    """Remove one Secret or Config; why not, in one phrase (None: removed)."""
    from kubeless.api import ApiError
    from kubeless.cluster.secrets import Doomed, delete_resources
    from kubeless.store import CorruptValue, NotFound, StoreError

    word = kind.lower()

    async def read() -> Doomed:
        try:
            obj = await rstore.get(kind, name, ns)
        except CorruptValue as err:
            return Doomed([], [err])
        if obj is None:
            raise NotFound(name)
        return Doomed([obj])

    try:
        await delete_resources(rstore, read, what=f"removing {word} {name}")
    except NotFound:
        return f"no such {word}: {name}" + ("" if ns == "default" else f" in namespace {ns}")
    except (ApiError, StoreError) as err:
        return str(err)
    return None


secret = _group("Secret")
config = _group("Config")
