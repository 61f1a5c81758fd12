"""An agent stays inside what a node's etcd role allows (issue 15's target).

A node's credentials may read and write ``agents/<its id>/`` and the single key
``heartbeats/<its id>``, read every heartbeat (``heartbeats/``), ``endpoints/`` and
the single key ``cluster``; nothing else (never ``spec/``, ``tasks/``, another
node's ``agents/``). The agent here runs against the real etcd through our own
client class, wrapped: every key range it reads, watches or writes is recorded and
checked against that table, and anything outside it is refused with ``Forbidden``
as etcd's auth refuses it (the calls that pass go to etcd unchanged). It
registers (its Node, made beforehand as the join endpoint would, is refused to it
and it goes on), runs a task, serves DNS for a service (the ready nodes from the
heartbeats) and the mesh's ingress port, finds a manager's join endpoint, puts
back its heartbeat when someone deletes it, and leaves.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from dnslib import QTYPE, DNSRecord

from kubeless import store
from kubeless.cluster.renewal import find_join_endpoints
from kubeless.store import Compare, Delete, Forbidden, Keyspace, Put
from kubeless.store.codec import encode_json
from kubeless.store.etcd import Etcd, TxnResult, WatchBatch, prefix_end
from kubeless_agent import running_agent
from kubeless_agent.leave import request_leave
from lab.waiting import until
from tests.support.agents import agent_on
from tests.support.dns_upstream import free_udp_tcp_port
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration

ADDRESS = "127.0.0.2"
NODE = "kr-1"


@dataclass(frozen=True)
class Grant:
    """One permission of a node's role: a key, or every key under a prefix."""

    key: str
    write: bool
    prefix: bool

    def covers(self, start: str, end: bytes | None, write: bool) -> bool:
        if write and not self.write:
            return False
        if not self.prefix:
            return end is None and start == self.key
        inside = start.startswith(self.key)
        return inside and (end is None or end <= prefix_end(self.key))


def node_grants(keys: Keyspace, node_id: str) -> list[Grant]:
    """What node ``node_id``'s etcd role allows (the table agreed with etcd-auth)."""
    return [Grant(keys.agent(node_id), True, True),
            Grant(keys.heartbeat(node_id), True, False),
            Grant(keys.heartbeats_prefix(), False, True),
            Grant(keys.endpoints_prefix(), False, True),
            Grant(keys.cluster(), False, False)]


GRANT_CASES: dict[str, tuple[str, bytes | None, bool, bool]] = {
    # name: (start, end, write) -> allowed
    "its own assignment, read": ("/p/v1/agents/n1/assignments/t", None, False, True),
    "its own report, written": ("/p/v1/agents/n1/tasks/t", None, True, True),
    "its own agents/ prefix, watched": ("/p/v1/agents/n1/", prefix_end("/p/v1/agents/n1/"),
                                        False, True),
    "its heartbeat, written": ("/p/v1/heartbeats/n1", None, True, True),
    "every heartbeat, read": ("/p/v1/heartbeats/", prefix_end("/p/v1/heartbeats/"), False,
                              True),
    "its heartbeat's prefix, watched": ("/p/v1/heartbeats/n1", prefix_end("/p/v1/heartbeats/n1"),
                                        False, True),
    "another's heartbeat, written": ("/p/v1/heartbeats/n2", None, True, False),
    "another node's assignments": ("/p/v1/agents/n2/assignments/t", None, False, False),
    "a node sharing its name's start": ("/p/v1/agents/n10/leave", None, False, False),
    "every agent": ("/p/v1/agents/", prefix_end("/p/v1/agents/"), False, False),
    "its own Node": ("/p/v1/spec/nodes/n1", None, False, False),
    "the cluster record, read": ("/p/v1/cluster", None, False, True),
    "the cluster record, written": ("/p/v1/cluster", None, True, False),
    "the join tokens": ("/p/v1/secrets/join-tokens", None, False, False),
    "an endpoint, written": ("/p/v1/endpoints/default/web", None, True, False),
}


@pytest.mark.parametrize("case", list(GRANT_CASES))
def test_the_table_the_wrapper_enforces(case: str) -> None:
    start, end, write, allowed = GRANT_CASES[case]
    grants = node_grants(Keyspace("/p"), "n1")
    assert any(g.covers(start, end, write) for g in grants) == allowed


@dataclass(frozen=True)
class Access:
    start: str
    end: bytes | None
    write: bool
    allowed: bool


class ConfinedEtcd(Etcd):
    """Our etcd client, checking each key range against a node's grants first (as etcd's
    auth does: a refusal is ``Forbidden``) and recording it."""

    grants: list[Grant] = []
    log: list[Access] = []

    def _check(self, start: str, end: bytes | None, write: bool) -> None:
        allowed = any(g.covers(start, end, write) for g in self.grants)
        self.log.append(Access(start, end, write, allowed))
        if not allowed:
            raise Forbidden(f"etcd refused the request: permission denied ({start})")

    async def range(self, key: str, end: bytes | None = None, **kw: Any
                    ) -> tuple[list[store.KeyValue], bool, int, int]:
        self._check(key, end or None, False)
        return await super().range(key, end, **kw)

    async def get_many(self, keys: Sequence[str]) -> tuple[dict[str, store.KeyValue], int]:
        for key in keys:
            self._check(key, None, False)
        return await super().get_many(keys)

    async def txn(self, compares: Sequence[Compare], success: Sequence[Put | Delete],
                  failure: Sequence[Put | Delete] = ()) -> TxnResult:
        for c in compares:
            self._check(c.key, prefix_end(c.key) if c.prefix else None, False)
        for op in (*success, *failure):
            prefix = isinstance(op, Delete) and op.prefix
            self._check(op.key, prefix_end(op.key) if prefix else None, True)
        return await super().txn(compares, success, failure)

    async def watch(self, prefix: str, start_revision: int, **kw: Any
                    ) -> AsyncIterator[WatchBatch]:
        self._check(prefix, prefix_end(prefix), False)
        async for batch in super().watch(prefix, start_revision, **kw):
            yield batch


