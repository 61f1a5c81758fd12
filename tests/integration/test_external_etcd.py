"""An etcd the user runs, secured with ``kubeless certs``, then ``init``, a join through
the endpoint and ``join-token`` from an admin's host; and ``--insecure`` for plain etcd.

The external etcd is a real member started from the files ``kubeless certs etcd``
wrote (``Member`` with ``EtcdTls``), its client URL https:// with client-cert-auth;
every kubeless process runs as the user runs it and is ended by its pid.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubeless import store
from kubeless.cluster import StateDir, StateDirError, bootstrap
from kubeless.cluster.etcd_server import QUIET, EtcdTls
from kubeless.cluster.pki import cert_info
from tests.integration.test_init_join import TOKEN, Cli
from tests.integration.test_join_endpoint import identity, serving
from tests.support.cli_errors import assert_one_error_line
from tests.support.etcd_server import EtcdCluster, Member, free_port

pytestmark = pytest.mark.integration


def certs(cli: Cli, *args: str) -> str:
    res = cli.run("certs", *args, with_cluster=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture
def external(tmp_path: Path) -> Iterator[tuple[Member, Path]]:
    """The user's etcd, started with the certificates `kubeless certs` made from the
    cluster CA in <tmp>/m1: (the member, that state dir)."""
    state = tmp_path / "m1"
    plain = Cli("", "", tmp_path)
    certs(plain, "ca", "--state-dir", str(state))
    out = certs(plain, "etcd", "--state-dir", str(state), "--hosts", "127.0.0.1")
    pki = state / "etcd-pki"
    for flag in ("--cert-file", "--trusted-ca-file", "--client-cert-auth", "--peer-cert-file",
                 "--peer-client-cert-auth"):
        assert flag in out
    member = Member("ext0", free_port(), free_port(), tmp_path / "etcd-data",
                    tmp_path / "etcd.log", tls=EtcdTls.in_dir(pki))
    member.spawn(member.command(f"ext0={member.peer_url}",
                                ("--initial-cluster-state", "new", *QUIET)),
                 die_with_parent=True)
    try:
        member.wait_healthy(30)
        yield member, state
    finally:
        member.stop()


def test_init_on_an_external_tls_etcd_and_join_token_from_an_admin_host(
        external: tuple[Member, Path], tmp_path: Path) -> None:
    member, m1 = external
    admin = tmp_path / "admin"
    out = certs(Cli("", "", tmp_path), "admin", "ops", "--state-dir", str(m1), "--out",
                str(admin))
    assert f"KUBELESS_CERT_PATH={admin}" in out
    ca_pem = (m1 / "ca.crt").read_text()
    assert identity(admin, ca_pem) == "admin:ops"
    cli = Cli(member.client_url, "/ext", tmp_path, admin)
    try:
        port = free_port()
        proc = cli.start("init", "--runtime", "fake", "--node-name", "m1", "--state-dir",
                         str(m1), "--join-port", str(port))
        cli.wait_ready("m1", proc)
        cli.wait_for("m1's join endpoint", lambda: serving(port), proc)
        banner = proc[1].read_text()
        worker, _ = TOKEN.findall(banner)[:2]
        assert "(prefix /ext; TLS)" in banner and "WARNING: " not in banner
        assert f"kubeless join --token {worker} 127.0.0.1:{port}" in banner
        assert f"{member.client_url} --insecure" not in banner
        record = yaml.safe_load(cli.values(cli.keys().cluster())[cli.keys().cluster()])
        assert record["caCertificate"] == ca_pem, "the cluster is made with the CA etcd trusts"
        assert identity(m1 / "tls", ca_pem) == "node:m1"
        assert identity(m1 / "manager-tls", ca_pem) == "manager:m1"
        assert yaml.safe_load((m1 / "node.yaml").read_text())["insecure"] is False

        # an admin's host: no state dir, only the admin identity and the endpoints
        elsewhere = ("--endpoints", member.client_url, "--prefix", "/ext", "join-token",
                     "worker", "--state-dir", str(tmp_path / "admin-host"))
        command = f"kubeless join --token {worker} 127.0.0.1:{port}"
        cli.wait_for("the join endpoint listed in etcd",
                     lambda: command in cli.run(*elsewhere).stdout, proc)
        printed = cli.run(*elsewhere).stdout
        assert member.client_url not in printed, "a host cannot join a TLS etcd directly"
        # in the manager's state dir, no settings: its etcd, prefix and manager identity
        assert command in cli.run("join-token", "worker", "--state-dir", str(m1),
                                  with_cluster=False).stdout

        w1 = tmp_path / "w1"
        joined = cli.start(*shlex.split(command)[1:], "--runtime", "fake", "--node-name", "w1",
                           "--state-dir", str(w1), with_cluster=False)
        cli.wait_ready("w1", joined)
        assert identity(w1 / "tls", ca_pem) == "node:w1"
        assert "127.0.0.1" in cert_info((w1 / "tls" / "cert.pem").read_text()).hosts
        stored = yaml.safe_load((w1 / "node.yaml").read_text())
        assert (stored["endpoints"], stored["insecure"]) == (member.client_url, False)
        assert "WARNING: " not in joined[1].read_text()

        # --rotate from the admin's host: the new token is printed with the endpoint
        rotated = cli.run(*elsewhere, "--rotate")
        assert rotated.returncode == 0, rotated.stderr
        new = TOKEN.findall(rotated.stdout)[0]
        assert new != worker and f"kubeless join --token {new} 127.0.0.1:{port}" in \
            rotated.stdout
        assert cli.run(*elsewhere, "-q").stdout.strip() == new
        refused = cli.run("join", "--token", worker, f"127.0.0.1:{port}", "--runtime", "fake",
                          "--node-name", "w2", "--state-dir", str(tmp_path / "w2"),
                          with_cluster=False)
        assert_one_error_line(refused, "not valid")
        assert not (tmp_path / "w2" / "node.yaml").exists()

        # the worker restarts from its state dir over TLS with its own identity
        assert cli.stop(joined[0]) == 0
        again = cli.start("join", "--state-dir", str(w1), with_cluster=False)
        cli.wait_ready("w1", again)
        assert "WARNING: " not in again[1].read_text()
        for p in (again[0], proc[0]):
            assert cli.stop(p) == 0
    finally:
        cli.close()


def test_init_on_tls_etcd_needs_the_cluster_ca_that_etcd_trusts(
        external: tuple[Member, Path], tmp_path: Path, etcd_cluster: EtcdCluster) -> None:
    member, m1 = external
    plain = Cli("", "", tmp_path)
    certs(plain, "admin", "ops", "--state-dir", str(m1))
    cli = Cli(member.client_url, "/ext", tmp_path, m1 / "admin")
    no_ca = cli.run("init", "--runtime", "fake", "--state-dir", str(tmp_path / "bare"))
    assert_one_error_line(no_ca, "holds no cluster CA", "kubeless certs ca")
    certs(plain, "ca", "--state-dir", str(tmp_path / "other"))
    other = cli.run("init", "--runtime", "fake", "--state-dir", str(tmp_path / "other"))
    assert_one_error_line(other, "is not the cluster CA in", "kubeless certs etcd")
    insecure = cli.run("init", "--insecure", "--runtime", "fake", "--state-dir", str(m1))
    assert_one_error_line(insecure, "drop --insecure")
    assert not cli.values(), "nothing written in etcd"
    assert not (m1 / "node.yaml").exists() and (m1 / "ca.key").exists()


def test_init_and_join_on_plain_etcd_need_insecure_remembered_at_restart(
        plain_etcd: EtcdCluster, prefix: str, tmp_path: Path) -> None:
    cli = Cli(plain_etcd.endpoints, prefix, tmp_path)
    try:
        state = tmp_path / "m1"
        for verb in (("init",), ("join", "--token", "SWMTKN-1-x-y", plain_etcd.endpoints)):
            refused = cli.run(*verb, "--runtime", "fake", "--state-dir", str(state))
            assert_one_error_line(refused, "has no TLS", "https://", "--insecure")
        assert not cli.values(prefix + "/") and not state.exists()

        proc = cli.start("init", "--insecure", "--runtime", "fake", "--node-name", "m1",
                         "--state-dir", str(state), "--join-port", "0")
        cli.wait_ready("m1", proc)
        out = proc[1].read_text()
        assert "WARNING: --insecure: etcd is plain http" in out and "NO TLS" in out
        assert f"{plain_etcd.endpoints} --insecure" in out, "the printed join works as is"
        assert yaml.safe_load((state / "node.yaml").read_text())["insecure"] is True
        assert cli.stop(proc[0]) == 0

        again = cli.start("init", "--state-dir", str(state))  # no --insecure: remembered
        cli.wait_ready("m1", again)
        assert "WARNING: --insecure" in again[1].read_text()
        assert cli.stop(again[0]) == 0
    finally:
        cli.close()


async def test_join_token_falls_back_on_the_state_dir_for_an_older_cluster(
        rstore: store.ResourceStore, tmp_path: Path) -> None:
    node = {"apiVersion": "kubeless.io/v1", "kind": "Node", "metadata": {"name": "m1"},
            "spec": {"role": "manager", "availability": "active"}}
    state = StateDir(tmp_path / "m1")
    _, tokens = await bootstrap.create_cluster(rstore, state, node, "etcd")
    for role, token in tokens.items():
        state.save_token(role, token)
    await rstore.etcd.txn([], [store.Delete(rstore.keys.join_tokens())])  # an older cluster
    found = await bootstrap.read_record(rstore)
    assert found is not None
    assert await bootstrap.current_token(rstore, found, state, "worker") == tokens["worker"]
    with pytest.raises(StateDirError, match="keeps no plain worker token in etcd"):
        await bootstrap.current_token(rstore, found, StateDir(tmp_path / "none"), "worker")
    with pytest.raises(StateDirError, match="no state dir"):
        await bootstrap.current_token(rstore, found, None, "worker")

    _, new = await bootstrap.rotate_token(rstore, "worker", "etcd")  # etcd keeps it again
    found = await bootstrap.read_record(rstore)
    assert found is not None
    assert await bootstrap.current_token(rstore, found, None, "worker") == str(new)
    with pytest.raises(StateDirError, match="keeps no plain manager token"):
        await bootstrap.current_token(rstore, found, None, "manager")
