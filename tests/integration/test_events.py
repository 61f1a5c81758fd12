"""Events on a real etcd (TLS and auth on): repeats aggregate in one key, under a lease
for their time to live; a failing fence or a node's role keeps a write out; the CLI
lists, narrows, watches them, and ``describe`` ends with them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from kubeless import store
from kubeless.store import Compare, Keyspace
from kubeless.store.events import EventRecorder
from tests.support.cli import Run, svc
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration


@pytest.fixture
async def recorder(rstore: store.ResourceStore) -> AsyncIterator[EventRecorder]:
    rec = EventRecorder(rstore.etcd, rstore.keys.events_prefix(), component="scheduler",
                        host="manager-1", ttl=60)
    task = asyncio.create_task(rec.run())
    yield rec
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def stored(rstore: store.ResourceStore, prefix: str) -> list[store.KeyValue]:
    return (await rstore.etcd.list_prefix(prefix))[0]


async def test_repeats_aggregate_in_one_key_under_a_lease(
        rstore: store.ResourceStore, recorder: EventRecorder) -> None:
    for _ in range(3):
        recorder.warning(kind="Service", name="web", namespace="default",
                         reason="FailedScheduling", message="no node has 4 CPUs free")
        await recorder.flush()
    recorder.record(kind="Service", name="web", namespace="default", reason="Scheduled",
                    message="web.1 on node-1")
    await recorder.flush()
    kvs = await stored(rstore, rstore.keys.events_prefix() + "default/")
    by_reason = {json.loads(kv.value)["reason"]: (kv, json.loads(kv.value)) for kv in kvs}
    assert set(by_reason) == {"FailedScheduling", "Scheduled"}
    kv, event = by_reason["FailedScheduling"]
    assert event["count"] == 3 and event["type"] == "Warning"
    assert event["firstTimestamp"] <= event["lastTimestamp"]
    assert kv.lease != 0
    ttl, granted = await rstore.etcd.lease_ttls(kv.lease)
    assert granted == 60 and 0 < ttl <= 60
    assert recorder.dropped == 0


async def test_a_burst_is_merged_before_it_is_written(
        rstore: store.ResourceStore, recorder: EventRecorder) -> None:
    for _ in range(50):
        recorder.record(kind="Node", name="node-2", reason="NodeDown", message="no heartbeat")
    await recorder.flush()
    kvs = await stored(rstore, rstore.keys.events_prefix() + "_cluster/")
    assert [json.loads(kv.value)["count"] for kv in kvs] == [50]
    assert recorder.written <= 2  # one transaction for the burst (two if it raced the first)


async def test_a_fence_that_does_not_hold_writes_nothing(rstore: store.ResourceStore) -> None:
    fence = Compare(rstore.keys.leader("scheduler"), "create", "==", 12345)
    rec = EventRecorder(rstore.etcd, rstore.keys.events_prefix(), component="scheduler",
                        fence=lambda: fence)
    task = asyncio.create_task(rec.run())
    try:
        rec.record(kind="Service", name="web", namespace="default", reason="Scheduled",
                   message="web.1 on node-1")
        await rec.flush()
    finally:
        task.cancel()
    assert await stored(rstore, rstore.keys.events_prefix()) == []
    assert rec.dropped == 1


async def test_a_node_writes_under_its_own_prefix_only(etcd_cluster: EtcdCluster,
                                                       prefix: str) -> None:
    node = etcd_cluster.connect(prefix, "node:ev-1")
    keys = Keyspace(prefix)
    try:
        own = EventRecorder(node.etcd, keys.agent_events_prefix("ev-1"), component="agent",
                            host="ev-1")
        foreign = EventRecorder(node.etcd, keys.events_prefix(), component="agent", host="ev-1")
        tasks = [asyncio.create_task(r.run()) for r in (own, foreign)]
        for rec in (own, foreign):
            rec.warning(kind="Task", name="t1", namespace="default", service="web",
                        reason="Failed", message="exit code 1")
            await rec.flush()
        for t in tasks:
            t.cancel()
        assert (own.written, own.dropped) == (1, 0)
        assert (foreign.written, foreign.dropped) == (0, 1)  # etcd refused: dropped, not raised
    finally:
        await node.etcd.close()


async def test_cli_lists_narrows_describes_and_watches(
        rstore: store.ResourceStore, recorder: EventRecorder, kubeless: Run,
        etcd_cluster: EtcdCluster, prefix: str) -> None:
    assert kubeless("apply", "-f", "-", stdin=svc("web")).returncode == 0
    agent = EventRecorder(rstore.etcd, rstore.keys.agent_events_prefix("node-1"),
                          component="agent", host="node-1")
    agent_task = asyncio.create_task(agent.run())
    try:
        assert kubeless("node", "ls").returncode == 0
        recorder.record(kind="Service", name="web", namespace="default", reason="Scheduled",
                        message="web.1 on node-1")
        recorder.record(kind="Service", name="api", namespace="default", reason="Scheduled",
                        message="api.1 on node-1")
        for _ in range(2):
            agent.warning(kind="Task", name="k3v9", namespace="default", service="web",
                          reason="Failed", message="exit code 1")
            await agent.flush()
        await recorder.flush()
        # The agent's node must be known for its events to be read: register it as init would.
        await rstore.create({"apiVersion": "kubeless.io/v1", "kind": "Node",
                             "metadata": {"name": "node-1"}, "spec": {}})

        listed = await asyncio.to_thread(kubeless, "events")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
        assert len(lines) == 4
        assert any("Failed" in l and "task/k3v9" in l and "(x2 over" in l for l in lines)

        only_web = (await asyncio.to_thread(kubeless, "events", "--for", "service/web")).stdout
        assert "service/web" in only_web and "task/k3v9" in only_web and "api" not in only_web
        warnings = (await asyncio.to_thread(kubeless, "events", "--types", "Warning")).stdout
        assert len(warnings.splitlines()) == 2 and "Scheduled" not in warnings

        described = (await asyncio.to_thread(kubeless, "describe", "service", "web")).stdout
        section = described[described.index("Events:"):]
        assert "Scheduled" in section and "Failed" in section and "agent/node-1" in section
        assert "(x2 over" in section and "api.1" not in section

        bad = await asyncio.to_thread(kubeless, "events", "--for", "route/shop")
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
        assert "Traceback" not in bad.stderr

        env = {**os.environ, **etcd_cluster.client_env(), "KUBELESS_PREFIX": prefix}
        watcher = subprocess.Popen([sys.executable, "-m", "kubeless_cli.main", "events",
                                    "--watch", "--for", "service/web"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=env)
        try:
            assert watcher.stdout is not None
            header = await asyncio.wait_for(asyncio.to_thread(watcher.stdout.readline), 30)
            assert "TYPE" in header
            for _ in range(2):  # the listing's rows
                await asyncio.wait_for(asyncio.to_thread(watcher.stdout.readline), 30)

            async def new_line() -> str:
                agent.warning(kind="Task", name="k3v9", namespace="default", service="web",
                              reason="Unhealthy", message="healthcheck failed 3 times")
                return await asyncio.to_thread(watcher.stdout.readline)  # type: ignore[union-attr]

            line = await asyncio.wait_for(new_line(), 30)
            assert "Unhealthy" in line and "task/k3v9" in line
        finally:
            watcher.kill()
            watcher.wait()
    finally:
        agent_task.cancel()
        await asyncio.gather(agent_task, return_exceptions=True)
