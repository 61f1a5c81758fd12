"""Backends, and the userspace path's choice of one per connection (pure: no I/O, no event
loop).

- ``Backend``: where one task answers for one port (its node's address, the host
  port); ``backends_for(doc, target)`` reads them from a service's endpoints
  document (docs/MODEL.md). ``published`` builds every published port's backend
  groups from these.
- ``Rotation``: for one published port, the order in which a new connection tries
  backends: a group drawn by weight (the live groups' ``shares``, so 90/10 holds
  over many connections), round robin inside it (a cursor per group, kept across
  weight and backend changes), then the other groups, for when every backend of
  the drawn one refuses. Backends that refused recently (a short memory the caller
  keeps) go last, and a group with none left that answers is not drawn: its share
  goes to the others until the memory ends.

The asyncio side (``kubeless_agent.mesh.mesh`` and ``relay``) only applies what is
decided here; the kernel path reads the same groups through ``published``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # published imports this module: the type only, no cycle at run time
    from kubeless_agent.mesh.published import Group


@dataclass(frozen=True)
class Backend:
    """Where one task answers for one port: its node's address and the host port."""

    address: str
    port: int
    task: str = ""
    node: str = ""


def _int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 65536 else None


def backends_for(doc: Mapping[str, Any], target: int, protocol: str = "tcp") -> tuple[Backend, ...]:
    """The backends of one target port, in the document's order (sorted by task id)."""
    found = []
    for ep in doc.get("endpoints") or []:
        if not isinstance(ep, dict) or not ep.get("address"):
            continue
        for p in ep.get("ports") or []:
            if not isinstance(p, dict) or _int(p.get("target")) != target:
                continue
            if (p.get("protocol") or "tcp") != protocol:
                continue
            host_port = _int(p.get("published"))
            if host_port is not None:
                found.append(Backend(str(ep["address"]), host_port, str(ep.get("task") or ""),
                                     str(ep.get("node") or "")))
                break
    return tuple(found)


class Rotation:
    """The order of attempts for each new connection to one published port.

    Built from ``published.shares(groups)`` (live groups only: weight 0 or no backend
    gets nothing) and the cursors of the rotation it replaces, so a new weight or a
    new backend list applies from the next connection without restarting anyone's
    round robin. ``order(draw, failed_until, now)`` takes a uniform draw in [0, 1).
    """

    __slots__ = ("services", "groups", "shares", "cumulative", "spill", "cursors")

    def __init__(self, live: Iterable[tuple[Group, float]],
                 cursors: Mapping[str, int] | None = None) -> None:
        live = list(live)
        self.services = [g.service for g, _ in live]
        self.groups = [g.backends for g, _ in live]
        self.shares = [share for _, share in live]
        self.cumulative = list(accumulate(self.shares))
        # what follows group i's own backends: every other group's, in order
        self.spill = [tuple(b for j, g in enumerate(self.groups) if j != i for b in g)
                      for i in range(len(self.groups))]
        old = cursors or {}
        self.cursors = [old.get(s, 0) for s in self.services]

    def cursors_by_service(self) -> dict[str, int]:
        return dict(zip(self.services, self.cursors))

    def order(self, draw: float, failed_until: Mapping[Backend, float],
              now: float) -> list[Backend]:
        """Backends to try, in order; the drawn group's cursor moves on by one."""
        if failed_until:
            return self._order_around_failures(draw, failed_until, now)
        n = len(self.groups)
        if n == 0:
            return []
        i = min(bisect_right(self.cumulative, draw * self.cumulative[-1]), n - 1)
        group = self.groups[i]
        c = self.cursors[i] % len(group)
        self.cursors[i] = c + 1
        return [*group[c:], *group[:c], *self.spill[i]]

    def _order_around_failures(self, draw: float, failed_until: Mapping[Backend, float],
                               now: float) -> list[Backend]:
        """The slow path, while some backend is remembered as refusing: draw only among
        groups with a backend that may answer; the refusing ones go last."""
        def fresh(b: Backend) -> bool:
            return failed_until.get(b, 0.0) <= now

        candidates = [i for i, g in enumerate(self.groups) if any(fresh(b) for b in g)]
        if not candidates:  # every backend refused lately: try them all anyway, in order
            return [b for g in self.groups for b in g]
        weights = list(accumulate(self.shares[i] for i in candidates))
        pick = candidates[min(bisect_right(weights, draw * weights[-1]), len(candidates) - 1)]
        group = self.groups[pick]
        c = self.cursors[pick] % len(group)
        self.cursors[pick] = c + 1
        first = [b for b in (*group[c:], *group[:c]) if fresh(b)]
        others = [b for i in candidates if i != pick for b in self.groups[i] if fresh(b)]
        stale = [b for g in self.groups for b in g if not fresh(b)]
        return first + others + stale
