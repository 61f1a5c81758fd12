"""The kernel path of the routing mesh: one nftables table per node, kept current.

``KernelMesh`` has the userspace ``RoutingMesh``'s shape: an informer handler on
``endpoints/`` (``on_endpoints``: recompute what the node forwards, wake the
loop), ``run`` (apply the table whenever what it should hold changes; bursts of
changes coalesce into one apply), ``settled`` (the last wanted state was tried),
``close`` and ``remove``. The table itself is ``nft.build_table``'s; the host
calls are ``kernel_host.NftHost``'s, made off the event loop.

- The first apply waits for the endpoints informer's first sync (``synced``), so
  an agent started again replaces its predecessor's table (adoption) with a
  complete one: connections keep flowing through the restart.
- A failed apply is logged, counted (``kernel_metrics``) and tried again every
  ``retry_interval`` seconds; the table in place stays until one succeeds.
- ``close`` (a graceful stop) leaves the table and the forward rule in place:
  published ports keep working while the agent is away, and a restart changes
  nothing. ``remove`` (the node leaves) deletes both.

``connections_by_task`` sums the endpoint chains' counters per task (load reports).

``mesh_path(mode, unavailable)`` decides between the two paths (``--mesh-mode``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kubeless_agent.errors import AgentError
from kubeless_agent.mesh import kernel_metrics
from kubeless_agent.mesh.kernel_host import NftError, NftHost
from kubeless_agent.mesh.nft import (FAMILY, EndpointRule, Ruleset, build_table,
                                     delete_batch, docker_targets, endpoint_counts,
                                     table_name)
from kubeless_agent.mesh.published import Published, wanted_published

log = logging.getLogger(__name__)
MODES = ("auto", "kernel", "userspace")


class KernelPathUnavailable(AgentError):
    """``--mesh-mode kernel`` on a host where nftables does not work."""


def mesh_path(mode: str, unavailable: str | None) -> str:
    """``kernel`` or ``userspace`` for ``--mesh-mode``; ``unavailable``: why nft fails."""
    if mode == "userspace":
        return "userspace"
    if unavailable is None:
        return "kernel"
    if mode == "kernel":
        raise KernelPathUnavailable(f"--mesh-mode kernel: nftables does not work here: "
                                    f"{unavailable}")
    return "userspace"


def _labels(rule: EndpointRule) -> tuple[str, ...]:
    return (str(rule.port), rule.protocol, rule.owner, rule.service, rule.endpoint)


def remove_table(host: NftHost, node_id: str) -> None:
    """Delete the node's table and its DOCKER-USER rule (blocking; NftError)."""
    host.apply(delete_batch(node_id))
    host.remove_forward_rule(node_id)


