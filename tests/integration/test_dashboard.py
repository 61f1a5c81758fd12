"""The controllers' web dashboard (controllers.dashboard), served by a real
``python -m controllers`` on the session's TLS etcd, read as a browser reads it.

One test speaks HTTP and server-sent events itself: the page and its files, what is
refused (any method but GET, a Host that is not loopback's, an unknown path), and
the stream's snapshots following a service that a hollow agent runs and Events
written under both prefixes (docs/MODEL.md "Events"). The other loads the page in
headless Chromium (Debian's ``chromium``; under CI=true a missing one fails),
creates a service while the page is open, waits for it to appear without a reload,
then inspects a screenshot (it decodes, has the window's size, is not blank) and
the DOM.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from kubeless.store import Put, ResourceStore
from lab.hollow import ROOT, HollowCluster, service
from lab.waiting import hold, until
from tests.support import png
from tests.support.agents import agent_flags
from tests.support.chromium import BINARY as CHROMIUM
from tests.support.etcd_server import EtcdCluster, free_port

pytestmark = pytest.mark.integration


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            start_new_session=True)


def controllers(etcd_cluster: EtcdCluster, prefix: str, port: int) -> subprocess.Popen[bytes]:
    return spawn("controllers", *etcd_cluster.client_flags("manager:m1"), "--prefix", prefix,
                 "--identity", "m1", "--lease-ttl", "2", "--dashboard-port", str(port),
                 "--log-level", "WARNING")


async def request(port: int, head: str) -> tuple[int, str]:
    """One raw HTTP exchange on loopback: (status code, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status, _, body = raw.partition(b"\r\n\r\n")
    return int(status.split(b" ")[1]), body.decode()


async def get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str]:
    return await request(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")


async def serving(port: int) -> bool:
    try:
        return (await get(port, "/api/snapshot"))[0] == 200
    except OSError:
        return False


async def snapshots(port: int) -> AsyncIterator[dict[str, Any]]:
    """The ``/events`` stream's snapshots, as a browser's EventSource receives them."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b" 200 " in head and b"text/event-stream" in head, head
        while True:
            line = await reader.readline()
            assert line, "the stream ended"
            if line.startswith(b"data: "):
                yield json.loads(line[6:])
    finally:
        writer.close()


async def first(stream: AsyncIterator[dict[str, Any]], cond: Any, timeout: float,
                what: str) -> dict[str, Any]:
    """The first snapshot of ``stream`` for which ``cond`` holds, within ``timeout``."""
    seen: list[dict[str, Any]] = []

    async def scan() -> dict[str, Any]:
        async for snap in stream:
            if cond(snap):
                return snap
            seen[:] = [snap]
        raise AssertionError("the stream ended")
    try:
        return await asyncio.wait_for(scan(), timeout)
    except TimeoutError:
        raise AssertionError(f"{what}: not seen within {timeout}s; the last snapshot: "
                             f"{json.dumps(seen[-1] if seen else None)[:3000]}") from None


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(name: str, reason: str, kind: str, obj: str, message: str) -> dict[str, Any]:
    now = time.time()
    return {"apiVersion": "kubeless.io/v1", "kind": "Event",
            "metadata": {"name": name, "namespace": "default"},
            "involvedObject": {"kind": kind, "namespace": "default", "name": obj},
            "service": "dash-web", "type": "Warning" if reason == "Failed" else "Normal",
            "reason": reason, "message": message,
            "source": {"component": "agent" if kind == "Task" else "scheduler", "host": "m1"},
            "count": 3, "firstTimestamp": rfc3339(now - 600), "lastTimestamp": rfc3339(now)}


async def test_the_dashboard_follows_the_cluster_over_server_sent_events(
        etcd_cluster: EtcdCluster, prefix: str, procs: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    procs.append(controllers(etcd_cluster, prefix, port))
    procs.append(spawn("kubeless_agent", *agent_flags(etcd_cluster, prefix, "h", hollow_nodes=2),
                       "--prefix", prefix, "--runtime", "fake", "--node-name", "h",
                       "--hollow-nodes", "2", "--heartbeat-ttl", "2", "--log-level", "WARNING"))
    async with HollowCluster(etcd_cluster.endpoints, prefix, controllers=False,
                             tls=etcd_cluster.client_tls) as c:
        await c.wait_nodes_ready(["h-0", "h-1"], timeout=30)
        await until(lambda: serving(port), 30, "the dashboard answers")

        code, page = await get(port, "/")
        assert code == 200 and '<table id="services">' in page and "/app.js" in page
        assert (await get(port, "/app.js"))[0] == 200
        assert (await get(port, "/style.css", host="localhost:1"))[0] == 200
        assert (await request(port, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                    "Content-Length: 0\r\n\r\n"))[0] == 405
        assert (await get(port, "/", host="rebound.example:80"))[0] == 403
        assert (await get(port, "/../etc/passwd"))[0] == 404

        stream = snapshots(port)
        try:
            await c.apply(service("dash-web", 2))

            def web_running(snap: dict[str, Any]) -> bool:
                rows = [s for s in snap["services"] if s["name"] == "dash-web"]
                running = [t for t in snap["tasks"]
                           if t["service"] == "dash-web" and t["state"] == "running"]
                return bool(rows) and rows[0]["replicas"] == "2/2" and len(running) == 2

            snap = await first(stream, web_running, 30, "dash-web 2/2 on the stream")
            assert {(n["name"], n["state"]) for n in snap["nodes"]} == {("h-0", "ready"),
                                                                       ("h-1", "ready")}
            assert sorted(t["name"] for t in snap["tasks"]) == ["dash-web.1", "dash-web.2"]
            assert sum(n["tasks"] for n in snap["nodes"]) == 2

            keys = c.store.keys
            await c.store.etcd.txn([], [
                Put(f"{keys.events_prefix()}default/{'a' * 20}", json.dumps(event(
                    "a" * 20, "Scheduled", "Service", "dash-web", "2 tasks placed")).encode()),
                Put(f"{keys.agent_events_prefix('h-0')}default/{'b' * 20}", json.dumps(event(
                    "b" * 20, "Failed", "Task", "t1", "exited with code 2")).encode())])
            ours = {("Normal", "Scheduled", "service/dash-web", "2 tasks placed", "x3 over 10m"),
                    ("Warning", "Failed", "task/t1", "exited with code 2", "x3 over 10m")}

            def shown(snap: dict[str, Any]) -> set[tuple[str, ...]]:
                return {(e["type"], e["reason"], e["object"], e["message"], e["repeat"])
                        for e in snap["events"]}

            # (beside those the controllers record themselves)
            await first(stream, lambda s: ours <= shown(s), 30, "both Events on the stream")
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

        code, body = await get(port, "/api/snapshot")
        assert code == 200 and ours <= shown(json.loads(body))


@pytest.mark.skipif(not os.path.exists(CHROMIUM) and os.environ.get("CI") != "true",
                    reason="chromium not installed (make deps installs it; under CI=true "
                           "this fails)")
async def test_the_dashboard_in_headless_chromium(
        etcd_cluster: EtcdCluster, prefix: str, rstore: ResourceStore,
        procs: list[subprocess.Popen[bytes]]) -> None:
    from tests.support.chromium import Browser

    port = free_port()
    procs.append(controllers(etcd_cluster, prefix, port))
    await until(lambda: serving(port), 30, "the dashboard answers")
    browser = await asyncio.to_thread(Browser, 1280, 900)
    try:
        def js(expression: str) -> Any:
            return asyncio.to_thread(browser.evaluate, expression)

        await asyncio.to_thread(browser.navigate, f"http://127.0.0.1:{port}/")
        await until(lambda: js("document.getElementById('live')?.textContent === 'live' && "
                               "document.querySelector('#services tbody tr') !== null"),
                    30, "the page is live")
        await js("window.loadedOnce = true")  # gone if the page reloaded
        from kubeless.api import validate

        await rstore.create(validate(service("shot-web", 2)))
        await until(lambda: js("document.querySelector('#services tbody').textContent"
                               ".includes('shot-web')"), 30, "shot-web on the page")
        assert await js("window.loadedOnce") is True, "the page reloaded"

        shot = await asyncio.to_thread(browser.screenshot)
        dom = await asyncio.to_thread(browser.dom)
    finally:
        await asyncio.to_thread(browser.close)

    if os.environ.get("KUBELESS_TEST_SCREENSHOT"):  # a path: keep the screenshot to look at
        Path(os.environ["KUBELESS_TEST_SCREENSHOT"]).write_bytes(shot)
    image = await asyncio.to_thread(png.decode, shot)
    assert (image.width, image.height) == (1280, 900)
    colours = image.colours(step=3)
    assert len(colours) >= 8, f"a blank page? {len(colours)} colours"
    assert "shot-web" in dom and "0/2" in dom


async def test_no_snapshot_is_drawn_while_nobody_watches(rstore: ResourceStore) -> None:
    """Changes while no stream subscribes build nothing; the first subscriber gets a
    fresh snapshot, and /api/snapshot's ``fresh`` builds one on demand."""
    from controllers.dashboard.feed import DashboardFeed
    from controllers.view import ClusterView
    from kubeless.store import Informer

    view = ClusterView(rstore)
    informers = {s.prefix: Informer(rstore.etcd, s.prefix, s.decode)
                 for s in view.informer_specs()}
    view.attach(informers)
    feed = DashboardFeed(view, min_interval=0.05)
    tasks = [asyncio.create_task(i.run()) for i in informers.values()]
    tasks.append(asyncio.create_task(feed.run()))
    try:
        await until(lambda: feed.synced, 20, "the feed's caches synced")
        await rstore.create({"apiVersion": "kubeless.io/v1", "kind": "Service",
                             "metadata": {"name": "quiet", "namespace": "default"},
                             "spec": {"template": {"image": "web:1"}}})
        await until(lambda: any(s["metadata"]["name"] == "quiet" for s in view.services()),
                    20, "the view saw the service")
        # nobody watches: nothing is drawn (before, a snapshot came within 0.05 s)
        await hold(0.5, lambda: feed.latest is None, "no snapshot while nobody watches")
        with feed.subscription() as snapshots:
            first = json.loads(await asyncio.wait_for(snapshots.get(), 20))
        assert [s["name"] for s in first["services"]] == ["quiet"]
        on_demand = json.loads(await feed.fresh())
        assert [s["name"] for s in on_demand["services"]] == ["quiet"]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
