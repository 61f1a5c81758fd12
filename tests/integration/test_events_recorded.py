"""What the control plane and an agent record, read back as a user does (``kubeless
events``): the scheduler's Scheduled and FailedScheduling, an agent's Started and
Failed (with the exit code), health's NodeDown and TasksOrphaned. The controllers and
a hollow group run in this process on the session's TLS etcd; one real (not hollow)
agent on the fake runtime records under its own prefix, as ``node:<id>``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from kubeless_agent import running_agent
from lab.hollow import ROOT, HollowCluster, service
from lab.waiting import until
from tests.support.agents import agent_on
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[HollowCluster]:
    async with HollowCluster(etcd_cluster.endpoints, prefix, tls=etcd_cluster.client_tls) as c:
        yield c


def events_json(c: HollowCluster, *args: str) -> list[dict[str, str]]:
    """``kubeless events`` rows as dicts (LAST SEEN, TYPE, REASON, OBJECT, MESSAGE)."""
    env = {**os.environ, "KUBELESS_ENDPOINTS": c.endpoints, "KUBELESS_PREFIX": c.prefix,
           "PYTHONPATH": str(ROOT)}
    env.pop("KUBELESS_NAMESPACE", None)
    done = subprocess.run([sys.executable, "-m", "kubeless_cli.main", *c.client_flags(),
                           "events", *args], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    rows = []
    for line in done.stdout.splitlines()[1:]:
        cells = [c for c in line.split("   ") if c.strip()]
        if len(cells) >= 5:
            rows.append({"type": cells[1].strip(), "reason": cells[2].strip(),
                         "object": cells[3].strip(), "message": "   ".join(cells[4:]).strip()})
    return rows


async def has(c: HollowCluster, reason: str, *args: str) -> list[dict[str, str]]:
    rows = await asyncio.to_thread(events_json, c, *args)
    return [r for r in rows if r["reason"] == reason]


async def test_what_was_done_and_why_is_recorded(cluster: HollowCluster,
                                                 etcd_cluster: EtcdCluster) -> None:
    await cluster.add_group("a", 2, labels={"zone": "hollow"})
    config = agent_on(etcd_cluster, cluster.prefix, "ev-1", labels=(("zone", "real"),),
                      heartbeat_ttl=2, mesh=False, dns_addrs=(), logs_port=None)
    async with running_agent(config):
        await cluster.wait_nodes_ready(["ev-1"])
        await cluster.apply(service("web", 2, placement={"constraints": ["node.labels.zone==hollow"]}))
        await cluster.apply(service("nowhere", 1,
                                    placement={"constraints": ["node.labels.zone==mars"]}))
        await cluster.apply(service("crash", 1, image="crash:fail", restart={"condition": "none"},
                                    placement={"constraints": ["node.labels.zone==real"]}))
        await cluster.apply(service("ok", 1, placement={"constraints": ["node.labels.zone==real"]}))

        scheduled = await until(lambda: has(cluster, "Scheduled", "--for", "service/web"), 30,
                                "Scheduled")
        assert all(r["object"] == "service/web" for r in scheduled)
        assert {r["message"].split(" (x")[0] for r in scheduled} <= {
            "task scheduled on a-0", "task scheduled on a-1"}

        failed_scheduling = await until(lambda: has(cluster, "FailedScheduling"), 30,
                                        "FailedScheduling")
        assert failed_scheduling[0]["type"] == "Warning"
        assert failed_scheduling[0]["object"] == "service/nowhere"
        assert "no suitable node" in failed_scheduling[0]["message"]

        failed = await until(lambda: has(cluster, "Failed", "--for", "service/crash"), 30,
                             "the agent's Failed")
        assert failed[0]["type"] == "Warning" and failed[0]["object"].startswith("task/")
        assert "crash.1 failed (exit code 1" in failed[0]["message"]
        started = await until(lambda: has(cluster, "Started", "--for", "service/ok"), 30,
                              "the agent's Started")
        assert started[0]["message"].startswith("ok.1 started")

        warnings = await asyncio.to_thread(events_json, cluster, "--types", "Warning")
        assert {r["reason"] for r in warnings} >= {"FailedScheduling", "Failed"}
        assert "Started" not in {r["reason"] for r in warnings}

    # The agent's events are under its own prefix only.
    kvs, _ = await cluster.store.etcd.list_prefix(cluster.store.keys.agent_events_prefix("ev-1"))
    assert {json.loads(kv.value)["source"]["host"] for kv in kvs} == {"ev-1"}

    await cluster.kill_group("a")
    async def both_down() -> list[dict[str, str]] | None:
        rows = await has(cluster, "NodeDown")
        return rows if {r["object"] for r in rows} >= {"node/a-0", "node/a-1"} else None

    down = await until(both_down, 30, "NodeDown for a-0 and a-1")
    assert all(r["type"] == "Warning" and "orphaned" in r["message"] for r in down)
    orphaned = await until(lambda: has(cluster, "TasksOrphaned", "--for", "service/web"), 30,
                           "TasksOrphaned")
    assert "orphaned" in orphaned[0]["message"]
