"""Routes and the kernel path, end to end: the 5-host cluster (each agent with
``--mesh-mode kernel``: an nftables table in its host's namespace), real Docker, the CLI.

Two services answer with who they are and the address they were reached from (busybox
httpd's CGI ``REMOTE_ADDR``); neither declares a port: the Route exposes it on their
tasks. Clients run in another host's network namespace and connect to a node's
address, as a client outside the cluster would.

What is checked: 2,000 connections split 90/10 within 3 points; a weight change under
a steady stream of requests fails none and moves the stream; a start-first rolling
update of a published service (healthcheck, drain) under a steady stream fails none; a Route with
``externalTrafficPolicy: Local`` shows the backend the client's own address; the node's
table stays in place while its agent is stopped and after it comes back, serving
throughout; ``get routes`` shows the live split.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from kubeless import store
from lab.cluster import waits
from lab.cluster.harness import Cluster
from tests.e2e.clients import kubeless

# Answers "<service> <REMOTE_ADDR>" on /cgi-bin/who; no port declared.
WHO = ["sh", "-c", "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain"
                   "\\necho\\necho \"$SERVICE $REMOTE_ADDR\"\\n' > /www/cgi-bin/who && "
                   "chmod +x /www/cgi-bin/who && exec httpd -f -p 80 -h /www"]
PORT = 8480

# Run in a host's namespace: N GETs of URL, each on a new connection, THREADS at a time;
# prints {"answers": {body: count}, "failed": n, "last": {first word: when last answered}}.
# With STOP_FILE: until that file exists.
CLIENT = r"""
import json, os, sys, threading, time, urllib.request
url, n, threads, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
answers, failed, last, lock = {}, [0], {}, threading.Lock()
def one():
    try:
        body = urllib.request.urlopen(url, timeout=5).read().decode().strip()
    except Exception:
        with lock: failed[0] += 1
        return
    with lock:
        answers[body] = answers.get(body, 0) + 1
        last[body.split()[0]] = time.time()
        if stop != "-" and sum(answers.values()) == 20:  # the stream flows: say so
            open(stop + ".flowing", "w").close()
def worker(k):
    i = 0
    while (stop != "-" and not os.path.exists(stop)) or (stop == "-" and i < k):
        one(); i += 1
share = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
ts = [threading.Thread(target=worker, args=(share[i],)) for i in range(threads)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps({"answers": answers, "failed": failed[0], "last": last}))
"""


def who_service(name: str, replicas: int, constraints: list[str] | None = None
                ) -> dict[str, Any]:
    svc = waits.service(name, replicas, env={"SERVICE": name}, constraints=constraints)
    svc["spec"]["template"]["command"] = WHO
    return svc


def route(name: str, backends: dict[str, int], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kubeless.io/v1", "kind": "Route",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"port": PORT, "backends": [{"service": s, "port": 80, "weight": w}
                                                for s, w in backends.items()], **spec}}


def cli(cluster: Cluster, *args: str) -> str:
    assert cluster.tls is not None
    res = kubeless(cluster, None, *args, cert_path=cluster.tls.admin)
    assert res.returncode == 0, f"kubeless {' '.join(args)}: {res.stderr}"
    return res.stdout


def apply(cluster: Cluster, *docs: dict[str, Any]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(docs, f)
    try:
        cli(cluster, "apply", "-f", f.name)
    finally:
        Path(f.name).unlink()


def clients(cluster: Cluster, host: str, url: str, n: int, threads: int,
            stop: str = "-") -> subprocess.Popen[str]:
    """The client script in ``host``'s network namespace (started, not awaited)."""
    netns = cluster.hosts[host].netns
    return subprocess.Popen(["nsenter", f"--net=/var/run/netns/{netns}", sys.executable, "-c",
                             CLIENT, url, str(n), str(threads), stop],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def finished(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    """What the clients saw; an IPv4 peer busybox httpd writes as ``[::ffff:A.B.C.D]``
    (it listens on a dual-stack socket) is written ``A.B.C.D``."""
    out, err = await asyncio.to_thread(proc.communicate, timeout=timeout)
    assert proc.returncode == 0, err
    result = dict(json.loads(out))
    result["answers"] = {body.replace("[::ffff:", "").replace("]", ""): n
                         for body, n in result["answers"].items()}
    return result


def seen(result: dict[str, Any]) -> dict[str, Any]:
    """What the clients were answered, and how many failed."""
    return {"answers": result["answers"], "failed": result["failed"]}


async def route_endpoints(rs: store.ResourceStore, name: str, want: dict[str, int]) -> bool:
    """Whether the Route's document lists ``want`` endpoints per backend service."""
    kv, _ = await rs.etcd.get(rs.keys.route_endpoints("default", name))
    if kv is None:
        return False
    doc = json.loads(kv.value)
    have = {b["service"]: len(b["endpoints"]) for b in doc["backends"]}
    return have == want


def table_exists(cluster: Cluster, host: str) -> bool:
    table = "kubeless_" + host.replace("-", "_")
    return cluster.run(host, "nft", "list", "table", "inet", table).returncode == 0


async def test_a_route_splits_90_10_and_shifts_with_no_failed_request(
        cluster: Cluster, rs: store.ResourceStore) -> None:
    apply(cluster, who_service("shop-a", 2), who_service("shop-b", 1),
          route("shop", {"shop-a": 90, "shop-b": 10}))
    await waits.until(lambda: route_endpoints(rs, "shop", {"shop-a": 2, "shop-b": 1}), 90,
                      "the route's endpoints: 2 of shop-a, 1 of shop-b")
    listed = cli(cluster, "get", "routes")
    assert "shop-a 90% (2 up)" in listed and "shop-b 10% (1 up)" in listed, listed

    url = f"http://{cluster.hosts['w1'].address}:{PORT}/cgi-bin/who"
    await waits.until(lambda: _all_answer(cluster, url, "shop-a", "shop-b"), 60,
                      "w1 serves the route")
    result = await finished(clients(cluster, "w2", url, 2000, 8))
    by_service = {"shop-a": 0, "shop-b": 0}
    for body, count in result["answers"].items():
        by_service[body.split()[0]] += count
    share_a = by_service["shop-a"] / 2000
    print(f"\n  2,000 connections through w1's kernel path: {by_service}, "
          f"{result['failed']} failed")
    assert result["failed"] == 0
    assert abs(share_a - 0.90) <= 0.03, by_service

    # a weight change under a steady stream: nothing fails, the stream moves to shop-b
    stop = Path(tempfile.mkdtemp()) / "stop"
    flowing = Path(f"{stop}.flowing")
    stream = clients(cluster, "w2", url, 0, 4, str(stop))
    try:
        await waits.until(flowing.exists, 30, "the stream flows")
        cli(cluster, "route", "weight", "shop", "shop-a=0", "shop-b=100")
        written = time.time()  # the CLI returned: the new weights are in etcd
        await waits.until(lambda: _all_answer(cluster, url, "shop-b"), 30,
                          "only shop-b answers")
    finally:
        stop.touch()
    streamed = await finished(stream)
    print(f"  weight change under load: {sum(streamed['answers'].values())} requests, "
          f"{streamed['failed']} failed; the last shop-a answer "
          f"{streamed['last']['shop-a'] - written:+.2f}s from the new weights' write")
    assert streamed["failed"] == 0
    assert {b.split()[0] for b in streamed["answers"]} == {"shop-a", "shop-b"}
    cli(cluster, "delete", "route", "shop")


async def test_a_local_route_shows_the_backend_the_clients_address_across_a_restart(
        cluster: Cluster, rs: store.ResourceStore) -> None:
    apply(cluster, who_service("local", 1, ["node.id==w1"]),
          route("here", {"local": 1}, externalTrafficPolicy="Local"))
    await waits.until(lambda: route_endpoints(rs, "here", {"local": 1}), 90,
                      "the route's endpoint on w1")
    url = f"http://{cluster.hosts['w1'].address}:{PORT}/cgi-bin/who"
    await waits.until(lambda: _all_answer(cluster, url, "local"), 60, "w1 serves the route")
    client_address = cluster.hosts["w2"].address
    result = seen(await finished(clients(cluster, "w2", url, 20, 2)))
    assert result == {"answers": {f"local {client_address}": 20}, "failed": 0}

    # the table stays while w1's agent is stopped (a graceful stop touches nothing) ...
    assert table_exists(cluster, "w1")
    cluster.terminate("w1", "agent")
    assert table_exists(cluster, "w1")
    result = seen(await finished(clients(cluster, "w2", url, 20, 2)))
    assert result == {"answers": {f"local {client_address}": 20}, "failed": 0}
    # ... and after it comes back (replaced, not removed)
    cluster.start_part("w1", "agent")
    await waits.until(lambda: _ready(rs, "w1"), 30, "w1 ready again")
    assert table_exists(cluster, "w1")
    result = seen(await finished(clients(cluster, "w2", url, 20, 2)))
    assert result == {"answers": {f"local {client_address}": 20}, "failed": 0}
    cli(cluster, "delete", "route", "here")


async def _ready(rs: store.ResourceStore, node: str) -> bool:
    return node in await waits.ready_nodes(rs)


HEALTHCHECK = {"test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/cgi-bin/who"],
               "interval": "500ms", "timeout": "2s", "retries": 3, "startPeriod": "0s"}


async def test_a_start_first_update_through_the_kernel_path_fails_no_request(
        cluster: Cluster, rs: store.ResourceStore) -> None:
    svc = who_service("roll", 4)
    svc["spec"]["template"]["healthcheck"] = HEALTHCHECK
    svc["spec"]["ports"] = [{"name": "http", "target": 80, "published": PORT + 1,
                             "mode": "ingress"}]
    svc["spec"]["update"] = {"parallelism": 1, "delay": "0s", "order": "start-first",
                             "monitor": "1s", "failureAction": "pause"}
    apply(cluster, svc)
    await waits.wait_converged(rs, "roll", 4)
    url = f"http://{cluster.hosts['w1'].address}:{PORT + 1}/cgi-bin/who"
    await waits.until(lambda: _all_answer(cluster, url, "roll"), 60, "w1 serves roll")

    stop = Path(tempfile.mkdtemp()) / "stop"
    flowing = Path(f"{stop}.flowing")
    stream = clients(cluster, "w2", url, 0, 4, str(stop))
    try:
        await waits.until(flowing.exists, 30, "the stream flows")
        await waits.change(rs, "roll", lambda s: s["spec"]["template"]["env"]
                           .update(VERSION="2"))
        await waits.until(lambda: _update_completed(rs, "roll"), 120, "the update completed")
    finally:
        stop.touch()
    streamed = await finished(stream)
    print(f"\n  start-first update through the kernel path: "
          f"{sum(streamed['answers'].values())} requests, {streamed['failed']} failed")
    assert streamed["failed"] == 0


async def _all_answer(cluster: Cluster, url: str, *services: str) -> bool:
    """Whether 20 requests from w2 all succeed, answered by exactly ``services`` (the node's
    table is in place: etcd holding the endpoints comes a moment before)."""
    result = await finished(clients(cluster, "w2", url, 20, 2))
    return result["failed"] == 0 and {b.split()[0] for b in result["answers"]} == set(services)


async def _update_completed(rs: store.ResourceStore, name: str) -> bool:
    svc = await rs.get("Service", name, "default")
    state = (((svc or {}).get("status") or {}).get("updateStatus") or {}).get("state")
    if state == "paused":
        raise AssertionError(f"the update paused: {svc['status']['updateStatus']}")
    return state == "completed" and await waits.converged(rs, name, 4) is not None
