"""Prometheus metrics of the controllers and of an agent, scraped as Prometheus would.

Starts ``python -m controllers`` and ``python -m kubeless_agent`` (hollow
nodes) with ``--metrics-port`` on free ports, runs a service to completion,
scrapes /metrics over loopback and checks both outputs with
``promtool check metrics`` (Debian's prometheus package), then that the
expected metric families are there. Then a real Prometheus (Debian's), on
loopback with a temporary data dir, runs manifests/prometheus/prometheus.yml
and its rules on the targets ``kubeless prometheus targets`` writes, and
answers queries about both processes. The test drives them through a hollow
cluster's store (lab.hollow) on the session's TLS etcd; the processes present
``manager:`` and ``node:`` identities. Under CI=true a missing promtool or
prometheus fails, never skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lab.hollow import ROOT, HollowCluster, service
from tests.support.agents import agent_flags
from lab.waiting import until
from tests.support.cli import Run
from tests.support.etcd_server import EtcdCluster, free_port

pytestmark = pytest.mark.integration

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
MANIFESTS = ROOT / "manifests" / "prometheus"


def needs(path: str) -> Any:
    """Skip without ``path`` (Debian's prometheus package), but never under CI=true."""
    return pytest.mark.skipif(not os.path.exists(path) and os.environ.get("CI") != "true",
                              reason=f"{path} not installed (make deps installs Debian's "
                              "prometheus; under CI=true this fails)")


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


def start_both(etcd_cluster: EtcdCluster, prefix: str,
               procs: list[subprocess.Popen[bytes]]) -> tuple[int, int]:
    """A controllers process (m1) and an agent of 3 hollow nodes (h-0..h-2), each serving
    /metrics on a free loopback port: (controllers' port, agent's port)."""
    cport, aport = free_port(), free_port()
    procs.append(spawn("controllers", *etcd_cluster.client_flags("manager:m1"), "--prefix", prefix,
                       "--identity", "m1", "--lease-ttl", "2", "--metrics-port", str(cport),
                       "--log-level", "WARNING"))
    procs.append(spawn("kubeless_agent", *agent_flags(etcd_cluster, prefix, "h", hollow_nodes=3), "--prefix",
                       prefix, "--runtime", "fake", "--node-name", "h", "--hollow-nodes", "3",
                       "--heartbeat-ttl", "2", "--metrics-port", str(aport),
                       "--log-level", "WARNING"))
    return cport, aport


@needs(PROMTOOL)
async def test_metrics_pass_promtool(etcd_cluster: EtcdCluster, prefix: str,
                                     procs: list[subprocess.Popen[bytes]]) -> None:
    cport, aport = start_both(etcd_cluster, prefix, procs)
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
    services = {s[0]["service"]: s[1] for s in samples(ctl, "kubeless_service_desired_tasks")}
    running = {s[0]["service"]: s[1] for s in samples(ctl, "kubeless_service_running_tasks")}
    assert services == {"web": 4} and running == {"web": 4}


# -- a real Prometheus ------------------------------------------------------------------

def prometheus_dir(tmp: Path, targets: str) -> Path:
    """manifests/prometheus/ in ``tmp``, scraping and evaluating every second, with
    the targets file ``kubeless prometheus targets`` wrote."""
    tmp.mkdir()
    config = yaml.safe_load((MANIFESTS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(MANIFESTS / "rules.yml", tmp / "rules.yml")
    (tmp / "targets").mkdir()
    (tmp / "targets" / "kubeless.json").write_text(targets)
    return tmp / "prometheus.yml"


def query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            answer = json.load(r)
    except OSError:
        return []  # not listening yet
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


@needs(PROMETHEUS)
@needs(PROMTOOL)
async def test_prometheus_scrapes_controllers_and_agent(
        etcd_cluster: EtcdCluster, prefix: str, procs: list[subprocess.Popen[bytes]],
        kubeless: Run, tmp_path: Path) -> None:
    cport, aport = start_both(etcd_cluster, prefix, procs)

    def listed() -> dict[str, list[str]] | None:
        res = kubeless("prometheus", "targets")
        assert res.returncode == 0, res.stderr
        jobs = {g["labels"]["job"]: g["targets"] for g in json.loads(res.stdout)}
        return jobs if len(jobs) == 2 else None
    jobs = await until(lambda: asyncio.to_thread(listed), 30, "both processes advertised")
    assert jobs == {"kubeless-agent": [f"127.0.0.1:{aport}"],
                    "kubeless-controllers": [f"127.0.0.1:{cport}"]}
    written = tmp_path / "kubeless.json"
    res = await asyncio.to_thread(kubeless, "prometheus", "targets", "-o", str(written))
    assert res.returncode == 0 and res.stdout == "", res.stderr

    config = prometheus_dir(tmp_path / "prom", written.read_text())
    check = await asyncio.to_thread(subprocess.run, [PROMTOOL, "check", "config", str(config)],
                                    capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    procs.append(subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdin=subprocess.DEVNULL, start_new_session=True))

    def up_by_job() -> dict[str, str] | None:
        found = {r["metric"]["job"]: r["value"][1] for r in query(port, "up")}
        return found if found == {"kubeless-agent": "1", "kubeless-controllers": "1"} else None
    await until(lambda: asyncio.to_thread(up_by_job), 60, "Prometheus scrapes both jobs")

    def recorded() -> list[dict[str, Any]]:  # rules.yml loaded and evaluated
        return query(port, 'kubeless:nodes:max{state="ready",availability="active"} == 3')
    await until(lambda: asyncio.to_thread(recorded), 60, "the recording rule kubeless:nodes:max")
    agent = await asyncio.to_thread(query, port, "kubeless_agent_nodes")
    assert [(r["metric"]["node"], r["value"][1]) for r in agent] == [("h-0", "3")]
