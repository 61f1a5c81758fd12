"""Bad data in etcd, written behind the CLI's back, is isolated: listed, shown, removed.

Against a real etcd: values that are not resources (``INVALID`` table) are
listed by ``get`` with the reason, described, refused by ``-o yaml`` and
``apply``, and removed by ``delete`` (compare-guarded); a Service too large
to schedule is refused at apply and, when stored anyway in an etcd with a
small ``--max-request-bytes``, never blocks the others (the applier splits
what etcd refuses and the offender says why); writing commands warn when the
prefix holds no cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.framework import Applier, LeaderElector
from controllers.ops import CreateTask
from kubeless import store
from kubeless.api.limits import MAX_TASK_PAYLOAD_BYTES
from kubeless.store import Conflict, CorruptValue, Put
from kubeless.store.codec import encode_yaml
from kubeless.store.tasks import list_tasks
from lab.hollow import HollowCluster, running, service
from lab.waiting import until
from tests.support.cli import Run, run_cli
from tests.support.cli_errors import assert_one_error_line
from tests.support.etcd_server import EtcdCluster, mark_cluster, put_raw
from tests.support.unwritten import keyspace, written

pytestmark = pytest.mark.integration

SMALL_REQUEST_LIMIT = 128 * 1024  # the small --max-request-bytes of the controller tests


@pytest.fixture
def kubeless(etcd_cluster: EtcdCluster, prefix: str) -> Run:
    """The CLI on the test's prefix, which holds a cluster record (no prefix warning)."""
    mark_cluster(etcd_cluster, prefix)

    def run(*args: str, stdin: str | None = None,
            prefix_: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(etcd_cluster.endpoints, prefix_ or prefix, *args, stdin=stdin,
                       env=etcd_cluster.client_env())
    return run


def etcdctl(cluster: EtcdCluster, *args: str, stdin: bytes | None = None) -> bytes:
    res = subprocess.run(["/usr/bin/etcdctl", *cluster.client_flags(), *args],
                         input=stdin, check=True, capture_output=True,
                         env={**os.environ, "ETCDCTL_API": "3"})
    return res.stdout


def raw_put(cluster: EtcdCluster, key: str, value: bytes) -> None:
    put_raw(cluster, key, value)


def svc_doc(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kubeless.io/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": 1, "template": {"image": "web:1"}, **spec}}


# -- values that are not resources ----------------------------------------------------

# name -> (what is stored under spec/services/default/bad, the reason shown)
INVALID: dict[str, tuple[bytes, str]] = {
    "not YAML": (b"{not: [yaml", "not valid YAML"),
    "not UTF-8": (b"\x80\x81: [", "not valid YAML: unacceptable character"),
    "a list": (b"- a\n- b\n", "not a mapping (a list)"),
    "a scalar": (b"42\n", "not a mapping (a int)"),
    "empty": (b"", "not a mapping (a NoneType)"),
    "another kind": (b"kind: Node\nmetadata: {name: bad}\n", "kind is 'Node'"),
    "another name": (b"kind: Service\nmetadata: {name: other}\n", "metadata.name does not match its key"),
    "no metadata": (b"kind: Service\nspec: {}\n", "metadata.name does not match its key"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_an_invalid_value_is_listed_described_and_deleted(
        case: str, kubeless: Run, etcd_cluster: EtcdCluster, prefix: str) -> None:
    raw, reason = INVALID[case]
    assert kubeless("apply", "-f", "-", stdin=yaml.safe_dump(svc_doc("good"))).returncode == 0
    key = f"{prefix}/v1/spec/services/default/bad"
    raw_put(etcd_cluster, key, raw)

    listed = kubeless("get", "services")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1:] for line in listed.stdout.splitlines()[1:]}
    assert rows["bad"] == ["<invalid>"] and rows["good"][0] == "replicated"
    assert f'warning: service "bad" is invalid: {reason}' in listed.stderr, listed.stderr
    assert "kubeless delete service bad removes it" in listed.stderr
    assert kubeless("get", "services", "-o", "name").stdout.split() == [
        "service/bad", "service/good"]

    described = kubeless("describe", "service", "bad")
    assert described.returncode == 0, described.stderr
    assert f"Key:           {key}" in described.stdout and reason in described.stdout

    as_yaml = kubeless("get", "service", "bad", "-o", "yaml")
    assert_one_error_line(as_yaml, 'service "bad" is not a valid resource in etcd', reason)
    assert as_yaml.stdout == ""
    every = kubeless("get", "services", "-o", "json")
    assert every.returncode == 0
    assert [i["metadata"]["name"] for i in json.loads(every.stdout)["items"]] == ["good"]

    before = keyspace(etcd_cluster)
    refused = kubeless("apply", "-f", "-", stdin=yaml.safe_dump(svc_doc("bad")))
    assert_one_error_line(refused, 'service "bad" in etcd is not a valid resource',
                          "kubeless delete service bad")
    assert not written(before, keyspace(etcd_cluster))
    compared = kubeless("diff", "-f", "-", stdin=yaml.safe_dump(svc_doc("bad")))
    assert compared.returncode == 2, compared  # an error, not a difference (diff(1)'s 2)
    assert_one_error_line(compared, 'service "bad" in etcd is not a valid resource')

    deleted = kubeless("delete", "service", "bad")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == 'service "bad" deleted\n'
    assert etcdctl(etcd_cluster, "get", key) == b""
    assert kubeless("get", "services", "-o", "name").stdout.split() == ["service/good"]


def test_delete_f_removes_an_invalid_value_too(kubeless: Run, etcd_cluster: EtcdCluster,
                                               prefix: str, tmp_path: Path) -> None:
    etcdctl(etcd_cluster, "put", f"{prefix}/v1/spec/services/default/bad", "{not: [yaml")
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(svc_doc("bad")))
    res = kubeless("delete", "-f", str(f))
    assert res.returncode == 0, res.stderr
    assert res.stdout == 'service "bad" deleted\n'
    assert kubeless("get", "services", "-o", "name").stdout == ""


async def test_deleting_an_invalid_value_compares_its_mod_revision(
        rstore: store.ResourceStore) -> None:
    key = rstore.keys.spec("Service", "bad", "default")
    await rstore.etcd.txn([], [Put(key, b"{not: [yaml")])
    with pytest.raises(CorruptValue) as seen:
        await rstore.get("Service", "bad", "default")
    await rstore.etcd.txn([], [Put(key, b"- rewritten meanwhile\n")])
    with pytest.raises(Conflict, match="changed since it was read"):
        await rstore.delete_invalid(seen.value)
    kv, _ = await rstore.etcd.get(key)
    assert kv is not None and kv.value == b"- rewritten meanwhile\n"
    with pytest.raises(CorruptValue) as again:
        await rstore.get("Service", "bad", "default")
    await rstore.delete_invalid(again.value)
    assert (await rstore.etcd.get(key))[0] is None


def test_describe_shows_why_a_stored_service_fails_validation(
        kubeless: Run, etcd_cluster: EtcdCluster, prefix: str) -> None:
    bad = svc_doc("neg", replicas=-3)
    etcdctl(etcd_cluster, "put", f"{prefix}/v1/spec/services/default/neg",
            stdin=encode_yaml(bad))
    res = kubeless("describe", "service", "neg")
    assert res.returncode == 0, res.stderr
    assert "Invalid:\n  spec.replicas:" in res.stdout, res.stdout


# -- too large ----------------------------------------------------------------------------

def huge_doc(name: str, payload: int) -> dict[str, Any]:
    return svc_doc(name, template={"image": "web:1", "env": {"BLOB": "x" * payload}})


def test_apply_refuses_a_service_too_large_to_schedule(kubeless: Run,
                                                       etcd_cluster: EtcdCluster) -> None:
    before = keyspace(etcd_cluster)
    doc = huge_doc("huge", MAX_TASK_PAYLOAD_BYTES)  # under the 1 MiB document limit
    res = kubeless("apply", "-f", "-", stdin=json.dumps(doc))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: <stdin>:1 (Service default/huge): spec: too large to "
                                 "schedule"), res.stderr
    assert res.stderr.count("\n") == 1, res.stderr
    assert not written(before, keyspace(etcd_cluster))
    fits = kubeless("apply", "-f", "-", stdin=json.dumps(huge_doc("big", 600 * 1024)))
    assert fits.returncode == 0, fits.stderr


