"""Autoscaling on Docker: seconds from load to the new replicas answering (issue 18).

Setup (as ``bench.workloads``): one etcd member, the controllers and one agent with
the docker runtime as subprocesses, the demo image present. A service of one task
serves HTTP (busybox httpd on port 80, an ingress port: each task publishes a host
port) and busy-loops once a file appears in a folder bound into its tasks; it
reserves 0.2 CPU and targets 50% of it, autoscaling between 1 and 4 (down after 5 s,
so a start-up burst is over before the load starts: the bench waits for an idle
decision at 1 replica).

The figure: from the moment the bench creates the file (the load starts) until the
3 new tasks report running and each answers HTTP on its host port. Two settings:
the defaults a user gets (load reports every 10 s, the autoscaler every 15 s, on
top of each report) and a fast one (1 s, 1 s); each the median of ``RUNS``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.control_plane import Proc, _end, _spawn
from bench.harness import with_etcd
from bench.workloads import IMAGE, _answers, _cli, _remove_containers, _running_ports
from bench.workloads import NODE as WORKLOADS_NODE
from kubeless import store
from kubeless.store import Put

PREFIX = "/bench-autoscale"
NODE = WORKLOADS_NODE  # bench.workloads' helpers read this node's reports
RUNS = 2
TIMEOUT = 180.0
# httpd in the background, then idle until /ctl/go exists, then busy for good.
COMMAND = ("httpd -p 80 -h /www; trap 'exit 0' TERM; while [ ! -e /ctl/go ]; do sleep 0.2; done; "
           "while :; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; done")


def manifest(control: Path) -> str:
    return f"""\
apiVersion: kubeless.io/v1
kind: Service
metadata: {{name: hot}}
spec:
  replicas: 1
  template:
    image: {IMAGE}
    command: ["sh", "-c", "{COMMAND}"]
    stopGracePeriod: 1s
    resources: {{reservations: {{cpus: 0.2}}}}
    mounts: [{{type: bind, source: "{control}", target: /ctl, readOnly: true}}]
  ports:
    - {{name: http, target: 80, mode: ingress}}
  autoscale: {{min: 1, max: 4, targetCPU: 50, scaleDownDelay: 5s}}
"""


async def one_run(endpoints: str, logdir: Path, load_period: str, autoscale_period: str,
                  run: int) -> float:
    rstore = store.connect(endpoints, PREFIX + str(run))
    env = {**os.environ, "KUBELESS_ENDPOINTS": endpoints, "KUBELESS_PREFIX": PREFIX + str(run),
           "PYTHONUNBUFFERED": "1", "KUBELESS_DASHBOARD_PORT": "0"}
    control = Path(tempfile.mkdtemp(prefix="kubeless-bench-ctl-"))
    (logdir / "hot.yaml").write_text(manifest(control))
    procs: list[Proc] = []
    await rstore.etcd.txn([], [Put(rstore.keys.cluster(), b"{}")])  # a cluster is here
    try:
        procs.append(_spawn(f"controllers-{run}", [
            sys.executable, "-m", "controllers", "--endpoints", endpoints, "--prefix",
            PREFIX + str(run), "--identity", NODE, "--log-level", "WARNING",
            "--autoscale-period", autoscale_period], logdir, env))
        agent = _spawn(f"agent-{run}", [
            sys.executable, "-m", "kubeless_agent", "--endpoints", endpoints, "--prefix",
            PREFIX + str(run), "--runtime", "docker", "--node-name", NODE, "--log-level",
            "WARNING", "--load-period", load_period, "--dns-addr", "none", "--no-mesh"],
            logdir, env)
        procs.append(agent)
        await asyncio.to_thread(_cli, env, "apply", "-f", str(logdir / "hot.yaml"))
        await _until(lambda: _answering(rstore, 1, procs), "the first task answering")
        await _until(lambda: _idle_counted(rstore), "a decision on an idle task's report")
        go = time.perf_counter()
        (control / "go").touch()
        await _until(lambda: _answering(rstore, 4, procs), "4 tasks answering")
        return time.perf_counter() - go
    finally:
        for p in reversed(procs):
            _end(p)
        await asyncio.to_thread(_remove_containers)
        await rstore.etcd.close()
        (control / "go").unlink(missing_ok=True)
        control.rmdir()


async def _idle_counted(rstore: store.ResourceStore) -> bool:
    """The autoscaler counted the idle task's report and holds 1 replica, and one task
    runs: the start-up's own CPU (which a short load period can catch, scaling up for a
    moment) is behind us."""
    service = await rstore.get("Service", "hot", "default")
    scale = ((service or {}).get("status") or {}).get("autoscale") or {}
    settled = bool(service) and service["spec"]["replicas"] == 1 and \
        int(scale.get("counted") or 0) >= 1 and scale.get("desired") == 1  # type: ignore[index]
    return settled and len(await _running_ports(rstore)) == 1  # a burst's extra tasks gone


async def _answering(rstore: store.ResourceStore, n: int, procs: list[Proc]) -> bool:
    for p in procs:
        if not p.alive():
            raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
    ports = await _running_ports(rstore)
    if len(ports) < n:
        return False
    answers = await asyncio.gather(*(asyncio.to_thread(_answers, p) for p in ports))
    return sum(answers) >= n


async def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {TIMEOUT:.0f} s")
        await asyncio.sleep(0.05)


def measure(endpoints: str, logdir: Path) -> None:
    for label, load, period in (("defaults: load reports 10s, autoscaler 15s", "10s", "15"),
                                ("fast: load reports 1s, autoscaler 1s", "1s", "1")):
        seconds = [asyncio.run(one_run(endpoints, logdir, load, period, run))
                   for run in range(RUNS)]
        print(f"autoscale on docker, {label}: load to 3 new replicas answering "
              f"{statistics.median(seconds):.1f} s (median of {RUNS}: "
              f"{', '.join(f'{s:.1f}' for s in seconds)})", flush=True)


def main() -> None:
    with_etcd("autoscale-docker", measure)


if __name__ == "__main__":
    main()
