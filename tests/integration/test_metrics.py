"""Prometheus metrics of the controllers and of an agent, scraped as Prometheus would.

Starts ``python -m controllers`` and ``python -m kubeless_agent`` (hollow
nodes) with ``--metrics-port`` on free ports, runs a service to completion,
scrapes /metrics over loopback and checks both outputs with
``promtool check metrics`` (Debian's prometheus package), then that the
expected metric families are there. The test drives them through a hollow
cluster's store (lab.hollow) on the session's TLS etcd; the processes present
``manager:`` and ``node:`` identities.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lab.hollow import ROOT, HollowCluster, service
from tests.support.agents import agent_flags
from lab.waiting import until
from tests.support.etcd_server import EtcdCluster, free_port

pytestmark = pytest.mark.integration

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            start_new_session=True)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def promtool(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name]


@pytest.mark.skipif(not os.path.exists(PROMTOOL) and os.environ.get("CI") != "true",
                    reason="promtool not installed (make deps installs it; under CI=true this fails)")
async def test_metrics_pass_promtool(etcd_cluster: EtcdCluster, prefix: str,
                                     procs: list[subprocess.Popen[bytes]]) -> None:
    cport, aport = free_port(), free_port()
    procs.append(spawn("controllers", *etcd_cluster.client_flags("manager:m1"), "--prefix", prefix,
                       "--identity", "m1", "--lease-ttl", "2", "--metrics-port", str(cport),
                       "--log-level", "WARNING"))
    procs.append(spawn("kubeless_agent", *agent_flags(etcd_cluster, prefix, "h", hollow_nodes=3), "--prefix",
                       prefix, "--runtime", "fake", "--node-name", "h", "--hollow-nodes", "3",
                       "--heartbeat-ttl", "2", "--metrics-port", str(aport),
                       "--log-level", "WARNING"))
    async with HollowCluster(etcd_cluster.endpoints, prefix, controllers=False,
                             tls=etcd_cluster.client_tls) as c:
        await c.wait_nodes_ready(["h-0", "h-1", "h-2"], timeout=30)
        await c.apply(service("web", 4))
        await c.wait_running("web", 4, timeout=30)

        async def scraped_running() -> str | None:
            text = await asyncio.to_thread(scrape, cport)
            got = dict((s[0].get("state"), s[1]) for s in samples(text, "kubeless_tasks"))
            return text if got.get("running") == 4 else None
        ctl = await until(scraped_running, 15, "controllers report 4 running tasks")
        agent = await asyncio.to_thread(scrape, aport)

    for name, text in (("controllers", ctl), ("agent", agent)):
        res = await asyncio.to_thread(promtool, text)
        assert res.returncode == 0, f"promtool on the {name}' metrics:\n{res.stdout}{res.stderr}"

    fams = families(ctl)
    for want in ("kubeless_controller_reconcile", "kubeless_controller_workqueue_depth",
                 "kubeless_controller_is_leader", "kubeless_tasks", "kubeless_nodes",
                 "kubeless_task_creation_to_assignment_seconds",
                 "kubeless_task_creation_to_running_seconds"):
        assert want in fams, f"{want} missing; have {sorted(fams)}"
    reconciles = {s[0]["controller"]: s[1]
                  for s in samples(ctl, "kubeless_controller_reconcile_total")}
    assert set(reconciles) >= {"replication", "scheduler", "health"}
    assert all(v > 0 for v in reconciles.values()), reconciles
    leading = {s[0]["controller"]: s[1] for s in samples(ctl, "kubeless_controller_is_leader")}
    assert {k: leading.get(k) for k in ("replication", "scheduler", "health")} == \
        {"replication": 1, "scheduler": 1, "health": 1}
    nodes = {(s[0]["state"], s[0]["availability"]): s[1] for s in samples(ctl, "kubeless_nodes")}
    assert nodes == {("ready", "active"): 3}
    assigned = samples(ctl, "kubeless_task_creation_to_assignment_seconds_count")
    assert assigned and assigned[0][1] >= 4
    to_running = samples(ctl, "kubeless_task_creation_to_running_seconds_count")
    assert to_running and to_running[0][1] >= 4

    afams = families(agent)
    assert "kubeless_agent_tasks" in afams and "kubeless_agent_nodes" in afams
    running_here = {s[0]["state"]: s[1] for s in samples(agent, "kubeless_agent_tasks")}
    assert running_here.get("running") == 4
