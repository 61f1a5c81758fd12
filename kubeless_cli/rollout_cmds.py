"""``kubeless rollout status|history|pause|resume|undo service/NAME`` (kubectl's verbs).

The rollout controller reports in the service's ``status.updateStatus``;
``status`` follows it with a progress bar until the rollout ends (exit 1
when it paused or rolled back). ``pause``/``resume``/``undo`` only write
the Service's rollout annotations or its previous spec (as ``service
rollback`` and ``service rebalance`` do)
(``kubeless.api.service_writes``, written by ``kubeless.store.services``);
the controller does the rest.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import click

from kubeless_cli import published
from kubeless_cli.context import CliError, Context, current_namespace, pass_context
from kubeless_cli.flags import flag
from kubeless_cli.printers import format_rows

KIND_WORDS = ("service", "services", "svc")
Resource = dict[str, Any]


def parse_target(target: str, name: str | None) -> str:
    """``service/web``, ``svc/web``, ``service web`` or ``web`` -> ``web``."""
    kind, sep, rest = target.partition("/")
    if sep:
        if kind.lower() not in KIND_WORDS or not rest:
            raise CliError(f"cannot roll out {target!r}: only services roll out "
                           "(service/NAME)")
        return rest
    if name:
        if target.lower() not in KIND_WORDS:
            raise CliError(f"cannot roll out a {target!r}: only services roll out")
        return name
    return target


def _target_args(fn: Any) -> Any:
    fn = click.option("-n", "--namespace", help="Namespace (default: default).")(fn)
    fn = click.argument("name", required=False)(fn)
    return click.argument("target")(fn)


@click.group()
def rollout() -> None:
    """Follow and steer rolling updates of services."""


async def _get(rstore: Any, name: str, ns: str) -> Resource:
    live = await rstore.get("Service", name, ns)
    if live is None:
        raise CliError(f'service "{name}" not found in namespace {ns}')
    return dict(live)


def _valid(doc: Resource) -> Resource:
    """``doc`` itself, once it validates (as stored, without its resourceVersion)."""
    from kubeless.api import ApiError, validate

    try:
        validate({**doc, "metadata": {k: v for k, v in doc["metadata"].items()
                                      if k != "resourceVersion"}})
    except ApiError as err:
        raise CliError(str(err)) from None
    return doc


async def _replace(rstore: Any, name: str, ns: str, change: Callable[[Resource], Resource],
                   what: str) -> None:
    """Write ``change(live)`` in place of the service (its spec key only: never the
    status we read, controllers own it), through the one Service write path."""
    from kubeless.store import NotFound
    from kubeless.store.services import replace_service

    try:
        with published.refusals():
            await replace_service(rstore, name, ns, lambda live: _valid(change(live)),
                                  what=what)
    except NotFound as err:
        raise CliError(str(err)) from None


async def roll_back(rstore: Any, name: str, ns: str) -> None:
    """Swap the service's current and previous specs (a manual rollback)."""
    from kubeless.api.rollout_annotations import MANUAL_ROLLBACK
    from kubeless.api.service_writes import rolled_back

    def change(live: Resource) -> Resource:
        try:
            return rolled_back(live, MANUAL_ROLLBACK)
        except ValueError as err:
            raise CliError(str(err)) from None

    await _replace(rstore, name, ns, change, f"rolling back service {name}")


async def request_rebalance(rstore: Any, name: str, ns: str, now: float) -> None:
    """Ask the rollout controller for one rebalance of a replicated service (an annotation:
    no new generation, no rollout); a global service or a job is refused."""
    from kubeless.api import workload
    from kubeless.api.service_writes import rebalance_requested

    def change(live: Resource) -> Resource:
        mode = workload.mode_of(live)
        if mode != "replicated":
            raise CliError(f"service {ns}/{name} is {mode}: only a replicated service "
                           "rebalances")
        return rebalance_requested(live, now)

    await _replace(rstore, name, ns, change, f"requesting a rebalance of service {name}")


@rollout.command("pause")
@_target_args
@pass_context
def pause(ctx: Context, target: str, name: str | None, namespace: str | None) -> None:
    """Stop starting new batches (tasks being replaced finish)."""
    from kubeless.api.service_writes import paused

    svc, ns = parse_target(target, name), current_namespace(namespace)
    ctx.run(lambda rstore: _replace(rstore, svc, ns, paused, f"pausing service {svc}"))
    click.echo(f"service/{svc} paused")


