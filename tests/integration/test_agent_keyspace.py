"""An agent stays inside what a node's etcd role allows, refused by etcd itself.

The agent runs as ``node:<id>`` on the session's etcd, whose auth is on: its user
holds the node's role from ``kubeless.cluster.permissions`` (read and write
``agents/<its id>/`` and the single key ``heartbeats/<its id>``; read every
heartbeat, ``endpoints/`` and the single key ``cluster``; never ``spec/``,
``tasks/``, another node's ``agents/``). Our etcd client class is wrapped only to
record each key range the agent reads, watches or writes and whether etcd allowed
it (a refusal is etcd's own ``Forbidden``; the calls go to etcd unchanged). The
agent registers (its Node, made beforehand as the join endpoint would, is refused
to it by etcd and it goes on), runs a task, serves DNS for a service (the ready
nodes from the heartbeats) and the mesh's ingress port, finds a manager's join
endpoint, puts back its heartbeat when someone deletes it, and leaves: the one
refusal is its Node, and it touched the keys a node needs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from dnslib import QTYPE, DNSRecord

from kubeless import store
from kubeless.cluster.renewal import find_join_endpoints
from kubeless.store import Compare, Delete, Forbidden, Put
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
T = TypeVar("T")
Range = tuple[str, bytes | None, bool]  # start, end (a prefix's), write


@dataclass(frozen=True)
class Access:
    start: str
    end: bytes | None
    write: bool
    allowed: bool


class RecordingEtcd(Etcd):
    """Our etcd client, recording each key range it asks etcd for and whether etcd's
    auth allowed it (``Forbidden``: refused)."""

    log: list[Access] = []

    async def _recorded(self, ranges: Sequence[Range], call: Awaitable[T]) -> T:
        try:
            result = await call
        except Forbidden:
            self.log.extend(Access(*r, allowed=False) for r in ranges)
            raise
        self.log.extend(Access(*r, allowed=True) for r in ranges)
        return result

    async def range(self, key: str, end: bytes | None = None, **kw: Any
                    ) -> tuple[list[store.KeyValue], bool, int, int]:
        return await self._recorded([(key, end or None, False)], super().range(key, end, **kw))

    async def get_many(self, keys: Sequence[str]) -> tuple[dict[str, store.KeyValue], int]:
        return await self._recorded([(k, None, False) for k in keys], super().get_many(keys))

    async def txn(self, compares: Sequence[Compare], success: Sequence[Put | Delete],
                  failure: Sequence[Put | Delete] = ()) -> TxnResult:
        ranges: list[Range] = [(c.key, prefix_end(c.key) if c.prefix else None, False)
                               for c in compares]
        for op in (*success, *failure):
            prefix = isinstance(op, Delete) and op.prefix
            ranges.append((op.key, prefix_end(op.key) if prefix else None, True))
        return await self._recorded(ranges, super().txn(compares, success, failure))

    async def watch(self, prefix: str, start_revision: int, **kw: Any
                    ) -> AsyncIterator[WatchBatch]:
        allowed = True
        try:
            async for batch in super().watch(prefix, start_revision, **kw):
                yield batch
        except Forbidden:
            allowed = False
            raise
        finally:
            self.log.append(Access(prefix, prefix_end(prefix), False, allowed))


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[RecordingEtcd]:
    """The agent's etcd client class, recording what it asks etcd for."""
    class Recording(RecordingEtcd):
        log: list[Access] = []

    monkeypatch.setattr(sys.modules["kubeless_agent.main"], "Etcd", Recording)
    return Recording


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
        recording: type[RecordingEtcd], caplog: pytest.LogCaptureFixture) -> None:
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
    refused = [a for a in recording.log if not a.allowed]
    assert {a.start for a in refused} == {keys.spec("Node", NODE)}, refused
    assert [r.getMessage() for r in caplog.records
            if "not registering" in r.getMessage()] != [], "one line says why"
    touched = {a.start for a in recording.log if a.allowed}
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
