"""Real workloads on Docker (issue 4): apply to answering, and the agent's memory.

Setup: one etcd member, the controllers and one agent with the docker
runtime, as subprocesses (``python -m controllers``, ``python -m
kubeless_agent --runtime docker``), the demo image already present.

Figures:
- the time from starting ``kubeless apply -f`` of a 10-replica service
  (the whole CLI process included) until all 10 containers are reported
  running and each answers HTTP on its host port;
- the agent's resident memory (VmRSS, and its peak VmHWM) with 10 running
  tasks, then after ``kubeless service scale web=50`` with 50.

Targets: under 5 s for 10 replicas; the agent under 80 MB.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import docker

from bench.control_plane import Proc, _end, _spawn, vm_hwm_mb
from bench.harness import with_etcd
from kubeless import store
from kubeless_agent.runtime.docker_spec import LABEL_NODE

PREFIX = "/bench-workloads"
IMAGE = "kubeless-demo:latest"
NODE = f"bench-dk-{os.getpid()}"
TIMEOUT = 120.0

MANIFEST = f"""\
apiVersion: kubeless.io/v1
kind: Service
metadata: {{name: web}}
spec:
  replicas: 10
  template:
    image: {IMAGE}
    stopGracePeriod: 1s
  ports:
    - {{name: http, target: 80, mode: ingress}}
"""


def vm_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


async def _running_ports(rstore: store.ResourceStore) -> list[int]:
    """Host ports of the tasks this node reports running."""
    kvs, _ = await rstore.etcd.list_prefix(rstore.keys.agent(NODE) + "tasks/")
    ports: list[int] = []
    for kv in kvs:
        report: dict[str, Any] = json.loads(kv.value)
        if report.get("state") == "running":
            ports.extend(p["published"] for p in report.get("ports") or [] if p.get("published"))
    return ports


async def _until_answering(rstore: store.ResourceStore, n: int, procs: list[Proc]) -> None:
    answered: set[int] = set()
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
        ports = await _running_ports(rstore)
        fresh = [p for p in ports if p not in answered]
        ok = await asyncio.gather(*(asyncio.to_thread(_answers, p) for p in fresh))
        answered.update(p for p, good in zip(fresh, ok) if good)
        if len(answered.intersection(ports)) >= n:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{n} containers not answering within {TIMEOUT:.0f} s")


def _cli(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "kubeless"), *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def _remove_containers() -> None:
    client = docker.from_env()
    for c in client.containers.list(all=True, filters={"label": f"{LABEL_NODE}={NODE}"}):
        c.remove(force=True)


async def _run(endpoints: str, logdir: Path) -> None:
    rstore = store.connect(endpoints, PREFIX)
    env = {**os.environ, "KUBELESS_ENDPOINTS": endpoints, "KUBELESS_PREFIX": PREFIX,
           "PYTHONUNBUFFERED": "1"}
    manifest = logdir / "web.yaml"
    manifest.write_text(MANIFEST)
    procs: list[Proc] = []
    try:
        procs.append(_spawn("controllers", [
            sys.executable, "-m", "controllers", "--endpoints", endpoints, "--prefix", PREFIX,
            "--identity", NODE, "--log-level", "WARNING"], logdir, env))
        agent = _spawn("agent", [
            sys.executable, "-m", "kubeless_agent", "--endpoints", endpoints, "--prefix", PREFIX,
            "--runtime", "docker", "--node-name", NODE, "--log-level", "WARNING",
            "--mesh-mode", "userspace"], logdir, env)  # a kernel table would outlive the bench
        procs.append(agent)
        deadline = time.monotonic() + TIMEOUT
        while (await rstore.etcd.get(rstore.keys.heartbeat(NODE)))[0] is None:
            if time.monotonic() > deadline or not agent.alive():
                raise RuntimeError(f"the agent did not register:\n{agent.tail()}")
            await asyncio.sleep(0.05)
        idle = vm_rss_mb(agent.pid)

        started = time.perf_counter()
        await asyncio.to_thread(_cli, env, "apply", "-f", str(manifest))
        await _until_answering(rstore, 10, procs)
        ten = time.perf_counter() - started
        await asyncio.sleep(2)  # let the agent settle before reading its memory
        rss10, hwm10 = vm_rss_mb(agent.pid), vm_hwm_mb(agent.pid)
        print(f"apply of a 10-replica service until all 10 answer HTTP: {ten:.2f} s "
              f"(target < 5 s)", flush=True)

        started = time.perf_counter()
        await asyncio.to_thread(_cli, env, "service", "scale", "-d", "web=50")
        await _until_answering(rstore, 50, procs)
        fifty = time.perf_counter() - started
        await asyncio.sleep(2)
        rss50, hwm50 = vm_rss_mb(agent.pid), vm_hwm_mb(agent.pid)
        print(f"scale 10 -> 50 until all 50 answer: {fifty:.2f} s", flush=True)
        print(f"agent memory: idle {idle:.0f} MB; 10 tasks RSS {rss10:.0f} MB "
              f"(peak {hwm10:.0f}); 50 tasks RSS {rss50:.0f} MB (peak {hwm50:.0f}) "
              f"(target < 80 MB)", flush=True)
    finally:
        for p in reversed(procs):
            _end(p)
        await asyncio.to_thread(_remove_containers)
        await rstore.etcd.close()


def main() -> None:
    with_etcd("workloads", lambda endpoints, logdir: asyncio.run(_run(endpoints, logdir)))


if __name__ == "__main__":
    main()
