"""``create_cluster`` with a CA made beforehand (``bootstrap.new_cluster_ca``, as ``up``
makes it before its etcd): the record holds that CA and its id, and a cluster that
cannot be made leaves it in place (etcd's certificates come from it); ``init``'s
refused ``create_cluster`` leaves no CA behind, as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeless import store
from kubeless.cluster import ClusterExists, bootstrap, secrets_key
from kubeless.cluster.pki import CA
from kubeless.cluster.state import StateDir
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration


def node(name: str) -> dict[str, object]:
    return {"apiVersion": "kubeless.io/v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"role": "manager", "availability": "active"}}


async def test_a_cluster_made_with_a_given_ca_keeps_it_whatever_happens(
        rstore: store.ResourceStore, tmp_path: Path) -> None:
    state = StateDir(tmp_path / "up")
    ca = bootstrap.new_cluster_ca(state)
    record, tokens = await bootstrap.create_cluster(rstore, state, node("m1"), "etcd", ca=ca)
    assert (record.id, record.ca_cert) == (ca.cluster_id, ca.cert_pem)
    assert (state.path / "ca.crt").read_text() == ca.cert_pem and set(tokens) == {
        "worker", "manager"}

    again = StateDir(tmp_path / "again")
    other = bootstrap.new_cluster_ca(again)
    with pytest.raises(ClusterExists):
        await bootstrap.create_cluster(rstore, again, node("m2"), "etcd", ca=other)
    assert (again.path / "ca.key").is_file(), "a CA made beforehand is kept"
    assert (await bootstrap.read_record(rstore)) is not None


async def test_a_refused_init_leaves_no_ca_behind(
        rstore: store.ResourceStore, tmp_path: Path) -> None:
    await bootstrap.create_cluster(rstore, StateDir(tmp_path / "first"), node("m1"), "etcd")
    second = StateDir(tmp_path / "second")
    second.ensure()
    with pytest.raises(ClusterExists):
        await bootstrap.create_cluster(rstore, second, node("m2"), "etcd")
    assert not (second.path / "ca.key").exists()


async def test_the_record_holds_the_secrets_key_of_the_ca_key(
        etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    """From the state dir's ca.key (init, up), from a CA key given (the lab harness), and
    none from a bare certificate (the managers' controllers add it later)."""
    made = StateDir(tmp_path / "made")
    given = CA.make("kubeless test CA given")
    cases = [(made, None, lambda: secrets_key.load(made.path / "ca.key").public),
             (StateDir(tmp_path / "given"), bootstrap.ClusterCA("c2", given.cert_pem, given.key),
              lambda: secrets_key.public_of(given.key)),
             (StateDir(tmp_path / "bare"), bootstrap.ClusterCA("c3", given.cert_pem),
              lambda: "")]
    for i, (state, ca, expected) in enumerate(cases):
        rstore = etcd_cluster.connect(f"/kubeless-test-record-key-{id(state)}-{i}")
        try:
            record, _ = await bootstrap.create_cluster(rstore, state, node("m1"), "etcd", ca=ca)
            found = await bootstrap.read_record(rstore)
        finally:
            await rstore.etcd.close()
        assert found is not None and found.record.secrets_key == record.secrets_key
        assert record.secrets_key == expected()
