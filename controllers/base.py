"""What the core controllers share: the cluster view, the time, writing, and waiting.

``ViewController`` gives a controller the process's ``ClusterView`` (passed
in by whoever assembles the controllers; a controller made alone gets one of
its own), wall-clock time from the runner's clock (``now``), and an
``apply`` that commits decision operations through the fenced applier and
then waits until the informers have seen its own writes, so the next
reconcile never decides on a cache that predates them (a replication
reconcile that did not see the tasks it just created would create them
again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from kubeless.store import ResourceStore

from controllers.framework import ApplyResult, Controller, ControllerContext, InformerSpec
from controllers.ops import Op, WriteServiceStatus
from controllers.view import ClusterView

log = logging.getLogger(__name__)

READ_YOUR_WRITES_TIMEOUT = 10.0


class ViewController(Controller):
    def __init__(self, store: ResourceStore, view: ClusterView | None = None) -> None:
        self.view: ClusterView = view if view is not None else ClusterView(store)

    def now(self) -> float:
        """Wall-clock seconds (what task timestamps hold), from the runner's clock."""
        return self.ctx.clock.wall()

    def informers(self) -> Sequence[InformerSpec]:
        return self.view.informer_specs()

    def setup(self, ctx: ControllerContext) -> None:
        super().setup(ctx)
        self.view.attach(ctx.informers)

    async def apply(self, ops: Sequence[Op]) -> ApplyResult:
        """Commit ops (fenced, batched), wait for the caches to see them, raise on conflicts."""
        if not ops:
            return ApplyResult([])
        result = await self.ctx.applier.apply(ops)
        if result.revision:
            prefixes = {self.view.status_prefix if isinstance(op, WriteServiceStatus)
                        else self.view.tasks_prefix for op in ops}
            await self.caught_up(result.revision, prefixes)
        return result.check()

    async def caught_up(self, revision: int, prefixes: set[str]) -> None:
        """Wait until the informers of the prefixes written have seen ``revision``.

        Polls ``Informer.revision`` instead of ``Informer.wait_for_revision``:
        a worker cancelled there (leadership lost, shutdown) could stay stuck
        re-acquiring the informer's Condition lock, so the runner never stopped.
        The informer is usually there already, or a few milliseconds later.
        """
        informers = [self.ctx.informers[p] for p in prefixes]
        deadline = asyncio.get_running_loop().time() + READ_YOUR_WRITES_TIMEOUT
        delay = 0.001
        while any(i.revision < revision for i in informers):
            if asyncio.get_running_loop().time() > deadline:
                log.warning("%s: caches did not reach revision %d in %ss", self.name, revision,
                            READ_YOUR_WRITES_TIMEOUT)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
