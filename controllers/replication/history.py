"""Task history: how many ended tasks a slot (or a global service's node) keeps.

Per group, the newest ``taskHistoryLimit`` terminal tasks (by status
timestamp) stay, older terminal tasks are deleted. A task replication still
wants running is never deleted here, even when terminal: it is the slot's
record that its task ended (restart pending, or never under the policy).
Tasks that are stopping (desired shutdown, not yet terminal) are never
deleted: the agent must report first. Groups that no longer exist (a slot
above the replica count that no task holds, a node that left) keep nothing.
Deleting the assignment key with the task is the applier's job.
"""

from __future__ import annotations

from controllers.ops import Op
from controllers.replication.facts import delete, recency
from kubeless.api.tasks import Task


def trim(tasks: list[Task], limit: int) -> list[Op]:
    """Delete the group's terminal tasks beyond the newest ``limit``."""
    ended = [t for t in tasks if t.is_done]
    if len(ended) <= max(limit, 0):
        return []
    ended.sort(key=recency, reverse=True)
    return [delete(t) for t in ended[max(limit, 0):] if not t.wants_running]