@rollout.command("resume")
@_target_args
@pass_context
def resume(ctx: Context, target: str, name: str | None, namespace: str | None) -> None:
    """Go on with a rollout paused by the user or by failures (failures so far are forgiven)."""
    from kubeless.api.service_writes import resumed

    svc, ns = parse_target(target, name), current_namespace(namespace)
    now = time.time()
    ctx.run(lambda rstore: _replace(rstore, svc, ns, lambda live: resumed(live, now),
                                    f"resuming service {svc}"))
    click.echo(f"service/{svc} resumed")


@rollout.command("undo")
@_target_args
@pass_context
def undo(ctx: Context, target: str, name: str | None, namespace: str | None) -> None:
    """Roll back to the previous spec (same as ``service rollback``)."""
    svc, ns = parse_target(target, name), current_namespace(namespace)
    ctx.run(lambda rstore: roll_back(rstore, svc, ns))
    click.echo(f"service/{svc} rolled back")


def _when(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)):
        return ""
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@rollout.command("history")
@_target_args
@pass_context
def history(ctx: Context, target: str, name: str | None, namespace: str | None) -> None:
    """The previous and current specs (Swarm keeps one previous spec) and the last rollout."""
    from kubeless.api.rollout_annotations import previous_spec, rollback_reason

    svc, ns = parse_target(target, name), current_namespace(namespace)
    live = ctx.run(lambda rstore: _get(rstore, svc, ns))
    rows = []
    previous = previous_spec(live)
    if previous is not None:
        rows.append([str(previous[0]), previous[1].get("template", {}).get("image", ""),
                     "previous", ""])
    update = (live.get("status") or {}).get("updateStatus") or {}
    reason = rollback_reason(live)
    note = f"{update.get('state', '')}: {update.get('message', '')}" if update.get("state") \
        else ""
    rows.append([str(live["metadata"].get("generation", "")),
                 live["spec"]["template"]["image"],
                 "current" + (f" (rollback: {reason})" if reason else ""), note])
    click.echo(format_rows(["GENERATION", "IMAGE", "SPEC", "LAST ROLLOUT"], rows), nl=False)
    if update.get("startedAt"):
        click.echo(f"started {_when(update.get('startedAt'))}"
                   + (f", completed {_when(update['completedAt'])}"
                      if update.get("completedAt") else ""))


def bar(done: int, total: int, width: int = 30) -> str:
    filled = width if total <= 0 else min(width, round(width * done / total))
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total}"


def verdict(live: Resource) -> tuple[str | None, str]:
    """(exit outcome or None while going on, the line to show) for one read of the service."""
    generation = int(live["metadata"].get("generation") or 0)
    update = (live.get("status") or {}).get("updateStatus") or {}
    if int(update.get("generation") or 0) < generation:
        return None, f"waiting for the rollout controller to see generation {generation}"
    state = update.get("state")
    message = update.get("message") or ""
    name = live["metadata"]["name"]
    if state in (None, "completed"):
        return "ok", f'service "{name}" successfully rolled out'
    if state == "rollback_completed":
        return "failed", f'service "{name}" rolled back: {message}'
    if state in ("paused", "rollback_paused"):
        return "failed", f'service "{name}" rollout {state.replace("_", " ")}: {message}'
    progress = bar(int(update.get("ready") or 0), int(update.get("total") or 0))
    return None, f"{progress} {state}: {message}"


@rollout.command("status")
@_target_args
@flag("-w", "--watch/--no-watch", default=True, help="Follow until the rollout ends.")
@click.option("--timeout", "wait_for", type=float, default=0.0,
              help="Give up after this many seconds (0: never).")
@click.option("--interval", type=float, default=0.5, help="Seconds between reads.")
@pass_context
def status(ctx: Context, target: str, name: str | None, namespace: str | None, watch: bool,
           wait_for: float, interval: float) -> None:
    """Follow a service's rollout until it ends: exit 0 when completed, 1 when it
    paused or rolled back (or on --timeout)."""
    svc, ns = parse_target(target, name), current_namespace(namespace)

    async def follow(rstore: Any) -> str | None:
        deadline = time.monotonic() + wait_for if wait_for > 0 else None
        last = None
        while True:
            outcome, line = verdict(await _get(rstore, svc, ns))
            if line != last:
                click.echo(line)
                last = line
            if outcome is not None or not watch:
                return outcome
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(f"timed out after {wait_for:g}s waiting for the rollout of "
                               f"service {svc}")
            await asyncio.sleep(interval)

    outcome = ctx.run(follow)
    if outcome == "failed":
        sys.exit(1)  # not click's Exit: main() runs click with standalone_mode=False
