"""The store against a real etcd: CRUD, conflicts, transactions, paging, corrupt values."""

from __future__ import annotations

import asyncio

import pytest

from kubeless import store
from kubeless.store import Compare, Put
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration


def service(name: str, replicas: int = 1, ns: str = "default", **labels: str) -> dict:
    return {"apiVersion": "kubeless.io/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"replicas": replicas, "template": {"image": "web:1"}}}


def task(name: str, svc: str = "web", ns: str = "default") -> dict:
    return {"apiVersion": "kubeless.io/v1", "kind": "Task",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"serviceName": svc, "slot": 1, "desiredState": "running"},
            "status": {"state": "new"}}


async def test_create_get_sets_metadata_and_resource_version(rstore: store.ResourceStore) -> None:
    created = await rstore.create(service("web", 3))
    got = await rstore.get("Service", "web", "default")
    assert got is not None
    assert got["spec"]["replicas"] == 3
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    assert got["metadata"]["generation"] == 1
    assert int(got["metadata"]["resourceVersion"]) > 0
    assert "creationTimestamp" in got["metadata"]


async def test_values_are_stored_as_yaml_without_resource_version(
        rstore: store.ResourceStore) -> None:
    await rstore.create(service("web"))
    kv, _ = await rstore.etcd.get(rstore.keys.spec("Service", "web", "default"))
    assert kv is not None
    assert kv.value.startswith(b"apiVersion: kubeless.io/v1\n")
    assert b"resourceVersion" not in kv.value


async def test_create_twice_is_already_exists(rstore: store.ResourceStore) -> None:
    await rstore.create(service("web"))
    with pytest.raises(store.AlreadyExists, match="Service default/web already exists"):
        await rstore.create(service("web"))


async def test_stale_update_is_a_conflict_and_writes_nothing(rstore: store.ResourceStore) -> None:
    await rstore.create(service("web", 1))
    first = await rstore.get("Service", "web", "default")
    second = await rstore.get("Service", "web", "default")
    assert first and second
    first["spec"]["replicas"] = 2
    await rstore.update(first)
    second["spec"]["replicas"] = 5
    with pytest.raises(store.Conflict, match="was changed since it was read"):
        await rstore.update(second)
    now = await rstore.get("Service", "web", "default")
    assert now and now["spec"]["replicas"] == 2


async def test_delete_and_not_found(rstore: store.ResourceStore) -> None:
    await rstore.create(service("web"))
    await rstore.delete("Service", "web", "default")
    assert await rstore.get("Service", "web", "default") is None
    with pytest.raises(store.NotFound):
        await rstore.delete("Service", "web", "default")


async def test_stale_delete_is_a_conflict(rstore: store.ResourceStore) -> None:
    created = await rstore.create(service("web"))
    read = await rstore.get("Service", "web", "default")
    assert read
    read["spec"]["replicas"] = 4
    await rstore.update(read)
    with pytest.raises(store.Conflict):
        await rstore.delete("Service", "web", "default",
                            resource_version=str(int(read["metadata"]["resourceVersion"])))
    assert created


async def test_transaction_is_all_or_nothing(rstore: store.ResourceStore) -> None:
    await rstore.create(service("b"))
    txn = rstore.transaction()
    txn.create(service("a"))
    txn.create(service("b"))  # exists: the whole transaction fails
    txn.create(service("c"))
    with pytest.raises(store.AlreadyExists, match="default/b"):
        await txn.commit()
    names = [s["metadata"]["name"] for s in (await rstore.list("Service")).items]
    assert names == ["b"]


async def test_list_filters_namespace_and_labels(rstore: store.ResourceStore) -> None:
    txn = rstore.transaction()
    txn.create(service("a", app="x"))
    txn.create(service("b", app="y"))
    txn.create(service("c", ns="prod", app="x"))
    await txn.commit()
    assert len((await rstore.list("Service")).items) == 3
    assert [s["metadata"]["name"] for s in (await rstore.list("Service", "prod")).items] == ["c"]
    sel = store.parse_selector("app=x")
    got = await rstore.list("Service", None, sel)
    assert sorted(s["metadata"]["name"] for s in got.items) == ["a", "c"]


async def test_service_status_is_a_separate_key(rstore: store.ResourceStore) -> None:
    created = await rstore.create(service("web"))
    rev = await rstore.write_status(created, {"runningReplicas": 1})
    got = await rstore.get("Service", "web", "default")
    assert got and got["status"] == {"runningReplicas": 1}
    # A user's update of the spec does not touch the status key...
    got.pop("status")
    got["spec"]["replicas"] = 2
    await rstore.update(got)
    again = await rstore.get("Service", "web", "default")
    assert again and again["status"] == {"runningReplicas": 1}
    # ...and a status write compares the status key's own revision.
    with pytest.raises(store.Conflict):
        await rstore.write_status(created, {"runningReplicas": 0}, status_revision=0)
    await rstore.write_status(created, {"runningReplicas": 2}, status_revision=rev)


