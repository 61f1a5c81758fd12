"""``kubeless wait``: block until resources meet a condition or are gone, as kubectl wait.

    kubeless wait service/web --for=condition=Available --timeout=60s
    kubeless wait services web api --for=condition=Available
    kubeless wait service/backup --for=condition=Complete       (a job)
    kubeless wait node/n1 --for=condition=Ready
    kubeless wait service/web --for=delete
    kubeless wait services -l tier=web --for=condition=Available (or --all)

Targets are ``KIND/NAME`` words (kinds may differ) or ``KIND NAME...``; with ``-l``
or ``--all``, every resource of KIND that matches when the wait starts. What each
condition means is ``kubeless.api.conditions`` (pure). The CLI reads the resources
as users see them (``read_cmds.fetch``: nodes merged with heartbeats, services with
status), and until every target is met it watches etcd from the revision read
(the kind's keys, a service's status, the nodes' heartbeats): each change wakes it
to read again, so nothing between the read and the watch is missed and nothing
polls. ``--timeout`` (a duration, default 30s; 0: look once) bounds the whole wait.

Output and exit codes are kubectl's: ``service/web condition met`` or
``service/web deleted`` per target as it is met, exit 0 once all are; exit 1 with
``timed out waiting for the condition on services/web``, with the reason a job
failed, or when a waited-for resource is missing or deleted; exit 2 (one line) for an
unknown kind, condition or malformed ``--for``/``--timeout``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import click

from kubeless.api import Kind
from kubeless.api.conditions import UnknownCondition, Verdict, condition_check
from kubeless_cli.context import USAGE, CliError, Context, current_namespace, pass_context
from kubeless_cli.flags import flag
from kubeless_cli.selector_flag import SELECTOR_HELP, selector_of

Resource = dict[str, Any]


@dataclass(frozen=True)
class Target:
    kind: Kind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.singular}/{self.name}"


@dataclass(frozen=True)
class WaitFor:
    """``--for``: ``condition`` (lowercased) or deletion (``condition`` None)."""

    condition: str | None

    @staticmethod
    def parse(text: str) -> WaitFor:
        if text == "delete":
            return WaitFor(None)
        word, eq, condition = text.partition("=")
        if word != "condition" or not eq or not condition.strip():
            raise CliError(f'--for must be "delete" or "condition=NAME" '
                           f"(e.g. condition=Available), not {text!r}", USAGE)
        return WaitFor(condition.strip())


def _kind(word: str) -> Kind:
    from kubeless.api import UnknownKind, resolve_kind

    try:
        return resolve_kind(word)
    except UnknownKind as err:
        raise CliError(str(err), USAGE) from None


def parse_targets(words: tuple[str, ...], every: bool) -> tuple[list[Target], Kind | None]:
    """(the named targets, the kind whose every resource is meant) from the arguments."""
    if not words:
        raise CliError("say what to wait for: KIND/NAME..., KIND NAME..., or KIND -l/--all",
                       USAGE)
    if "/" in words[0]:
        if every:
            raise CliError("-l/--all take a KIND, not KIND/NAME", USAGE)
        targets = []
        for word in words:
            kind_word, slash, name = word.partition("/")
            if not slash or not kind_word or not name or "/" in name:
                raise CliError(f"{word!r} is not KIND/NAME (give every target that way, or "
                               "KIND NAME...)", USAGE)
            targets.append(Target(_kind(kind_word), name))
        return targets, None
    kind = _kind(words[0])
    if every == bool(words[1:]):
        raise CliError(f"give names of {kind.plural} or -l/--all, one of them", USAGE)
    return [Target(kind, n) for n in words[1:]], kind if every else None


@click.command("wait")
@click.argument("targets", nargs=-1)
@click.option("--for", "for_", required=True, metavar="delete|condition=NAME",
              help="What to wait for: condition=Available (a service), condition=Complete "
                   "(a job), condition=Ready (a node), or delete.")
@click.option("--timeout", "timeout", default="30s", show_default=True,
              help="How long to wait, a duration like 30s or 5m; 0: look once.")
@click.option("-l", "--selector", help=SELECTOR_HELP)
@flag("--all", "every", help="Every resource of KIND (as found when the wait starts).")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@pass_context
def wait(ctx: Context, targets: tuple[str, ...], for_: str, timeout: str,
         selector: str | None, every: bool, namespace: str | None) -> None:
    """Wait until resources meet a condition, or are deleted (kubectl wait)."""
    from kubeless.api.units import parse_seconds

    wanted = WaitFor.parse(for_)
    try:
        seconds = parse_seconds(timeout, "--timeout")
    except ValueError as err:
        raise CliError(str(err), USAGE) from None
    sel = selector_of(selector)
    named, kind_all = parse_targets(targets, every or sel is not None)
    checks = _checks(wanted, {t.kind for t in named} | ({kind_all} if kind_all else set()))
    ns = current_namespace(namespace)

    async def run(rstore: Any) -> None:
        waiter = _Waiter(rstore, ns, wanted, checks)
        await waiter.resolve(named, kind_all, sel)
        try:
            async with asyncio.timeout(seconds if seconds > 0 else None):
                await waiter.run(once=seconds <= 0)
        except TimeoutError:
            pass
        if waiter.pending:
            first = waiter.pending[0]
            raise CliError(f"timed out waiting for the condition on "
                           f"{first.kind.plural}/{first.name}")

    ctx.run(run)


def _checks(wanted: WaitFor, kinds: set[Kind]) -> dict[str, Any]:
    """kind -> its verdict function (deletion needs none); unknown conditions: exit 2."""
    if wanted.condition is None:
        return {}
    try:
        return {k.kind: condition_check(k.kind, wanted.condition) for k in kinds}
    except UnknownCondition as err:
        raise CliError(str(err), USAGE) from None


class _Waiter:
    """The targets not met yet, read and re-read at each change under their kinds' keys."""

    def __init__(self, rstore: Any, namespace: str, wanted: WaitFor,
                 checks: dict[str, Any]) -> None:
        self.rstore = rstore
        self.namespace = namespace
        self.wanted = wanted
        self.checks = checks
        self.pending: list[Target] = []
        self.seen: dict[Target, bool] = {}  # target -> it existed at some read

    async def resolve(self, named: list[Target], kind_all: Kind | None, sel: Any) -> None:
        """The targets: the names given, or what ``-l``/``--all`` match now."""
        if kind_all is None:
            self.pending = list(dict.fromkeys(named))
            return
        found = await self._read(kind_all, sel)
        self.pending = [Target(kind_all, name) for name in found[0]]
        if not self.pending:
            raise CliError(f"no matching {kind_all.plural} found")

    async def run(self, *, once: bool) -> None:
        """Until every target is met: read each pending kind, judge, watch from there."""
        while self.pending:
            revisions = {}
            for kind in {t.kind for t in self.pending}:
                objects, revisions[kind] = await self._read(kind, None)
                self._judge(kind, objects)
            if not self.pending or once:
                return
            await self._changed(revisions)

    def _judge(self, kind: Kind, objects: dict[str, Resource]) -> None:
        for target in [t for t in self.pending if t.kind == kind]:
            obj = objects.get(target.name)
            done = self._verdict(target, obj)
            if done:
                self.pending.remove(target)
                click.echo(f"{target} {'deleted' if self.wanted.condition is None else 'condition met'}")

    def _verdict(self, target: Target, obj: Resource | None) -> bool:
        if self.wanted.condition is None:
            return obj is None
        if obj is None:
            if self.seen.get(target):
                raise CliError(f"{target} was deleted while waiting for condition "
                               f"{self.wanted.condition}")
            raise CliError(f'{target.kind.singular} "{target.name}" not found')
        self.seen[target] = True
        try:
            verdict: Verdict = self.checks[target.kind.kind](obj)
        except UnknownCondition as err:
            raise CliError(str(err), USAGE) from None
        if verdict.failed:
            raise CliError(f"{target}: {verdict.reason}")
        return verdict.met

    async def _read(self, kind: Kind, sel: Any) -> tuple[dict[str, Resource], int]:
        """name -> resource as users see it, and the revision read at."""
        from kubeless_cli.read_cmds import fetch

        found = await fetch(self.rstore, kind, (), self.namespace, sel)
        return {o["metadata"]["name"]: o for o in found.items}, found.revision

    async def _changed(self, revisions: dict[Kind, int]) -> None:
        """Return at the first change after the revision read, under any pending kind's keys
        (a broken or compacted watch returns too: the caller reads again)."""
        from kubeless.store import StoreError

        async def first(prefix: str, revision: int) -> None:
            async for batch in self.rstore.etcd.watch(prefix, revision + 1):
                if batch.events:
                    return

        watches = [asyncio.create_task(first(p, rev))
                   for kind, rev in revisions.items() for p in self._prefixes(kind)]
        try:
            done, _ = await asyncio.wait(watches, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                try:
                    t.result()
                except StoreError:
                    pass  # read again: a new watch starts from what that read sees
        finally:
            for t in watches:
                t.cancel()
            await asyncio.gather(*watches, return_exceptions=True)

    def _prefixes(self, kind: Kind) -> list[str]:
        keys = self.rstore.keys
        ns = self.namespace if kind.namespaced else None
        prefixes = [keys.kind_prefix(kind.kind, ns)]
        status = keys.status_prefix(kind.kind, ns)
        if status:
            prefixes.append(status)
        if kind.kind == "Node":
            prefixes.append(keys.heartbeats_prefix())
        return prefixes
