"""``kubeless apply``, ``diff`` and ``delete -f``: manifests against etcd.

apply validates every document before it writes anything, then commits
all the changes in one etcd transaction that compares what it read, so a
folder is applied whole or not at all. ``--prune -l k=v`` also deletes the
Services carrying that label that the manifests no longer declare. Services
that publish ports get their ingress ports numbered and checked against the
ports other services hold, and are written only if no service changed
since they were read (kubeless.store.services, the one Service write path);
a Service referring to a Secret or Config that neither exists nor is in the
files is refused, nothing written.
Secrets and Configs are written as etcd holds them (kubeless.cluster.secrets:
a Secret sealed, a value that changed refused), shown by ``diff`` without a
Secret's sealed text, and deleted only when no Service uses them.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from kubeless.api.secrets import public_view
from kubeless.api.selectors import Selector
from kubeless_cli import published
from kubeless_cli.context import (USAGE, CliError, Context, checked_namespace,
                                  current_namespace, given_namespace, pass_context)
from kubeless_cli.flags import FALSE_WORDS, TRUE_WORDS, flag
from kubeless_cli.progress import converge, parse_timeout, timeout_option
from kubeless_cli.manifests import Manifest, ManifestError, load
from kubeless_cli.plan import PRUNE, PRUNABLE_KINDS, Action, duplicates, plan_apply, ref_of
from kubeless_cli.printers import to_yaml
from kubeless_cli.selector_flag import narrowing_selector

if TYPE_CHECKING:
    from kubeless.store.services import Attempt

files_option = click.option("-f", "--filename", "files", multiple=True, required=True,
                            help="File, folder or - for standard input (repeatable).")
recursive_option = flag("-R", "--recursive", help="Read folders given with -f recursively.")
namespace_option = click.option("-n", "--namespace", help="Namespace of documents without one.")


def validated(files: tuple[str, ...], recursive: bool,
              namespace: str | None) -> list[tuple[str, dict[str, Any]]]:
    """Every document, validated and defaulted; all problems reported at once."""
    from kubeless.api import ApiError, validate

    namespace = given_namespace(namespace)
    if namespace:
        checked_namespace(namespace, "-n")
    default = namespace or (current_namespace(None) if os.environ.get("KUBELESS_NAMESPACE")
                            else None)
    try:
        manifests = load(files, recursive)
    except ManifestError as err:
        raise CliError(str(err)) from None
    if not manifests:
        raise CliError(f"no resources found in {', '.join(files)}")
    out, problems = [], []
    for m in manifests:
        try:
            doc = validate(_with_namespace(m, namespace, default))
        except ApiError as err:
            err.source = m.source
            problems.append(str(err))
            continue
        out.append((m.source, doc))
    problems += duplicates(out)
    if len(problems) == 1 and "\n" not in problems[0]:
        raise CliError(f"{problems[0]}; nothing was written")
    if problems:
        count = len(problems)
        head = f"{count} invalid document{'s' if count > 1 else ''}; nothing was written"
        raise CliError(head + "\n" + "\n".join(problems))
    return out


def _with_namespace(m: Manifest, namespace: str | None, default: str | None) -> dict[str, Any]:
    """The document in ``-n``'s namespace (another one declared is an error), else, when it
    declares none, in ``default`` (KUBELESS_NAMESPACE), as kubectl's context namespace."""
    doc = m.doc
    meta = doc.get("metadata")
    if default is None or not isinstance(meta, dict) or doc.get("kind") == "Node":
        return doc
    declared = meta.get("namespace")
    if namespace is None:
        return doc if declared else {**doc, "metadata": {**meta, "namespace": default}}
    if declared and declared != namespace:
        raise CliError(f"{m.source}: the namespace of the document ({declared}) does not match "
                       f"-n {namespace}; nothing was written")
    return {**doc, "metadata": {**meta, "namespace": namespace}}


async def _live(rstore: Any, docs: list[tuple[str, dict[str, Any]]],
                invalid: dict[Any, Any] | None = None) -> dict[Any, Any]:
    """What etcd holds for each document. A value there that is not a resource goes
    in ``invalid`` (CorruptValue by ref) when given (delete -f removes it), else it
    stops the command: apply will not overwrite what it cannot read."""
    from kubeless.store import CorruptValue

    live = {}
    for source, doc in docs:
        kind, ns, name = ref_of(doc)
        try:
            current = await rstore.get(kind, name, ns)
        except CorruptValue as err:
            if invalid is None:
                raise CliError(f"{source}: {kind.lower()} \"{name}\" in etcd is not a valid "
                               f"resource ({err.reason}); remove it first: kubeless delete "
                               f"{kind.lower()} {name}; nothing was written") from None
            invalid[(kind, ns, name)] = err
            continue
        if current is not None:
            live[(kind, ns, name)] = current
    return live