class KernelMesh:
    """Forwards every published port of the cluster with one nftables table."""

    def __init__(self, node_id: str, addresses: Sequence[str], *,
                 host: NftHost | None = None, synced: asyncio.Event | None = None,
                 retry_interval: float = 5.0, coalesce: float = 0.05,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.node_id = node_id
        self.addresses = tuple(addresses)
        self.host = host or NftHost()
        self.synced = synced
        self.retry_interval = retry_interval
        self.coalesce = coalesce
        self.clock = clock
        self.table = table_name(node_id)
        self.docs: dict[str, Any] = {}
        self.wanted: dict[tuple[int, str], Published] = {}
        self.conflicts: list[Published] = []
        self.applied: Ruleset | None = None
        self.error: str | None = None  # the last apply's failure, None once one succeeds
        self.settled = asyncio.Event()  # the wanted table was tried (tests wait on it)
        self._changed = asyncio.Event()
        self._lock = threading.Lock()  # one host change at a time (threads outlive a cancel)
        self._removed = False
        self._prepared = False  # route_localnet set
        self._forward_rule = False  # in DOCKER-USER
        self._warned_forwarding = False
        self._carried: dict[tuple[str, ...], int] = {}  # counts of replaced tables
        self._collector = kernel_metrics.ENDPOINT_CONNECTIONS.add(self.connections)

    # -- the informer side (synchronous) --------------------------------------------

    def on_endpoints(self, key: str, old: Any, new: Any) -> None:
        """Informer handler: a document changed; the loop applies the new table."""
        if new is None:
            self.docs.pop(key, None)
        else:
            self.docs[key] = new
        self.wanted, conflicts = wanted_published(self.docs.values())
        for pub in conflicts:
            if pub not in self.conflicts:
                log.warning("%s: published port %d/%s is also %s's; not forwarded",
                            pub.owner, pub.port, pub.protocol, self.wanted[pub.key].owner)
        self.conflicts = conflicts
        self.settled.clear()
        self._changed.set()

    # -- the table (asyncio, host calls in threads) ------------------------------------

    async def run(self) -> None:
        """Apply the table as it changes; returns only when cancelled."""
        try:
            if self.synced is not None:
                await self.synced.wait()
            while True:
                self._changed.clear()
                await asyncio.sleep(self.coalesce)  # a burst of events: one apply
                done = await self.sync()
                if not self._changed.is_set():
                    self.settled.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(None if done else self.retry_interval):
                        await self._changed.wait()
        finally:
            await asyncio.shield(self.close())

    async def sync(self) -> bool:
        """Apply the wanted table unless it is in place; False when it failed."""
        started = self.clock()
        try:
            await asyncio.to_thread(self._sync, self.wanted)
        except NftError as err:
            kernel_metrics.RULE_SYNC_FAILURES.inc()
            if str(err) != self.error:
                log.warning("mesh: cannot apply table %s %s: %s; retrying every %.0fs",
                            FAMILY, self.table, err, self.retry_interval)
            self.error = str(err)
            return False
        if self.error is not None:
            log.info("mesh: table %s %s applied", FAMILY, self.table)
        self.error = None
        kernel_metrics.RULE_SYNC_SECONDS.observe(self.clock() - started)
        return True

    def _sync(self, wanted: dict[tuple[int, str], Published]) -> None:
        with self._lock:
            if self._removed:
                return
            if not self._prepared:
                self.host.allow_localnet()
                self._prepared = True
            targets = docker_targets(self.host.docker_rules())
            ruleset = build_table(self.node_id, wanted, self.addresses, local_targets=targets)
            if ruleset != self.applied:
                before = self._counts() if self.applied is not None else {}
                self.host.apply(ruleset.batch())
                self._carry(before, ruleset)
                self._report(ruleset)
                self.applied = ruleset
            if not self._forward_rule:
                self._forward_rule = self.host.ensure_forward_rule(self.node_id)
            self._check_forwarding(ruleset)

    def _report(self, ruleset: Ruleset) -> None:
        old = self.applied.endpoints if self.applied is not None else ()
        if {_labels(r) for r in old} != {_labels(r) for r in ruleset.endpoints}:
            ports = {(r.port, r.protocol) for r in ruleset.endpoints}
            log.info("mesh: table %s %s: %d published port(s), %d endpoint(s), %d refused",
                     FAMILY, self.table, len(ports), len(ruleset.endpoints),
                     len(ruleset.refused))

    def _check_forwarding(self, ruleset: Ruleset) -> None:
        if self._warned_forwarding or not any(r.masquerade for r in ruleset.endpoints):
            return
        if not self.host.forwarding():
            log.warning("mesh: net.ipv4.ip_forward is off: connections to endpoints on other "
                        "nodes cannot be forwarded (Docker turns it on; so does "
                        "`sysctl -w net.ipv4.ip_forward=1`)")
        self._warned_forwarding = True

    # -- connections per endpoint (metrics, read at scrape time) ----------------------

    def _counts(self) -> dict[tuple[str, ...], int]:
        applied = self.applied
        if applied is None:
            return {}
        listing = self.host.listing(FAMILY, self.table)
        chains = endpoint_counts(listing, self.table) if listing is not None else {}
        return {_labels(r): chains.get(r.chain, 0) for r in applied.endpoints}

    def _carry(self, before: dict[tuple[str, ...], int], ruleset: Ruleset) -> None:
        keep = {_labels(r) for r in ruleset.endpoints}
        carried = {k: self._carried.get(k, 0) + before.get(k, 0) for k in keep}
        self._carried = {k: v for k, v in carried.items() if v}

    def _totals(self) -> dict[tuple[str, ...], int]:
        """Connections per endpoint's labels, replaced tables included (holding the lock)."""
        try:
            counts = self._counts()
        except NftError:
            counts = {}
        return {k: counts.get(k, 0) + self._carried.get(k, 0)
                for k in set(counts) | set(self._carried)}

    def connections(self) -> Iterable[kernel_metrics.Sample]:
        """Connections per endpoint of the table in place, replaced tables included."""
        with self._lock:
            totals = self._totals()
        return [(k, float(v)) for k, v in sorted(totals.items())]

    async def connections_by_task(self) -> dict[str, float]:
        """Connections sent to each endpoint task since the agent started (its endpoint
        chains' counters, summed over its ports), for the load reports; read off the loop."""
        def count() -> dict[str, float]:
            with self._lock:
                totals = self._totals()
                owners = {_labels(r): r.task for r in self.applied.endpoints} \
                    if self.applied is not None else {}
            found: dict[str, float] = {}
            for labels, value in totals.items():
                task = owners.get(labels)
                if task:
                    found[task] = found.get(task, 0.0) + value
            return found

        return await asyncio.to_thread(count)

    # -- stopping ------------------------------------------------------------------------

    async def close(self) -> None:
        """A graceful stop: the table and the forward rule stay, for the next agent."""
        kernel_metrics.ENDPOINT_CONNECTIONS.discard(self._collector)

    async def remove(self) -> None:
        """The node leaves: delete its table and its DOCKER-USER rule (logged on failure)."""
        await self.close()

        def removing() -> None:
            with self._lock:
                self._removed = True
                remove_table(self.host, self.node_id)
                self.applied = None

        try:
            await asyncio.to_thread(removing)
        except NftError as err:
            log.warning("mesh: could not remove table %s %s: %s", FAMILY, self.table, err)
            return
        log.info("mesh: removed table %s %s", FAMILY, self.table)
