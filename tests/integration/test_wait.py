"""`kubeless wait` end to end: the real CLI against controllers and hollow nodes (fake runtime)
on the session's TLS etcd. Each wait is started before what it waits for happens, so the
test shows the CLI wakes on the etcd watch; its own --timeout is the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lab.hollow import HollowCluster, RolloutCluster, running, service
from tests.support.hollow_cli import acli
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration



@pytest.fixture
async def cluster(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[HollowCluster]:
    async with RolloutCluster(etcd_cluster.endpoints, prefix, tls=etcd_cluster.client_tls) as c:
        yield c



async def test_wait_available_ready_and_delete(cluster: HollowCluster) -> None:
    await cluster.add_group("a", 2)
    ready = await acli(cluster, "wait", "nodes", "--all", "--for=condition=Ready")
    assert ready.returncode == 0, ready.stderr
    assert sorted(ready.stdout.splitlines()) == ["node/a-0 condition met",
                                                 "node/a-1 condition met"]

    await cluster.apply(service("web", 3))
    res = await acli(cluster, "wait", "service/web", "--for=condition=Available",
                     "--timeout=60s")
    assert (res.returncode, res.stdout, res.stderr) == (0, "service/web condition met\n", "")
    status = await cluster.status("web")
    assert status["runningReplicas"] == 3  # met means met: the status says so too

    # An update: Available again only once the rollout put the new image in every slot.
    await cluster.apply(service("web", 3, image="web:2"))
    res = await acli(cluster, "wait", "service/web", "--for=condition=Available",
                     "--timeout=60s")
    assert res.returncode == 0, res.stderr
    images = [t["spec"]["template"]["image"] for t in running(await cluster.tasks("web"))]
    assert images == ["web:2"] * 3

    # A scale the nodes cannot hold is never Available: the wait times out, exit 1.
    await cluster.apply({**service("big", 1),
                         "spec": {**service("big", 1)["spec"],
                                  "placement": {"constraints": ["node.labels.zone==nowhere"]}}})
    res = await acli(cluster, "wait", "services", "big", "--for=condition=Available",
                     "--timeout=1s")
    assert res.returncode == 1
    assert res.stderr == "error: timed out waiting for the condition on services/big\n"

    # --for=delete: while the service exists it waits (here: until its timeout) ...
    res = await acli(cluster, "wait", "service/web", "--for=delete", "--timeout=1s")
    assert res.stderr == "error: timed out waiting for the condition on services/web\n"
    # ... and started first, it returns once the key is gone.
    waiting = asyncio.create_task(acli(cluster, "wait", "service/web", "service/big",
                                       "--for=delete", "--timeout=60s"))
    gone = await acli(cluster, "delete", "service", "web", "big")
    assert gone.returncode == 0, gone.stderr
    res = await waiting
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.splitlines()) == ["service/big deleted", "service/web deleted"]


async def test_wait_for_a_job(cluster: HollowCluster) -> None:
    await cluster.add_group("j", 2)
    await cluster.apply(service("batch", 3, mode="replicated-job",
                                env={"KUBELESS_FAKE_EXIT": "0"}))
    res = await acli(cluster, "wait", "service/batch", "--for=condition=Complete",
                     "--timeout=60s")
    assert (res.returncode, res.stdout) == (0, "service/batch condition met\n"), res.stderr

    await cluster.apply(service("doomed", 1, mode="replicated-job",
                                env={"KUBELESS_FAKE_EXIT": "3"},
                                restart={"condition": "none"}))
    res = await acli(cluster, "wait", "service/doomed", "--for=condition=complete",
                     "--timeout=60s")
    assert res.returncode == 1
    assert res.stderr.startswith("error: service/doomed: job run 1 failed (1 failed"), res.stderr


@pytest.mark.parametrize("args, code, line", [
    (["service/web", "--for=condition=Bogus"], 2,
     "error: Service has no condition Bogus (known: Available, Complete)"),
    (["node/n1", "--for=condition=Available"], 2,
     "error: Node has no condition Available (known: Ready)"),
    (["widget/web", "--for=delete"], 2, "error: unknown kind"),
    (["service/web", "--for=condition"], 2, "error: --for must be"),
    (["service/web", "--for=delete", "--timeout=soon"], 2, "error: --timeout 'soon': expected a duration like 2s"),
    (["service", "--for=delete"], 2, "error: give names of services or -l/--all"),
    (["service/nope", "--for=condition=Available"], 1, 'error: service "nope" not found'),
    (["services", "--all", "--for=condition=Available"], 1,
     "error: no matching services found"),
])
async def test_bad_waits_are_one_line(cluster: HollowCluster, args: list[str], code: int,
                                      line: str) -> None:
    res = await acli(cluster, "wait", *args)
    assert res.returncode == code, (res.stdout, res.stderr)
    assert res.stderr.startswith(line) and res.stderr.count("\n") == 1, res.stderr
    assert res.stdout == ""
