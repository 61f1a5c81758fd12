"""``service create|update|scale|rollback`` and ``apply --wait`` wait and show progress as
docker does, and say by their exit code how it ended: the CLI as a user runs it (a pipe:
plain lines), against controllers (with the rollout's) on hollow nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lab.hollow import HollowCluster, RolloutCluster
from tests.support.hollow_cli import acli
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration



@pytest.fixture
async def cluster(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[HollowCluster]:
    async with RolloutCluster(etcd_cluster.endpoints, prefix, tls=etcd_cluster.client_tls) as c:
        await c.add_group("p", 3)
        yield c



async def test_create_update_scale_wait_until_converged(cluster: HollowCluster) -> None:
    created = await acli(cluster, "service", "create", "--name", "web", "--replicas", "3",
                        "--update-monitor", "1s", "web:1")
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    assert lines[0] == "web"
    assert lines[-1] == "verify: Service converged"
    assert "overall progress: 3 out of 3 tasks" in lines
    assert {"1/3: running", "2/3: running", "3/3: running"} <= set(lines)
    tasks = await cluster.tasks("web")
    assert sum(t["status"].get("state") == "running" for t in tasks) == 3  # really converged

    updated = await acli(cluster, "service", "update", "--image", "web:2", "web")
    assert updated.returncode == 0, updated.stderr
    assert updated.stdout.splitlines()[-1] == "verify: Service converged"
    running = [t for t in await cluster.tasks("web") if t["spec"]["desiredState"] == "running"]
    assert sorted(t["spec"]["template"]["image"] for t in running) == ["web:2"] * 3

    scaled = await acli(cluster, "service", "scale", "web=5")
    assert scaled.returncode == 0, scaled.stderr
    assert "overall progress: 5 out of 5 tasks" in scaled.stdout.splitlines()


async def test_a_failing_update_exits_1_with_the_reason(cluster: HollowCluster) -> None:
    assert (await acli(cluster, "service", "create", "--name", "web", "--replicas", "2",
                      "--update-monitor", "2s", "web:1")).returncode == 0
    failing = await acli(cluster, "service", "update", "--image", "web:fail", "web")
    assert failing.returncode == 1
    assert failing.stderr.strip().splitlines()[-1].startswith("error: web: update paused:")
    assert "Traceback" not in failing.stderr
    back = await acli(cluster, "service", "rollback", "web")
    assert back.returncode == 0, back.stderr
    assert back.stdout.splitlines()[-1] == "verify: Service converged"


async def test_detach_returns_at_once_and_a_timeout_is_an_error(cluster: HollowCluster) -> None:
    detached = await acli(cluster, "service", "create", "-d", "--name", "far",
                         "--constraint", "node.labels.zone==mars", "web:1")
    assert detached.returncode == 0 and detached.stdout == "far\n"
    stuck = await acli(cluster, "service", "update", "--timeout", "2s", "--env-add", "A=1", "far")
    assert stuck.returncode == 1
    error = stuck.stderr.strip().splitlines()[-1]
    assert error.startswith("error: far: not converged within 2s (overall progress: 0 out of 1")
    assert "1/1: pending  no suitable node" in stuck.stdout


async def test_apply_wait(cluster: HollowCluster) -> None:
    doc = ("apiVersion: kubeless.io/v1\nkind: Service\nmetadata: {name: api}\n"
           "spec: {replicas: 2, template: {image: 'api:1'}}\n")
    applied = await acli(cluster, "apply", "--wait", "-f", "-", stdin=doc)
    assert applied.returncode == 0, applied.stderr
    lines = applied.stdout.splitlines()
    assert lines[0] == "service/api created" and lines[-1] == "verify: Service converged"
    again = await acli(cluster, "apply", "--wait", "-f", "-", stdin=doc)
    assert again.stdout == "service/api unchanged\n"  # nothing to wait for


async def test_a_job_waits_for_its_run(cluster: HollowCluster) -> None:
    job = await acli(cluster, "service", "create", "--name", "batch", "--mode", "replicated-job",
                    "--replicas", "4", "--max-concurrent", "2", "--env", "KUBELESS_FAKE_EXIT=0",
                    "--restart-condition", "none", "batch:1")
    assert job.returncode == 0, job.stderr
    assert "job progress: 4 out of 4 complete" in job.stdout.splitlines()
    failing = await acli(cluster, "service", "create", "--name", "bad", "--mode",
                        "replicated-job", "--replicas", "1", "--env", "KUBELESS_FAKE_EXIT=3",
                        "--restart-condition", "none", "batch:1")
    assert failing.returncode == 1
    assert "job run 1 failed" in failing.stderr
