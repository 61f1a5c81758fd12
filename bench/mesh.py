"""The routing mesh against a container's own host port (issue 6), side by side.

Setup: one etcd member, the controllers and two agents with the docker
runtime as subprocesses, on 127.0.0.2 (node a) and 127.0.0.3 (node b);
one service with one replica of the demo image (busybox httpd) pinned to
node a, its ingress port numbered by ``kubeless apply``.

Load: ``wrk`` (Debian's package), 2 threads, 8 connections (busybox
httpd listens with a backlog of 9: more and SYNs are dropped, a 1 s
retransmit in the p99 of both paths), 4 s per run, three rounds of
direct then mesh, medians printed (the machine is shared: single runs
vary). busybox httpd closes each connection, so every request is a new
TCP connection: the mesh's worst case.
- direct: straight to the container's host port on 127.0.0.2;
- mesh: the published port on 127.0.0.3, node b's mesh, which forwards
  to node a's host port.
Prints requests/s and p99 latency of each, the ratio, and the CPU the
mesh's agent process spent per forwarded connection (from /proc), split
into user (Python: the relay's callbacks, the event loop) and system (the
kernel's TCP work for accept, connect, two sends, shutdown and two
closes on loopback). Target: the mesh keeps at least half the direct rate.

Where the time goes (2 shared cores, one TCP connection per request): the
mesh's agent spends 300-400 us of CPU per forwarded connection, about half
Python and half kernel. A profile of the relay shows the kernel part is
the loopback TCP work done inside the mesh's own syscalls (connect ~85 us,
each of the two sends ~70 us: the receiver's side of loopback runs in the
sender's call, then two closes and a shutdown); the Python part is the
event loop's bookkeeping (six reader/writer (un)registrations, a connect
timer, the relay and its two halves, the metrics). The direct path already
crosses docker-proxy (Docker's userland proxy: the host port is on a
loopback address), so the mesh adds a second userspace hop, two more
handshakes and two more process wake-ups per request; with few
connections in flight the rate is bound by those wake-ups on a busy
machine, which is why single runs vary so much. A kernel path (IPVS, or
nftables DNAT to the endpoints' host ports) would remove the hop, its
copies and its wake-ups; a single Python mesh tops out near 2,000-3,000 new
connections per second per core.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import yaml

from bench.harness import with_etcd
from kubeless import store

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "kubeless-demo:latest"
A, B = "127.0.0.2", "127.0.0.3"
RUN = f"bench-mesh-{os.getpid()}"
NODES = (f"{RUN}-a", f"{RUN}-b")
PREFIX = f"/{RUN}"
WRK = ["-t2", "-c8", "-d4s", "--latency"]  # 8: below busybox httpd's listen backlog (9)
ROUNDS = 3


def spawn(logdir: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    out = open(logdir / f"{name}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def wrk(url: str) -> dict[str, float]:
    out = subprocess.run(["wrk", *WRK, url], capture_output=True, text=True, timeout=60).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not (rate and p99 and total):
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {"rate": float(rate.group(1)), "p99_ms": float(p99.group(1)) * scale,
            "requests": float(total.group(1)),
            "errors": float(sum(int(n) for n in re.findall(r"\d+", errors.group(1)))
                            if errors else 0) + float(non2xx.group(1) if non2xx else 0)}


def apply(endpoints: str) -> None:
    svc = {"apiVersion": "kubeless.io/v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"replicas": 1, "template": {"image": IMAGE},
                    "placement": {"constraints": [f"node.id=={NODES[0]}"]},
                    "ports": [{"name": "http", "target": 80, "mode": "ingress"}]}}
    env = {**os.environ, "KUBELESS_ENDPOINTS": endpoints, "KUBELESS_PREFIX": PREFIX,
           "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "kubeless_cli.main", "apply", "-f", "-"],
                         input=yaml.safe_dump(svc), capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"kubeless apply: {res.stderr}")


async def endpoint(endpoints: str, procs: list[subprocess.Popen[bytes]]) -> tuple[int, int]:
    """(published port, the task's host port) once the service has its endpoint."""
    rs = store.connect(endpoints, PREFIX)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a process exited")
            kv, _ = await rs.etcd.get(rs.keys.endpoints("default", "web"))
            doc: dict[str, Any] = json.loads(kv.value) if kv is not None else {}
            if doc.get("endpoints"):
                return (int(doc["ports"][0]["published"]),
                        int(doc["endpoints"][0]["ports"][0]["published"]))
            await asyncio.sleep(0.2)
    finally:
        await rs.etcd.close()
    raise RuntimeError("no endpoint within 90 s")


def measure(endpoints: str, logdir: Path) -> None:
    common = ["--endpoints", endpoints, "--prefix", PREFIX, "--log-level", "WARNING"]
    procs = [spawn(logdir, "controllers", "controllers", *common, "--lease-ttl", "2")]
    for node, addr in zip(NODES, (A, B)):
        procs.append(spawn(logdir, node, "kubeless_agent", *common, "--runtime", "docker",
                           "--node-name", node, "--advertise-addr", addr, "--dns-addr", "none"))
    try:
        time.sleep(1.0)
        apply(endpoints)
        published, host_port = asyncio.run(endpoint(endpoints, procs))
        direct, mesh = f"http://{A}:{host_port}/", f"http://{B}:{published}/"
        subprocess.run(["wrk", "-t1", "-c4", "-d1s", mesh], capture_output=True, timeout=30)
        directs, meshes, user, system = [], [], 0.0, 0.0
        for _ in range(ROUNDS):
            directs.append(wrk(direct))
            before = cpu_seconds(procs[2].pid)
            meshes.append(wrk(mesh))
            after = cpu_seconds(procs[2].pid)
            user, system = user + after[0] - before[0], system + after[1] - before[1]
        report(directs, meshes, user, system)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        client = docker.from_env()
        for node in NODES:
            for c in client.containers.list(all=True, filters={"label": f"kubeless.node.id={node}"}):
                c.remove(force=True)


def median(runs: list[dict[str, float]], key: str) -> float:
    return sorted(r[key] for r in runs)[len(runs) // 2]


def report(directs: list[dict[str, float]], meshes: list[dict[str, float]],
           user: float, system: float) -> None:
    d_rate, m_rate = median(directs, "rate"), median(meshes, "rate")
    ratio = m_rate / d_rate if d_rate else 0.0
    requests = sum(r["requests"] for r in meshes)
    print(f"wrk {' '.join(WRK)}, {ROUNDS} rounds, medians; one TCP connection per request",
          flush=True)
    for name, runs in (("direct to the host port  ", directs), ("through the mesh (node b)", meshes)):
        print(f"  {name} {median(runs, 'rate'):7.0f} req/s  p99 {median(runs, 'p99_ms'):7.2f} ms"
              f"  errors {sum(r['errors'] for r in runs):.0f}"
              f"  (runs: {', '.join(str(round(r['rate'])) for r in runs)})")
    print(f"  ratio mesh/direct          {ratio:7.2f}  (target >= 0.50: "
          f"{'met' if ratio >= 0.5 else 'NOT met'})")
    if requests:
        print(f"  mesh agent CPU             {1e6 * (user + system) / requests:7.0f} us per "
              f"forwarded connection: {1e6 * user / requests:.0f} us Python (user), "
              f"{1e6 * system / requests:.0f} us kernel TCP on loopback (system)")
    print(flush=True)


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench mesh needs wrk (Debian's package; `make deps` installs it)")
    with_etcd("mesh", measure)


if __name__ == "__main__":
    main()