async def _prune_candidates(rstore: Any, sel: Selector | None) -> list[dict[str, Any]] | None:
    if sel is None:
        return None
    found = []
    for kind in PRUNABLE_KINDS:
        found += (await rstore.list(kind, None, sel)).items
    return found


async def _numbered(attempt: Attempt, docs: list[tuple[str, dict[str, Any]]],
                    pruned: list[dict[str, Any]] | None = None,
                    ) -> list[tuple[str, dict[str, Any]]]:
    """The documents with every ingress port numbered and checked against the ports
    other services hold (those pruned excepted); the write is then guarded
    (kubeless.store.services.Attempt.numbered)."""
    numbered = await attempt.numbered([doc for _, doc in docs], pruned or ())
    return [(source, doc) for (source, _), doc in zip(docs, numbered)]


def _fill(txn: Any, actions: list[Action]) -> None:
    for a in actions:
        if a.verb == "created":
            txn.create(a.new)
        elif a.verb == "configured":
            txn.update(a.new)
        elif a.verb == PRUNE:
            txn.delete(a.live)


if TYPE_CHECKING:  # generic in the stubs of recent click only (as main.Seconds)
    _StrParam = click.ParamType[str]
else:
    _StrParam = click.ParamType


class DryRun(_StrParam):
    """``--dry-run[=client|server|none]`` as kubectl's: client checks the documents here,
    server also against the cluster (ports, references, what would change), nothing
    written either way; a bare ``--dry-run`` (and docker's ``=true``) is server, what it
    always meant here; ``=false`` is none."""

    name = "client|server"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value)
        if text in ("client", "server", "none"):
            return text
        if text in TRUE_WORDS | FALSE_WORDS:
            return "server" if text in TRUE_WORDS else "none"
        self.fail(f"{text!r} is not one of client, server, none", param, ctx)


dry_run_option = click.option(
    "--dry-run", type=DryRun(), is_flag=False, flag_value="server", default="none",
    help="Write nothing: client checks the documents here, server (the bare flag) also "
         "against the cluster and says what would change.")


def dry_run_suffix(dry_run: str) -> str:
    return {"none": "", "server": " (dry run)", "client": " (client dry run)"}[dry_run]


@click.command()
@files_option
@recursive_option
@namespace_option
@dry_run_option
@flag("--prune", help="Delete Services with the -l label that the files no longer declare.")
@click.option("-l", "--selector", help="Label selector for --prune (as get -l).")
@flag("--wait", help="Then wait for each Service created or changed to converge, showing "
                     "progress (exit 1 when a rollout pauses, fails or times out).")
@timeout_option
@pass_context
def apply(ctx: Context, files: tuple[str, ...], recursive: bool, namespace: str | None,
          dry_run: str, prune: bool, selector: str | None, wait: bool, timeout: str) -> None:
    """Create or update resources from files, in one transaction."""
    if prune and not selector:
        raise CliError("--prune needs a label selector (-l key=value) naming what the files own",
                       USAGE)
    if selector and not prune:
        raise CliError("-l with apply only selects what --prune may delete; add --prune", USAGE)
    sel = narrowing_selector(selector) if prune and selector else None
    docs = validated(files, recursive, namespace)
    suffix = dry_run_suffix(dry_run)
    if dry_run == "client":
        for _, doc in docs:
            click.echo(f"{doc['kind'].lower()}/{doc['metadata']['name']} valid{suffix}")
        return
    limit = parse_timeout(timeout) if wait and dry_run == "none" else None

    async def run(rstore: Any) -> None:
        actions = await apply_documents(rstore, docs, sel, dry_run == "server")
        for a in actions:
            kind, _, name = a.ref
            notes = ", ".join(n for n in (a.note, suffix.strip(" ()")) if n)
            click.echo(f"{kind.lower()}/{name} {a.verb}{f' ({notes})' if notes else ''}")
        for a in actions if limit is not None else ():
            kind, ns, name = a.ref
            if kind == "Service" and a.verb in ("created", "configured"):
                await converge(rstore, str(ns), name, limit or 0.0)

    ctx.run(run)


