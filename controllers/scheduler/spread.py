"""Spread: choose the next node for one task among nodes that passed the static filters.

A tree of heaps, one per placement-preference level, as Swarm spreads:
the root balances this service's task count across the values of the
first preference's attribute (nodes without it form a group of their own),
each group does the same with the next preference, and the leaves order
their nodes by (tasks of this service, total active tasks, node id). Taking
a node pops the best entry at each level; a node that fails a dynamic filter
(resources, max replicas, host ports) is dropped for the rest of the batch
(sums only grow while planning, so it cannot pass later), an empty group
likewise; the chosen node and its groups are pushed back with their new
counts. A task costs O(depth x log(width)) plus the nodes it drops.

Building a tree costs O(nodes), too much for a batch of many small
services; ``TotalOrder`` keeps every node sorted by (total active tasks, id)
across the whole batch, so a small group takes the
first node there it has no task on yet (the tree's choice whenever such a
node exists) and builds a tree only when a short scan finds none.

Leaves to others: static filtering and the batch loop (``plan``).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from kubeless.api.constraints import LABEL_PREFIX, node_attribute

from controllers.scheduler.filters import Filter
from controllers.scheduler.nodeinfo import NodeInfo
from controllers.scheduler.request import TaskRequest

Scores = dict[str, int | str]
NONE_LABEL = "(none)"


class Group:
    """A node group: a heap of nodes (leaf) or of child groups, and this service's count."""

    __slots__ = ("count", "heap", "leaf")

    def __init__(self, count: int, heap: list[tuple[Any, ...]], leaf: bool) -> None:
        self.count, self.heap, self.leaf = count, heap, leaf


def _short(key: str) -> str:
    return key[len(LABEL_PREFIX):] if key.startswith(LABEL_PREFIX) else key


def build(request: TaskRequest, infos: Sequence[NodeInfo], depth: int = 0) -> Group:
    service = request.service
    if depth == len(request.preferences):
        heap = [(i.tasks_of(service), i.total_tasks, i.id, i) for i in infos]
        heapq.heapify(heap)
        return Group(sum(entry[0] for entry in heap), heap, leaf=True)
    key = request.preferences[depth]
    by_value: dict[str | None, list[NodeInfo]] = {}
    for info in infos:
        by_value.setdefault(node_attribute(key, info.node), []).append(info)
    branches: list[tuple[Any, ...]] = []
    for value, members in by_value.items():
        child = build(request, members, depth + 1)
        # Ties: labelled groups before the unlabelled one, then by value.
        branches.append((child.count, value is None, value or "", label(key, value), child))
    heapq.heapify(branches)
    return Group(sum(entry[0] for entry in branches), branches, leaf=False)


def take(group: Group, request: TaskRequest,
         dynamic: Sequence[Filter]) -> tuple[NodeInfo, Scores] | None:
    """Assign the task to the best node under ``group`` (adding its usage), or None."""
    heap = group.heap
    while heap:
        entry = heap[0]
        if group.leaf:
            info: NodeInfo = entry[3]
            if dynamic and not all(f.check(request, info) for f in dynamic):
                heapq.heappop(heap)
                continue
            scores: Scores = {"service_tasks": info.tasks_of(request.service),
                              "total_tasks": info.total_tasks}
            info.add(request.usage)
            heapq.heapreplace(heap, (info.tasks_of(request.service), info.total_tasks,
                                     info.id, info))
            group.count += 1
            return info, scores
        child: Group = entry[4]
        got = take(child, request, dynamic)
        if got is None:
            heapq.heappop(heap)
            continue
        heapq.heapreplace(heap, (child.count, entry[1], entry[2], entry[3], child))
        group.count += 1
        info, scores = got
        inner = scores.get("group")
        scores["group"] = entry[3] if inner is None else f"{entry[3]},{inner}"
        return info, scores
    return None


def label(key: str, value: str | None) -> str:
    return f"{_short(key)}={NONE_LABEL if value is None else value}"


class Partition:
    """Eligible nodes grouped by their preference values; static, so shared by groups."""

    def __init__(self, eligible: Sequence[NodeInfo], preferences: tuple[str, ...]) -> None:
        self.preferences = preferences
        self.paths = {i.id: tuple(node_attribute(k, i.node) for k in preferences)
                      for i in eligible}
        children: dict[tuple[str | None, ...], set[str | None]] = {}
        members: dict[tuple[str | None, ...], set[str]] = {}
        for node_id, path in self.paths.items():
            for depth in range(len(path)):
                children.setdefault(path[:depth], set()).add(path[depth])
            members.setdefault(path, set()).add(node_id)
        self.children = {prefix: sorted(values, key=_value_order)
                         for prefix, values in children.items()}
        self.members = {path: frozenset(ids) for path, ids in members.items()}

    def least_loaded(self, counts: dict[tuple[str | None, ...], int]
                     ) -> tuple[tuple[str | None, ...], str]:
        """The leaf a tree would descend to (fewest tasks per level), and its label."""
        prefix: tuple[str | None, ...] = ()
        while len(prefix) < len(self.preferences):
            best = min(self.children[prefix],
                       key=lambda v: (counts.get((*prefix, v), 0), *_value_order(v)))
            prefix = (*prefix, best)
        return prefix, ",".join(label(k, v) for k, v in zip(self.preferences, prefix))


def _value_order(value: str | None) -> tuple[bool, str]:
    return (value is None, value or "")


class TotalOrder:
    """Every node sorted by (total active tasks, id); ``bump`` after each add."""

    def __init__(self, infos: Iterable[NodeInfo]) -> None:
        self.by_id = {info.id: info for info in infos}
        self.keys = sorted((info.total_tasks, info.id) for info in self.by_id.values())

    def bump(self, info: NodeInfo) -> None:
        """Re-sort a node whose total just grew by one."""
        old = (info.total_tasks - 1, info.id)
        at = bisect_left(self.keys, old)
        if at < len(self.keys) and self.keys[at] == old:
            del self.keys[at]
        insort(self.keys, (info.total_tasks, info.id))

    def take_fresh(self, request: TaskRequest, members: Collection[str],
                   dynamic: Sequence[Filter], limit: int) -> tuple[NodeInfo, Scores] | None:
        """Assign to the least loaded node of ``members`` without this service's tasks,
        scanning at most ``limit`` nodes; None when not found (fall back to a tree)."""
        service = request.service
        for total, node_id in self.keys[:limit]:
            if node_id not in members:
                continue
            info = self.by_id[node_id]
            if service in info.service_tasks:
                continue
            if dynamic and not all(f.check(request, info) for f in dynamic):
                continue
            info.add(request.usage)
            self.bump(info)
            return info, {"service_tasks": 0, "total_tasks": total}
        return None