async def test_tasks_are_json_and_found_by_name(rstore: store.ResourceStore) -> None:
    await rstore.create(task("t1"))
    kv, _ = await rstore.etcd.get(rstore.keys.spec("Task", "t1", "default", "web"))
    assert kv is not None and kv.value.startswith(b"{")
    got = await rstore.get("Task", "t1", "default")
    assert got and got["status"]["state"] == "new"


async def test_corrupt_values_are_skipped_and_reported(rstore: store.ResourceStore) -> None:
    await rstore.create(service("good"))
    keys = rstore.keys
    await rstore.etcd.txn([], [Put(keys.spec("Service", "bad", "default"), b"{not: [yaml"),
                               Put(keys.spec("Service", "odd", "default"), b"- a list\n"),
                               Put(keys.spec("Service", "lie", "default"),
                                   b"kind: Node\nmetadata: {name: lie}\n")])
    result = await rstore.list("Service")
    assert [s["metadata"]["name"] for s in result.items] == ["good"]
    reasons = sorted(str(e) for e in result.skipped)
    assert len(reasons) == 3
    assert any("not valid YAML" in r for r in reasons)
    assert any("not a mapping" in r for r in reasons)
    assert any("kind is 'Node'" in r for r in reasons)


async def test_paged_list_is_one_consistent_snapshot(rstore: store.ResourceStore) -> None:
    prefix = rstore.keys.root + "paging/"
    for start in range(0, 2500, 100):
        await rstore.etcd.txn([], [Put(f"{prefix}{i:05d}", b"x") for i in range(start, start + 100)])
    kvs, rev = await rstore.etcd.list_prefix(prefix, page_size=300)
    assert len(kvs) == 2500
    assert [kv.key for kv in kvs] == sorted(kv.key for kv in kvs)
    # Writes after the first page are not seen by a read pinned at its revision.
    await rstore.etcd.txn([], [Put(f"{prefix}99999", b"late")])
    again, _ = await rstore.etcd.list_prefix(prefix, page_size=300, revision=rev)
    assert len(again) == 2500


async def test_raw_txn_compare_mod_revision(rstore: store.ResourceStore) -> None:
    key = rstore.keys.root + "raw"
    res = await rstore.etcd.txn([Compare(key, "create", "==", 0)], [Put(key, b"1")])
    assert res.succeeded
    kv, _ = await rstore.etcd.get(key)
    assert kv is not None
    stale = kv.mod_revision - 1
    res = await rstore.etcd.txn([Compare(key, "mod", "==", stale)], [Put(key, b"2")])
    assert not res.succeeded
    kv2, _ = await rstore.etcd.get(key)
    assert kv2 is not None and kv2.value == b"1"


async def test_unreachable_etcd_fails_fast_naming_endpoints() -> None:
    from tests.support.etcd_server import free_port
    port = free_port()
    s = store.connect(f"http://127.0.0.1:{port}", retry_for=1.0, call_timeout=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(store.Unavailable, match=f"tried http://127.0.0.1:{port}"):
        await s.list("Service")
    assert loop.time() - started < 4
    await s.etcd.close()


async def test_three_member_cluster_survives_one_member_loss(prefix: str) -> None:
    cluster = EtcdCluster(3, tls=True).start()
    try:
        s = cluster.connect(prefix, retry_for=10)
        await s.create(service("before"))
        cluster.stop_member(cluster.members[0])
        for i in range(5):  # round robin touches every live member
            await s.create(service(f"after-{i}"))
        names = {x["metadata"]["name"] for x in (await s.list("Service")).items}
        assert names == {"before"} | {f"after-{i}" for i in range(5)}
        await s.etcd.close()
    finally:
        cluster.stop()


async def test_get_many_reads_more_keys_than_one_transaction_may_hold(
        rstore: store.ResourceStore) -> None:
    """etcd refuses a transaction of more than 128 operations: 300 keys are read in
    three, all at the revision the first one read (a later write is not seen)."""
    keys = [f"{rstore.keys.root}many/{i:03d}" for i in range(300)]
    for start in range(0, 300, 100):
        await rstore.etcd.txn([], [Put(k, k.encode()) for k in keys[start:start + 100]])
    found, revision = await rstore.etcd.get_many([*keys, f"{rstore.keys.root}many/absent"])
    assert sorted(found) == keys and all(found[k].value == k.encode() for k in keys)
    assert revision == max(kv.mod_revision for kv in found.values())
