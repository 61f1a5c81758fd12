"""Helpers for tests that run real workloads: the Docker Engine, tasks, assignments, waits.

``docker_engine()`` returns a client of the real engine, or fails (under
``CI=true``) / skips (elsewhere) with the reason; it builds the
``kubeless-demo:latest`` test image when missing. ``remove_node_containers``
is what every fixture's finalizer calls, so a failing test leaves nothing.
Assignments are written straight into etcd, as the scheduler does.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from kubeless import store
from kubeless.api.tasks import new_task_id
from kubeless.store import Delete, Put
from kubeless.store.codec import encode_json
from lab.waiting import until

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "kubeless-demo:latest"
# busybox httpd on port 80 answering, checked every 500 ms (fast rollouts in tests)
FAST_HEALTHCHECK = {"test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"],
                    "interval": "500ms", "timeout": "2s", "retries": 3, "startPeriod": "0s"}


def docker_engine() -> Any:
    """A docker SDK client of the running engine (fail under CI, skip elsewhere, when none)."""
    import docker

    try:
        subprocess.run(["bash", str(ROOT / "scripts" / "ensure-dockerd.sh")], check=False,
                       capture_output=True, timeout=60)
        client = docker.from_env(version="auto", timeout=60)
        client.ping()
        subprocess.run(["bash", str(ROOT / "scripts" / "build-demo-image.sh")], check=True,
                       capture_output=True, timeout=120)
        client.images.get(IMAGE)
    except Exception as err:
        reason = f"no usable Docker Engine here: {err}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return client


def unique_node(prefix: str = "dk") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def remove_node_containers(client: Any, node: str) -> None:
    for c in client.containers.list(all=True, filters={"label": f"kubeless.node.id={node}"}):
        try:
            c.remove(force=True, v=True)
        except Exception:
            pass


def task(service: str = "web", slot: int = 1, node: str = "n1", *, image: str = IMAGE,
         ports: list[dict[str, Any]] | None = None, desired: str = "running",
         tid: str | None = None, **template: Any) -> dict[str, Any]:
    template.setdefault("stopGracePeriod", "2s")
    return {"apiVersion": "kubeless.io/v1", "kind": "Task",
            "metadata": {"name": tid or new_task_id(), "namespace": "default"},
            "spec": {"serviceName": service, "slot": slot, "nodeName": node,
                     "desiredState": desired, "ports": ports or [],
                     "template": {"image": image, **template}},
            "status": {"state": "assigned"}}


async def assign(rs: store.ResourceStore, t: dict[str, Any], *, also_task: bool = True) -> None:
    """Write the assignment (and the task under ``tasks/``, as the scheduler's transaction)."""
    ops = [Put(rs.keys.assignment(t["spec"]["nodeName"], t["metadata"]["name"]), encode_json(t))]
    if also_task:
        ops.append(Put(rs.key_of(t), encode_json(t)))
    await rs.etcd.txn([], ops)


async def unassign(rs: store.ResourceStore, t: dict[str, Any]) -> None:
    await rs.etcd.txn([], [Delete(rs.keys.assignment(t["spec"]["nodeName"],
                                                     t["metadata"]["name"]))])


async def report(rs: store.ResourceStore, t: dict[str, Any]) -> dict[str, Any] | None:
    kv, _ = await rs.etcd.get(rs.keys.observed(t["spec"]["nodeName"], t["metadata"]["name"]))
    return None if kv is None else dict(json.loads(kv.value))


async def reaches(rs: store.ResourceStore, t: dict[str, Any], state: str,
                  timeout: float = 20.0) -> dict[str, Any]:
    """Wait until the agent reports ``state`` for the task; that report."""
    last: dict[str, Any] = {}

    async def check() -> dict[str, Any] | None:
        nonlocal last
        last = await report(rs, t) or {}
        return last if last.get("state") == state else None
    try:
        found: dict[str, Any] = await until(check, timeout, f"task {t['metadata']['name']} "
                                            f"{state}")
    except AssertionError as err:
        raise AssertionError(f"{err}; last report: {last}") from None
    return found