@pytest.fixture
def confined(monkeypatch: pytest.MonkeyPatch, prefix: str) -> type[ConfinedEtcd]:
    """The agent's etcd client class, confined to node NODE's grants."""
    class Confined(ConfinedEtcd):
        grants = node_grants(Keyspace(prefix), NODE)
        log: list[Access] = []

    monkeypatch.setattr(sys.modules["kubeless_agent.main"], "Etcd", Confined)
    return Confined


def ingress_doc(published: int) -> dict[str, Any]:
    return {"namespace": "default", "service": "web", "serviceUid": "u",
            "ports": [{"name": "http", "target": 80, "published": published,
                       "protocol": "tcp", "mode": "ingress"}],
            "endpoints": [{"task": "t" * 25, "slot": 1, "node": NODE, "address": ADDRESS,
                           "ports": [{"target": 80, "published": 32999, "protocol": "tcp"}]}]}


def task(tid: str) -> dict[str, Any]:
    return {"apiVersion": "kubeless.io/v1", "kind": "Task",
            "metadata": {"name": tid, "namespace": "default"},
            "spec": {"serviceName": "web", "slot": 1, "nodeName": NODE, "desiredState": "running",
                     "template": {"image": "web:1", "env": {}, "stopGracePeriod": "1s"}},
            "status": {"state": "assigned"}}


async def test_an_agent_reads_and_writes_only_what_its_node_may(
        etcd_cluster: EtcdCluster, prefix: str, rstore: store.ResourceStore,
        confined: type[ConfinedEtcd], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kubeless_agent.registration")
    keys = rstore.keys
    # What a manager does before the node's agent starts: its Node (the join endpoint),
    # the cluster record, an endpoints document, and a manager's heartbeat with a joinPort.
    await rstore.create({"apiVersion": "kubeless.io/v1", "kind": "Node",
                         "metadata": {"name": NODE},
                         "spec": {"role": "worker", "availability": "active"},
                         "status": {"address": ADDRESS}})
    dns_port, ingress = free_udp_tcp_port(ADDRESS), free_udp_tcp_port(ADDRESS)
    await rstore.etcd.txn([], [
        Put(keys.cluster(), b"{}"),
        Put(keys.endpoints("default", "web"), encode_json(ingress_doc(ingress))),
        Put(keys.heartbeat("kr-m1"), encode_json({"address": "127.0.0.9", "joinPort": 2377}))])
    cfg = agent_on(etcd_cluster, prefix, NODE, advertise_addr=ADDRESS, heartbeat_ttl=2,
                   dns_addrs=(f"{ADDRESS}:{dns_port}",), logs_port=0)
    async with running_agent(cfg) as agent:
        assert agent.etcd is not None
        await rstore.etcd.txn([], [Put(keys.assignment(NODE, "t1"), encode_json(task("t1")))])
        await until(lambda: _reported(rstore, "t1", "running"), 15, "the task running")
        await until(lambda: _dns_answers(dns_port, [ADDRESS, "127.0.0.9"]), 15,
                    "DNS answering with every ready node (from the heartbeats alone)")
        await until(lambda: _listens(ingress), 15, "the mesh listening on the ingress port")
        found = await find_join_endpoints(store.ResourceStore(agent.etcd, keys))
        assert found == [("127.0.0.9", 2377)]
        await rstore.etcd.txn([], [Delete(keys.heartbeat(NODE))])
        await until(lambda: _exists(rstore, keys.heartbeat(NODE)), 10, "its heartbeat put back")
        await request_leave(rstore.etcd, keys, NODE)
        await until(lambda: agent.leaving, 10, "the agent leaving")
    refused = [a for a in confined.log if not a.allowed]
    assert {a.start for a in refused} == {keys.spec("Node", NODE)}, refused
    assert [r.getMessage() for r in caplog.records
            if "not registering" in r.getMessage()] != [], "one line says why"
    touched = {a.start for a in confined.log if a.allowed}
    assert {keys.heartbeat(NODE), keys.heartbeats_prefix(), keys.endpoints_prefix(),
            keys.agent(NODE), keys.observed(NODE, "t1"), keys.leave(NODE)} <= touched


async def _reported(rs: store.ResourceStore, tid: str, state: str) -> bool:
    import json

    kv, _ = await rs.etcd.get(rs.keys.observed(NODE, tid))
    return kv is not None and json.loads(kv.value).get("state") == state


async def _exists(rs: store.ResourceStore, key: str) -> bool:
    return (await rs.etcd.get(key))[0] is not None


async def _dns_answers(port: int, want: list[str]) -> bool:
    try:
        raw = await asyncio.to_thread(DNSRecord.question("web.default.kubeless").send,
                                      ADDRESS, port, timeout=2)
    except OSError:
        return False
    reply = DNSRecord.parse(raw)
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A) == want


def _listens(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((ADDRESS, port)) == 0
