"""Reading tasks as users see them: each merged with its agent's latest report.

A task's own status is written by controllers; what its container is doing
is reported by the agent of its node under ``agents/<node>/tasks/<id>``.
``list_tasks`` returns tasks whose ``status`` is the merge of both
(``kubeless.api.tasks.effective_status``).
"""

from __future__ import annotations

from typing import Any

from kubeless.api.tasks import effective_status

from .agents import agent_records
from .errors import CorruptValue
from .resources import ListResult, ResourceStore


async def reports(rstore: ResourceStore, revision: int = 0) -> dict[str, dict[str, Any]]:
    """task id -> the latest report of the agent running it."""
    return {task_id: {"nodeName": node, **value} for task_id, (node, value) in
            (await agent_records(rstore, "tasks", revision)).items()}


async def list_tasks(rstore: ResourceStore, namespace: str | None = None,
                     service: str | None = None) -> ListResult:
    """Tasks (of one service when given) with their effective status."""
    kvs, revision = await rstore.etcd.list_prefix(
        rstore.keys.kind_prefix("Task", namespace, service))
    result = ListResult([], revision)
    seen = await reports(rstore, revision)
    for kv in kvs:
        try:
            task = rstore.decode("Task", kv)
        except CorruptValue as err:
            result.skipped.append(err)
            continue
        task["status"] = effective_status(task, seen.get(task["metadata"]["name"]))
        result.items.append(task)
    return result
