"""The secrets controller against the session's TLS+auth etcd: nodes' copies of secrets
and configs follow the tasks assigned there, sealed to the key each node's heartbeat
advertises.

The controller runs alone in a ``ControllerRunner`` as ``manager:<...>``; the test
writes, as the admin, what the other parts would have written: the cluster record
(its ``secretsKey`` derived from a CA made here), a stored Secret sealed to it as
``secret create`` seals, a stored Config, a Node with a heartbeat carrying an agent's
public key, and tasks assigned there. Then it waits, with deadlines, for the copies.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controllers.framework import Controller, ControllerRunner
from controllers.secrets.controller import SecretsController
from controllers.view import ClusterView
from kubeless import store
from kubeless.api.tasks import new_task_id
from kubeless.cluster import secrets_key
from kubeless.cluster.pki import CA, key_pem, write_private
from kubeless.cluster.record import ClusterRecord
from kubeless.cluster.sealing import (SealError, copy_context, digest, key_id, new_private_key,
                                      public_text, seal, secret_context, unseal)
from kubeless.cluster.secrets_key import ClusterSecretsKey
from kubeless.store import Forbidden, Put
from kubeless.store.codec import decode, encode_json, encode_yaml
from lab.hollow import HollowCluster, running, service
from lab.waiting import until
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration
Resource = dict[str, Any]
VALUE = b"hunter2-secrets-delivery"
NODE = "deliver-n1"
OTHER = "deliver-n2"


class Harness:
    """The admin's store, the controller's runner, and reading copies."""

    def __init__(self, cluster: EtcdCluster, prefix: str, ca: CA,
                 cluster_key: ClusterSecretsKey | None) -> None:
        self.cluster, self.prefix, self.ca = cluster, prefix, ca
        self.admin = cluster.connect(prefix)
        self.keys = self.admin.keys
        self.ctl = store.connect(cluster.endpoints, prefix,
                                 tls=cluster.client_tls("manager:secrets-test", prefix))
        self.controller = SecretsController(self.ctl, cluster_key=cluster_key)
        self.runner = ControllerRunner(self.ctl, [self.controller], "secrets-test",
                                       lease_ttl=2)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        task = self.task = asyncio.create_task(self.runner.run(), name="secrets runner")
        await until(lambda: self.runner.elector("secrets").is_leader or task.done(), 15,
                    "the secrets controller leads")
        self.check()

    def check(self) -> None:
        if self.task is not None and self.task.done():
            self.task.result()
            raise AssertionError("the secrets runner stopped")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.ctl.etcd.close()
        await self.admin.etcd.close()

    # -- what the other parts write ---------------------------------------------------

    async def put(self, key: str, value: bytes) -> None:
        await self.admin.etcd.txn([], [Put(key, value)])

    async def record(self, *, with_key: bool) -> ClusterRecord:
        record = ClusterRecord("deliver", "2030-01-01T00:00:00Z", self.ca.cert_pem,
                               secrets_key=secrets_key.public_of(self.ca.key) if with_key
                               else "")
        await self.put(self.keys.cluster(), encode_yaml(record.to_value()))
        return record

    async def secret(self, name: str, value: bytes, uid: str) -> None:
        """As ``secret create`` stores it: sealed to the record's key, never plain."""
        public = secrets_key.public_of(self.ca.key)
        doc = {"apiVersion": "kubeless.io/v1", "kind": "Secret",
               "metadata": {"name": name, "namespace": "default", "labels": {}, "uid": uid,
                            "creationTimestamp": "2030-01-01T00:00:00Z"},
               "spec": {"size": len(value), "keyId": key_id(public), "digest": digest(value),
                        "sealed": seal(public, value, secret_context("default", name))}}
        await self.put(self.keys.spec("Secret", name, "default"), encode_yaml(doc))

    async def config(self, name: str, value: bytes, uid: str) -> None:
        doc = {"apiVersion": "kubeless.io/v1", "kind": "Config",
               "metadata": {"name": name, "namespace": "default", "labels": {}, "uid": uid},
               "spec": {"size": len(value), "data": base64.b64encode(value).decode()}}
        await self.put(self.keys.spec("Config", name, "default"), encode_yaml(doc))

    async def node(self, name: str, agent_key: str | None) -> None:
        """The Node, and a heartbeat advertising ``agent_key`` (None: an old agent)."""
        if await self.admin.get("Node", name) is None:
            await self.admin.create({"apiVersion": "kubeless.io/v1", "kind": "Node",
                                     "metadata": {"name": name},
                                     "spec": {"role": "worker", "availability": "active"}})
        await self.heartbeat(name, agent_key)

    async def heartbeat(self, name: str, agent_key: str | None) -> None:
        beat: Resource = {"nodeName": name, "address": "127.0.0.1", "state": "ready"}
        if agent_key is not None:
            beat["secretsKey"] = agent_key
        await self.put(self.keys.heartbeat(name), encode_json(beat))

    async def task_on(self, node: str, *, secrets: tuple[str, ...] = ("dbpass",),
                      configs: tuple[str, ...] = ("webconf",)) -> Resource:
        template = {"image": "web:1", "secrets": [{"source": s, "mode": 0o400} for s in secrets],
                    "configs": [{"source": c, "target": f"/etc/{c}"} for c in configs]}
        created: Resource = await self.admin.create({
            "apiVersion": "kubeless.io/v1", "kind": "Task",
            "metadata": {"name": new_task_id(), "namespace": "default"},
            "spec": {"serviceName": "web", "slot": 1, "nodeName": node,
                     "desiredState": "running", "template": template},
            "status": {"state": "assigned"}})
        return created

    async def stop_task(self, task: Resource) -> None:
        current = await self.admin.get("Task", task["metadata"]["name"], "default")
        assert current is not None
        current["spec"]["desiredState"] = "shutdown"
        await self.admin.update(current)

    # -- reading copies ------------------------------------------------------------------

    async def copy(self, node: str, kind: str, name: str) -> tuple[Resource | None, int]:
        kv, _ = await self.admin.etcd.get(self.keys.copy(node, kind, "default", name))
        return (json.loads(kv.value), kv.mod_revision) if kv is not None else (None, 0)

    async def wait_copy(self, node: str, kind: str, name: str,
                        check: Any = lambda doc: True) -> Resource:
        async def there() -> Resource | None:
            self.check()
            doc, _ = await self.copy(node, kind, name)
            return doc if doc is not None and check(doc) else None
        found: Resource = await until(there, 15, f"{node}'s copy of {kind} {name}")
        return found

    async def wait_gone(self, node: str, kind: str, name: str) -> None:
        async def gone() -> bool:
            self.check()
            return (await self.copy(node, kind, name))[0] is None
        await until(gone, 15, f"{node}'s copy of {kind} {name} deleted")

    async def plain_anywhere(self, value: bytes) -> list[str]:
        kvs, _ = await self.admin.etcd.list_prefix(self.prefix + "/")
        return [kv.key for kv in kvs if value in kv.value
                or base64.b64encode(value) in kv.value]


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.make("kubeless test CA secrets delivery")