async def apply_documents(rstore: Any, docs: list[tuple[str, dict[str, Any]]],
                          sel: Selector | None, dry_run: bool) -> list[Action]:
    """Plan ``docs`` (validated) against the cluster and, unless ``dry_run``, commit the
    plan in one transaction; the plan either way (a server dry run's answer)."""
    from kubeless.store import StoreError
    from kubeless.store.services import Attempt, write_services

    async def plan(attempt: Attempt) -> list[Action]:
        candidates = await _prune_candidates(rstore, sel)
        numbered = await _numbered(attempt, docs, candidates)
        actions = await _planned(rstore, numbered, candidates)
        # Secrets and Configs this apply writes count as there (the same commit).
        await attempt.references([a.new for a in actions if a.writes and a.new])
        if not dry_run:
            _fill(attempt.txn, actions)
        return actions

    try:
        with published.refusals(), _refusals():
            return (await write_services(rstore, plan, what="applying")).value
    except StoreError as err:
        raise CliError(f"{err}; nothing was written") from None


@click.command()
@files_option
@recursive_option
@namespace_option
@pass_context
def diff(ctx: Context, files: tuple[str, ...], recursive: bool, namespace: str | None) -> None:
    """Show what apply would change (exit 0 same, 1 different, >1 error)."""
    try:
        docs = validated(files, recursive, namespace)
    except CliError as err:
        raise CliError(err.message, code=2) from None

    async def run(rstore: Any) -> list[Action]:
        from kubeless.store import StoreError
        from kubeless.store.services import Attempt

        try:
            with published.refusals(code=2), _refusals(code=2):
                numbered = await _numbered(Attempt(rstore), docs)
                return await _planned(rstore, numbered)
        except StoreError as err:
            raise CliError(str(err), code=2) from None
        except CliError as err:  # an invalid value in etcd: an error, as diff(1) says 2
            raise CliError(err.message, code=2) from None

    different = False
    for a in ctx.run(run):
        if not a.writes:
            continue
        different = True
        kind, ns, name = a.ref
        label = f"{kind}/{ns}/{name}" if ns else f"{kind}/{name}"
        click.echo("".join(difflib.unified_diff(
            _comparable(a.live).splitlines(keepends=True),
            _comparable(a.new).splitlines(keepends=True),
            fromfile=f"live/{label}", tofile=f"merged/{label}")), nl=False)
    raise SystemExit(1 if different else 0)


async def _planned(rstore: Any, docs: list[tuple[str, dict[str, Any]]],
                   candidates: list[dict[str, Any]] | None = None) -> list[Action]:
    """What apply does with ``docs`` (numbered): Secrets and Configs as etcd would hold
    them (kubeless.cluster.secrets), then the plan against what etcd holds now."""
    from kubeless.cluster.secrets import stored_documents

    live = await _live(rstore, docs)
    return plan_apply(await stored_documents(rstore, docs, live), live, candidates)


@contextmanager
def _refusals(code: int = 1) -> Iterator[None]:
    """A Secret's or Config's value that changed, or no key to seal one to: one line,
    nothing written."""
    from kubeless.api import ApiError
    from kubeless.cluster.errors import ClusterError

    try:
        yield
    except (ApiError, ClusterError) as err:  # diff (code 2) writes nothing anyway
        raise CliError(f"{err}; nothing was written" if code == 1 else str(err), code=code) \
            from None


def _comparable(obj: dict[str, Any] | None) -> str:
    if obj is None:
        return ""
    obj = public_view(obj)
    meta = {k: v for k, v in (obj.get("metadata") or {}).items()
            if k not in ("resourceVersion", "uid", "creationTimestamp", "generation")}
    return to_yaml({"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                    "metadata": meta, "spec": obj.get("spec")})


def delete_from_files(ctx: Context, files: tuple[str, ...], recursive: bool,
                      namespace: str | None, ignore_not_found: bool) -> list[str]:
    """``delete -f``: every resource the files name, in one transaction."""
    docs = validated(files, recursive, namespace)

    async def run(rstore: Any) -> list[str]:
        from kubeless.api import ApiError
        from kubeless.cluster.secrets import Doomed, delete_resources
        from kubeless.store import StoreError

        gone: list[str] = []

        async def read() -> Doomed:
            invalid: dict[Any, Any] = {}
            live = await _live(rstore, docs, invalid)
            doomed = Doomed([])
            gone.clear()
            for _, doc in docs:
                ref = ref_of(doc)
                if ref in live or ref in invalid:
                    if ref in live:
                        doomed.items.append(live[ref])
                    else:
                        doomed.invalid.append(invalid[ref])
                    gone.append(f'{ref[0].lower()} "{ref[2]}" deleted')
                elif not ignore_not_found:
                    raise CliError(f'{ref[0].lower()} "{ref[2]}" not found; nothing was deleted')
            return doomed

        try:
            await delete_resources(rstore, read, what="deleting")
        except (StoreError, ApiError) as err:
            raise CliError(f"{err}; nothing was deleted") from None
        return gone

    return ctx.run(run)
