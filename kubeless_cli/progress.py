"""Waiting for a service to converge, and showing it as docker does.

``service create``, ``update``, ``scale``, ``rollback`` and ``apply --wait`` call
``wait_for`` after their write unless ``--detach``: it follows the service and its
tasks (an etcd watch of the service's status, its tasks and the agents' reports,
read again at most a few times a second) and prints ``kubeless.api.progress``'s lines:
on a terminal redrawn in place, as docker's; elsewhere (a pipe, CI) each line once
when it changes. It returns once converged, and raises ``CliError`` (exit 1) with the
reason when the rollout pauses, is rolled back, the job fails, the service is
invalid, or ``timeout`` passes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import click

from kubeless.api.progress import Progress, Target, progress
from kubeless_cli.context import CliError

DEFAULT_TIMEOUT = 300.0  # seconds; 0: wait for ever, as docker does
REFRESH = 0.25  # the least time between two reads of the service and its tasks
TICK = 2.0  # read again at least this often (a watch may stay quiet while time passes)


class Printer:
    """Draws successive ``Progress`` values on a terminal, or as plain changed lines."""

    def __init__(self, name: str, *, tty: bool | None = None) -> None:
        self.name = name
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.drawn = 0  # lines drawn last time (terminal)
        self.printed: dict[str, str] = {}  # label -> last text printed (plain)

    def show(self, shown: Progress) -> None:
        texts = [("overall", shown.overall)]
        texts += [(line.label, f"{line.label}: {line.state}" + (f"  {line.note}" if line.note
                                                               else "")) for line in shown.lines]
        texts += [(note.split(":")[0], note) for note in shown.notes]
        if self.tty:  # written as is: click.echo would strip the cursor moves off a pipe
            up = f"\x1b[{self.drawn}F" if self.drawn else ""  # to the first line drawn
            sys.stdout.write(up + "".join(f"\x1b[2K{text}\n" for _, text in texts))
            self.drawn = len(texts)
        else:
            for label, text in texts:
                if self.printed.get(label) != text:
                    click.echo(text)
                    self.printed[label] = text
        sys.stdout.flush()


async def wait_for(rstore: Any, namespace: str, name: str, target: Target, *,
                   timeout: float = DEFAULT_TIMEOUT, printer: Printer | None = None) -> None:
    """Follow the service until ``progress`` says done (return) or it fails (CliError)."""
    from kubeless.api.tasks import Task
    from kubeless.store.tasks import list_tasks

    printer = printer or Printer(name)
    changed = asyncio.Event()
    watches = [asyncio.create_task(_watch(rstore, prefix, changed))
               for prefix in _prefixes(rstore, namespace, name)]
    deadline = time.monotonic() + timeout if timeout > 0 else None
    try:
        while True:
            changed.clear()
            service = await rstore.get("Service", name, namespace)
            if service is None:
                raise CliError(f'service "{name}" was deleted while waiting for it')
            tasks = [Task.of(t) for t in (await list_tasks(rstore, namespace, name)).items]
            shown = progress(service, tasks, target)
            printer.show(shown)
            if shown.failure:
                raise CliError(f"{name}: {shown.failure}")
            if shown.done:
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise CliError(f"{name}: not converged within {timeout:g}s ({shown.overall}); "
                               f"it goes on: kubeless service ps {name}")
            for watch in watches:
                if watch.done():
                    watch.result()  # a watch that ended says why
            await _quiet(changed, min(TICK, left) if left is not None else TICK)
            await asyncio.sleep(REFRESH)  # let a burst of changes land before reading
    finally:
        for watch in watches:
            watch.cancel()


async def converge(rstore: Any, ns: str, name: str, timeout: float, *, rollback: bool = False,
                   run_before: int | None = None) -> None:
    """Wait for the service as it is now (its generation) to converge, showing progress."""
    live = await rstore.get("Service", name, ns)
    if live is None:
        return
    target = Target(int(live["metadata"].get("generation") or 0), rollback, run_before)
    await wait_for(rstore, ns, name, target, timeout=timeout)


def _prefixes(rstore: Any, namespace: str, name: str) -> list[str]:
    keys = rstore.keys
    return [keys.status("Service", name, namespace) or "",
            keys.kind_prefix("Task", namespace, name), keys.agents_prefix()]


async def _watch(rstore: Any, prefix: str, changed: asyncio.Event) -> None:
    from kubeless.store import StoreError

    _, revision = await rstore.etcd.get(prefix)
    try:
        async for _ in rstore.etcd.watch(prefix, revision + 1):
            changed.set()
    except StoreError as err:
        raise CliError(f"lost the cluster while waiting: {err}") from None


async def _quiet(changed: asyncio.Event, at_most: float) -> None:
    try:
        await asyncio.wait_for(changed.wait(), max(at_most, 0.0))
    except asyncio.TimeoutError:
        pass


def timeout_option(fn: Any) -> Any:
    """``--timeout``: how long a command waits for convergence."""
    return click.option("--timeout", default="5m", metavar="DURATION",
                        help="Give up waiting (exit 1) after this long; the change goes on "
                             "(default 5m; 0: wait for ever).")(fn)


def parse_timeout(text: str) -> float:
    from kubeless.api.units import parse_seconds

    try:
        return parse_seconds(text, "--timeout")
    except ValueError as err:
        raise CliError(str(err), 2) from None
