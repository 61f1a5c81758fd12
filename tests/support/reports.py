"""Counting what agents report, from every report in order: an etcd watch on ``agents/``.

``ReportCounter`` follows each task's reported state (``agents/<node>/tasks/<id>``)
from a revision on and records the most tasks reported not ended (accepted ...
running) at any one revision, and how many reported ``complete``. Watching
rather than sampling: no moment between two polls is missed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from kubeless import store
from kubeless.api.tasks import TERMINAL_STATES


class ReportCounter:
    def __init__(self, rstore: store.ResourceStore) -> None:
        self.store = rstore
        self.states: dict[str, str] = {}
        self.max_going = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def going(self) -> int:
        return sum(1 for s in self.states.values() if s not in TERMINAL_STATES)

    @property
    def complete(self) -> int:
        return sum(1 for s in self.states.values() if s == "complete")

    async def start(self) -> ReportCounter:
        _, revision = await self.store.etcd.get(self.store.keys.agents_prefix())
        self._task = asyncio.create_task(self._run(revision + 1), name="report counter")
        return self

    async def _run(self, revision: int) -> None:
        keys = self.store.keys
        async for batch in self.store.etcd.watch(keys.agents_prefix(), revision):
            for event in batch.events:
                parsed = keys.parse_agent(event.kv.key)
                if parsed is None or parsed.sort != "tasks" or not parsed.task_id:
                    continue
                if event.type == "put":
                    report: Any = json.loads(event.kv.value)
                    self.states[parsed.task_id] = str(report.get("state"))
            self.max_going = max(self.max_going, self.going)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