@pytest.fixture
def small_etcd() -> Iterator[EtcdCluster]:
    """An etcd refusing requests over 128 KiB, so "too large" is cheap to reach."""
    cluster = EtcdCluster(1, extra_args=("--max-request-bytes", str(SMALL_REQUEST_LIMIT)),
                          tls=True)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
async def small_cluster(small_etcd: EtcdCluster, prefix: str) -> AsyncIterator[HollowCluster]:
    async with HollowCluster(small_etcd.endpoints, prefix, tls=small_etcd.client_tls) as c:
        yield c


def with_blob(name: str, replicas: int, payload: int) -> dict[str, Any]:
    doc = service(name, replicas)
    doc["spec"]["template"]["env"] = {"BLOB": "x" * payload}
    return doc


async def test_a_task_too_large_to_assign_never_blocks_the_others(
        small_cluster: HollowCluster) -> None:
    """Its task alone fits etcd's limit; with its assignment (the same bytes) it does not.
    Both services are stored before any node exists, so the scheduler plans all their
    tasks in one pass and one batch: etcd refuses it, the halves land but the offender."""
    c = small_cluster
    huge = with_blob("huge", 1, 80 * 1024)
    huge["metadata"].update({"uid": "u-huge", "generation": 1})
    await c.store.etcd.txn([], [Put(c.store.keys.spec("Service", "huge", "default"),
                                    encode_yaml(huge))])  # behind the CLI's back
    await c.apply(service("good", 3))
    await until(lambda: _count(c, "huge", 1), 15, "the huge service's task created")
    await c.add_group("n", 2)
    await c.wait_running("good", 3)

    async def refused() -> Any:
        tasks = await c.tasks("huge")
        return tasks and "task too large for etcd" in (tasks[0]["status"].get("error") or "")
    await until(refused, 15, "the huge task says why it waits")
    [task] = await c.tasks("huge")
    assert task["status"]["state"] == "pending"
    assert "assigning it is a" in task["status"]["message"]
    c.check_controllers()
    await c.scale("good", 4)  # scheduling goes on
    await c.wait_running("good", 4)
    assert [t["status"]["state"] for t in await c.tasks("huge")] == ["pending"]