@pytest.fixture
def ca_key_file(ca: CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.key"
    write_private(path, key_pem(ca.key))
    return path


async def harness(cluster: EtcdCluster, prefix: str, ca: CA,
                  key: ClusterSecretsKey | None) -> AsyncIterator[Harness]:
    h = Harness(cluster, prefix, ca, key)
    try:
        yield h
    finally:
        await h.stop()


@pytest.fixture
async def with_key(etcd_cluster: EtcdCluster, prefix: str, ca: CA,
                   ca_key_file: Path) -> AsyncIterator[Harness]:
    async for h in harness(etcd_cluster, prefix, ca, secrets_key.load(ca_key_file)):
        yield h


@pytest.fixture
async def without_key(etcd_cluster: EtcdCluster, prefix: str, ca: CA) -> AsyncIterator[Harness]:
    async for h in harness(etcd_cluster, prefix, ca, None):
        yield h


def opens_with(private: Any, doc: Resource, node: str = NODE) -> bytes:
    return unseal(private, doc["sealed"], copy_context(node, doc["namespace"], doc["name"]))


async def test_copies_follow_tasks_and_agent_keys(with_key: Harness) -> None:
    h = with_key
    await h.record(with_key=True)
    await h.secret("dbpass", VALUE, "uid-db-1")
    await h.config("webconf", b"listen 80;\n", "uid-conf-1")
    agent = new_private_key()
    await h.node(NODE, public_text(agent))
    await h.start()
    task = await h.task_on(NODE)

    doc = await h.wait_copy(NODE, "Secret", "dbpass")
    assert doc == {"kind": "Secret", "namespace": "default", "name": "dbpass",
                   "uid": "uid-db-1", "recipient": key_id(public_text(agent)),
                   "sealed": doc["sealed"]}
    assert opens_with(agent, doc) == VALUE
    with pytest.raises(SealError):  # bound to this node's name: another node's copy
        opens_with(agent, doc, OTHER)
    conf = await h.wait_copy(NODE, "Config", "webconf")
    assert conf == {"kind": "Config", "namespace": "default", "name": "webconf",
                    "uid": "uid-conf-1", "data": base64.b64encode(b"listen 80;\n").decode()}
    assert await h.plain_anywhere(VALUE) == []

    # the node's own etcd identity reads its copy; another node's is refused
    own = h.cluster.connect(h.prefix, f"node:{NODE}")
    other = h.cluster.connect(h.prefix, f"node:{OTHER}")
    try:
        kv, _ = await own.etcd.get(h.keys.copy(NODE, "Secret", "default", "dbpass"))
        assert kv is not None and opens_with(agent, json.loads(kv.value)) == VALUE
        with pytest.raises(Forbidden):
            await other.etcd.get(h.keys.copy(NODE, "Secret", "default", "dbpass"))
    finally:
        await own.etcd.close()
        await other.etcd.close()

    # a restarted agent advertises a new key: the copy is sealed to it instead
    restarted = new_private_key()
    await h.heartbeat(NODE, public_text(restarted))
    doc = await h.wait_copy(NODE, "Secret", "dbpass",
                            lambda d: d["recipient"] == key_id(public_text(restarted)))
    assert opens_with(restarted, doc) == VALUE
    with pytest.raises(SealError):
        opens_with(agent, doc)

    # the Secret made again (another uid, another value): the copy follows
    await h.secret("dbpass", b"another-value", "uid-db-2")
    doc = await h.wait_copy(NODE, "Secret", "dbpass", lambda d: d["uid"] == "uid-db-2")
    assert opens_with(restarted, doc) == b"another-value"

    # the task stops: no task there uses them any more
    await h.stop_task(task)
    await h.wait_gone(NODE, "Secret", "dbpass")
    await h.wait_gone(NODE, "Config", "webconf")


async def test_a_second_task_keeps_the_copy_and_a_removed_node_loses_them(
        with_key: Harness) -> None:
    h = with_key
    await h.record(with_key=True)
    await h.secret("dbpass", VALUE, "uid-db")
    await h.config("webconf", b"x", "uid-conf")
    agent = new_private_key()
    await h.node(NODE, public_text(agent))
    await h.node(OTHER, None)  # an agent from before secrets: configs only
    await h.start()
    first, _ = await h.task_on(NODE), await h.task_on(NODE, configs=())
    await h.task_on(OTHER)
    await h.wait_copy(NODE, "Secret", "dbpass")
    await h.wait_copy(OTHER, "Config", "webconf")
    await h.stop_task(first)
    await h.wait_gone(NODE, "Config", "webconf")  # only the first task used it
    assert (await h.copy(NODE, "Secret", "dbpass"))[0] is not None
    assert (await h.copy(OTHER, "Secret", "dbpass"))[0] is None
    await h.admin.delete("Node", NODE)
    await h.wait_gone(NODE, "Secret", "dbpass")


async def test_an_old_record_gains_its_secrets_key(with_key: Harness, ca: CA) -> None:
    h = with_key
    await h.record(with_key=False)
    await h.start()

    async def completed() -> str | None:
        h.check()
        kv, _ = await h.admin.etcd.get(h.keys.cluster())
        assert kv is not None
        value = decode(h.keys.cluster(), kv.value)
        return str(value.get("secretsKey") or "") or None
    assert await until(completed, 15, "the record's secretsKey") == \
        secrets_key.public_of(ca.key)
    found = await h.admin.etcd.get(h.keys.cluster())
    record = ClusterRecord.from_value("k", decode("k", found[0].value))  # type: ignore[union-attr]
    assert record.id == "deliver" and record.ca_cert == ca.cert_pem


async def test_without_a_ca_key_configs_are_delivered_and_secrets_are_not(
        without_key: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h = without_key
    await h.record(with_key=False)
    await h.secret("dbpass", VALUE, "uid-db")
    await h.config("webconf", b"listen 80;\n", "uid-conf")
    await h.node(NODE, public_text(new_private_key()))
    await h.start()
    await h.task_on(NODE)
    await h.task_on(NODE)
    await h.wait_copy(NODE, "Config", "webconf")
    assert (await h.copy(NODE, "Secret", "dbpass"))[0] is None
    await until(lambda: "cannot be delivered" in caplog.text, 10, "the undeliverable secret")
    told = [r for r in caplog.records if "cannot be delivered" in r.getMessage()]
    assert len(told) == 1 and "default/dbpass" in told[0].getMessage()
    assert VALUE.decode() not in caplog.text
    kv, _ = await h.admin.etcd.get(h.keys.cluster())  # no key: the record is left alone
    assert kv is not None and "secretsKey" not in decode("k", kv.value)


async def test_copies_in_the_views_cache_are_marks_not_values(with_key: Harness) -> None:
    h = with_key
    await h.record(with_key=True)
    await h.secret("dbpass", VALUE, "uid-db")
    await h.config("webconf", b"x" * 1000, "uid-conf")
    await h.node(NODE, public_text(new_private_key()))
    await h.start()
    await h.task_on(NODE)
    await h.wait_copy(NODE, "Config", "webconf")
    await h.wait_copy(NODE, "Secret", "dbpass")
    view = h.controller.view
    await until(lambda: len(view.copy_keys_on(NODE)) == 2, 10, "the view's copy index")
    cache = h.controller.ctx.cache(view.agents_prefix)
    marks = [cache[k] for k in view.copy_keys_on(NODE)]
    assert sorted(m.uid for m in marks) == ["uid-conf", "uid-db"]
    assert all(len(repr(m)) < 200 for m in marks)


class SecretsHollowCluster(HollowCluster):
    """The hollow control plane plus the secrets controller, holding the cluster's key."""

    def __init__(self, *args: Any, cluster_key: ClusterSecretsKey, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cluster_key = cluster_key

    def make_controllers(self, ctl_store: store.ResourceStore,
                         view: ClusterView) -> list[Controller]:
        return [*super().make_controllers(ctl_store, view),
                SecretsController(ctl_store, view, self.cluster_key)]


async def test_a_hollow_agents_task_runs_once_its_copies_open(
        etcd_cluster: EtcdCluster, prefix: str, ca: CA, ca_key_file: Path) -> None:
    """End to end with the agent: its heartbeat's key, the controller's copies, the
    task waiting for them (preparing) until they are there and open."""
    h = Harness(etcd_cluster, prefix, ca, None)  # for its writes only
    try:
        await h.record(with_key=True)
        await h.secret("dbpass", VALUE, "uid-db")
        await h.config("webconf", b"listen 80;\n", "uid-conf")
        async with SecretsHollowCluster(etcd_cluster.endpoints, prefix,
                                        tls=etcd_cluster.client_tls,
                                        cluster_key=secrets_key.load(ca_key_file)) as c:
            await c.add_group("deliver", 1)
            svc = service("web", 1)
            svc["spec"]["template"].update(secrets=[{"source": "dbpass", "mode": 0o400}],
                                           configs=[{"source": "webconf",
                                                     "target": "/etc/web.conf"}])
            await c.apply(svc)

            async def runs() -> bool:
                c.check_controllers()
                return len(running(await c.tasks("web"))) == 1
            await until(runs, 20, "the task running with its secret")
            doc, _ = await h.copy("deliver-0", "Secret", "dbpass")
            assert doc is not None and doc["uid"] == "uid-db"
            await c.scale("web", 0)
            await h.wait_gone("deliver-0", "Secret", "dbpass")
            await h.wait_gone("deliver-0", "Config", "webconf")
    finally:
        await h.stop()