async def _count(c: HollowCluster, name: str, n: int) -> bool:
    return len(await c.tasks(name)) == n


async def test_tasks_too_large_together_are_created_in_smaller_batches(
        small_cluster: HollowCluster) -> None:
    """Three 50 KiB tasks of one service exceed 128 KiB in one transaction: split, they land."""
    c = small_cluster
    await c.add_group("n", 3)
    await c.apply(with_blob("big", 3, 50 * 1024))
    await c.wait_running("big", 3)
    assert len(running(await c.tasks("big"))) == 3
    c.check_controllers()


async def test_the_applier_skips_only_what_etcd_refuses_even_alone(
        small_etcd: EtcdCluster, prefix: str) -> None:
    rstore = small_etcd.connect(prefix)
    elector = LeaderElector(rstore.etcd, rstore.keys, "test", "me", ttl=2)
    campaign = asyncio.create_task(elector.run())
    try:
        await asyncio.wait_for(elector.elected.wait(), 5)
        small = [_task(f"t{i}", 1024) for i in range(6)]
        huge = _task("huge", SMALL_REQUEST_LIMIT + 1024)
        result = await Applier(rstore, elector).apply(
            [CreateTask(t) for t in small[:3]] + [CreateTask(huge)]
            + [CreateTask(t) for t in small[3:]])
        result.check()  # a skipped operation is not an error to retry
        assert [(op.task["metadata"]["name"], size > SMALL_REQUEST_LIMIT)  # type: ignore[union-attr]
                for op, size in result.too_large] == [("huge", True)]
        names = sorted(t["metadata"]["name"] for t in (await list_tasks(rstore)).items)
        assert names == [f"t{i}" for i in range(6)]
    finally:
        campaign.cancel()
        await asyncio.gather(campaign, return_exceptions=True)
        await rstore.etcd.close()


def _task(name: str, payload: int) -> dict[str, Any]:
    return {"apiVersion": "kubeless.io/v1", "kind": "Task",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"serviceName": "web", "template": {"image": "web:1",
                                                        "env": {"BLOB": "x" * payload}}},
            "status": {"state": "pending"}}


# -- a prefix with no cluster --------------------------------------------------------------

NO_CLUSTER = "warning: no cluster at prefix"


def test_writing_into_a_prefix_with_no_cluster_warns(kubeless: Run, etcd_cluster: EtcdCluster,
                                                     prefix: str) -> None:
    etcdctl(etcd_cluster, "del", f"{prefix}/v1/cluster")
    res = kubeless("apply", "-f", "-", stdin=yaml.safe_dump(svc_doc("web")))
    assert res.returncode == 0 and res.stdout == "service/web created\n"
    assert res.stderr == (f"{NO_CLUSTER} {prefix} in {etcd_cluster.endpoints}: no cluster "
                          f"record and no nodes (is --prefix or KUBELESS_PREFIX right?)\n")
    for args in (("service", "scale", "-d", "web=2"), ("rollout", "pause", "service/web"),
                 ("delete", "service", "web")):
        res = kubeless(*args)
        assert res.returncode == 0 and NO_CLUSTER in res.stderr, (args, res.stderr)
    read = kubeless("get", "services")
    assert NO_CLUSTER not in read.stderr


@pytest.mark.parametrize("what", ["cluster record", "node"])
def test_a_prefix_with_a_cluster_or_a_node_does_not_warn(
        what: str, kubeless: Run, etcd_cluster: EtcdCluster, prefix: str) -> None:
    etcdctl(etcd_cluster, "del", f"{prefix}/v1/cluster")
    key = f"{prefix}/v1/cluster" if what == "cluster record" else f"{prefix}/v1/spec/nodes/n1"
    etcdctl(etcd_cluster, "put", key, "x")
    res = kubeless("apply", "-f", "-", stdin=yaml.safe_dump(svc_doc("web")))
    assert res.returncode == 0 and res.stderr == "", res.stderr
