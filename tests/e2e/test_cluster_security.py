"""Who gets nothing from the TLS cluster, end to end (the harness's default: ``lab.cluster.tls``).

A host of the cluster with no certificate, and clients presenting a forged
certificate (self-signed, the admin's common name), an expired one (the
cluster CA's, one second of life) or one from another CA (whose CA even bears
the cluster CA's name) are refused by etcd: the CLI says why in one line,
exits 1, and nothing is written. A node's logs server gives them, and an
anonymous client, not one byte of HTTP, while the admin identity reads.

Every manager serves the join endpoint (``lab.cluster.join_endpoint``): a host
with no token or a guessed one gets no certificate and registers nothing; a
rotated token is refused while the new one joins, and a node that joined
before restarts from its state dir with no token (``kubeless join
--state-dir``); the manager's endpoint makes each joining node's etcd user, and
none for a refused one. Joining hosts run in the root namespace with the process
runtime (the harness's namespaces are all taken by its own hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubeless import store
from kubeless.cluster import access, pki
from kubeless.cluster.pki import CA, Profile
from kubeless.store.auth import Auth
from lab.cluster import tls as lab_tls
from lab.cluster import waits
from lab.cluster.harness import Cluster
from lab.waiting import wait_until
from tests.e2e.clients import bare_env, kubeless
from tests.support.cli_errors import assert_one_error_line
from tests.support.logs_probe import exchange

# Each refused identity, and what the CLI says of it after "refused the client certificate".
HOSTILE = {
    "forged": "does not trust the CA that signed it (CN=admin:lab)",
    "expired": "it expired at",
    "another CA": "does not trust the CA that signed it",
}


@pytest.fixture(scope="module")
def hostile(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A directory per hostile identity, each holding the REAL cluster CA as ``ca.pem``
    (what anyone can fetch), so only the client certificate is wrong."""
    tls = cluster.tls
    assert tls is not None, "the e2e cluster runs with TLS"
    root = tmp_path_factory.mktemp("hostile")
    real_ca = tls.ca.cert_pem
    key, cert = self_signed(lab_tls.ADMIN)
    pki.write_cert_dir(root / "forged", real_ca, cert, key)
    expired = tls.identity(lab_tls.ADMIN, root / "expired", lifetime=1.0)
    impostor = CA.make(pki.cert_info(real_ca).common_name)  # another CA, the same name
    key, cert = impostor.issue(Profile(lab_tls.ADMIN))
    pki.write_cert_dir(root / "another CA", real_ca, cert, key)
    wait_until(lambda: pki.cert_info((expired / "cert.pem").read_text()).expired(), 10,
               "the one-second certificate expired")
    return {"forged": root / "forged", "expired": expired, "another CA": root / "another CA"}


def self_signed(common_name: str) -> tuple[str, str]:
    """A forged client certificate: a leaf that signs itself, naming ``common_name``
    (key PEM, certificate PEM)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = pki.new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(key, hashes.SHA256()))
    return pki.key_pem(key), cert.public_bytes(serialization.Encoding.PEM).decode()


async def nothing_written(rs: store.ResourceStore, name: str) -> bool:
    return await rs.get("Service", name) is None


async def test_a_host_without_a_certificate_cannot_reach_etcd(
        cluster: Cluster, rs: store.ResourceStore, tmp_path: Path) -> None:
    assert cluster.tls is not None
    only_ca = tmp_path / "ca.pem"
    only_ca.write_text(cluster.tls.ca.cert_pem)  # the CA is public
    need = "requires a client certificate"
    assert_one_error_line(await asyncio.to_thread(kubeless, cluster, "w1", "get", "nodes",
                                           cacert=only_ca), need)
    assert_one_error_line(await asyncio.to_thread(
        kubeless, cluster, "w1", "service", "create", "-d", "--name", "intruder",
        "kubeless-demo:latest", cacert=only_ca), need)
    assert_one_error_line(await asyncio.to_thread(kubeless, cluster, "w1", "get", "nodes"),
                   "need the CA certificate")  # nothing at all: https needs a CA first
    assert await nothing_written(rs, "intruder")


@pytest.mark.parametrize("which", list(HOSTILE))
async def test_etcd_refuses_a_hostile_certificate(cluster: Cluster, rs: store.ResourceStore,
                                                  hostile: dict[str, Path], which: str) -> None:
    identity = hostile[which]
    said = ("refused the client certificate", HOSTILE[which])
    assert_one_error_line(await asyncio.to_thread(kubeless, cluster, None, "get", "nodes",
                                           cert_path=identity), *said)
    name = f"hostile-{which.replace(' ', '-').lower()}"
    assert_one_error_line(await asyncio.to_thread(
        kubeless, cluster, None, "service", "create", "-d", "--name", name, "kubeless-demo:latest",
        cert_path=identity), *said)
    assert await nothing_written(rs, name)


def _context(ca: Path, identity: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if identity is not None:
        context.load_cert_chain(str(identity / "cert.pem"), str(identity / "key.pem"))
    return context


async def test_a_nodes_logs_server_refuses_all_but_cluster_identities(
        cluster: Cluster, rs: store.ResourceStore, hostile: dict[str, Path]) -> None:
    assert cluster.tls is not None
    ca, admin = cluster.tls.admin / "ca.pem", cluster.tls.admin
    for node in ("w1", "m2"):
        kv, _ = await rs.etcd.get(rs.keys.heartbeat(node))
        assert kv is not None
        beat = json.loads(kv.value)
        assert beat["logsTLS"] is True, f"{node} serves logs over plain HTTP"
        address, port = cluster.hosts[node].address, int(beat["logsPort"])
        got = {case: await asyncio.to_thread(exchange, address, port, _context(ca, ident))
               for case, ident in [("anonymous", None), *hostile.items()]}
        assert got == dict.fromkeys(got, b""), f"{node} answered {got}"
        assert b"HTTP" not in await asyncio.to_thread(exchange, address, port, None)
        member = await asyncio.to_thread(exchange, address, port, _context(ca, admin))
        assert member.startswith(b"HTTP/1.1 404 "), member[:80]  # the admin is let in


# -- the join endpoint (every manager's, port 2377) -----------------------------------

def joining(cluster: Cluster, token: str | None, manager: str, name: str, state: Path,
            *extra: str) -> list[str]:
    """``kubeless join`` of a host named ``name`` through ``manager``'s join endpoint (a
    node with the process runtime and no DNS: the root namespace hosts it)."""
    token_args = ("--token", token) if token is not None else ()
    return [sys.executable, "-m", "kubeless_cli.main", "join", *token_args,
            cluster.hosts[manager].join_address, "--node-name", name, "--state-dir", str(state),
            "--runtime", "process", "--advertise-addr", cluster.gateway, "--dns-addr", "none",
            *extra]


async def test_a_host_without_a_token_gets_no_certificate(
        cluster: Cluster, rs: store.ResourceStore, tmp_path: Path) -> None:
    from kubeless.cluster import tokens
    from kubeless.cluster.ca import cert_der

    assert cluster.tls is not None
    state = tmp_path / "intruder"
    none = await asyncio.to_thread(cluster.run, "w1", *joining(cluster, None, "m1", "intruder",
                                                                state), env=bare_env())
    assert_one_error_line(none, "no --token given")
    forged = tokens.new_token(tokens.ca_digest(cert_der(cluster.tls.ca.cert_pem)))
    guessed = await asyncio.to_thread(cluster.run, "w1", *joining(
        cluster, str(forged), "m2", "intruder", state), env=bare_env())
    assert_one_error_line(guessed, "refused")
    assert not (state / "tls").exists() and not (state / "node.yaml").exists()
    assert await rs.get("Node", "intruder") is None


async def test_join_token_names_every_managers_join_endpoint(cluster: Cluster,
                                                             tmp_path: Path) -> None:
    """Each manager's agent advertises its join endpoint (``--join-port``), so
    ``join-token`` prints the command for each, with the current token."""
    assert cluster.tls is not None
    printed = await asyncio.to_thread(kubeless, cluster, None, "join-token", "worker",
                                      "--state-dir", str(tmp_path / "none"),
                                      cert_path=cluster.tls.admin)
    assert printed.returncode == 0, printed.stderr
    for h in cluster.managers:
        assert f"--token {cluster.tokens['worker']} {h.join_address}" in printed.stdout, \
            printed.stdout


async def test_token_rotation_keeps_joined_nodes_and_refuses_the_old_token(
        cluster: Cluster, rs: store.ResourceStore, tmp_path: Path) -> None:
    from kubeless.cluster.errors import JoinFailed
    from kubeless.cluster.join_client import NodeRequest, join_through

    assert cluster.tls is not None
    old = cluster.tokens["worker"]
    j1_state = tmp_path / "j1"
    log = (tmp_path / "j1.log").open("w")
    j1 = subprocess.Popen(joining(cluster, old, "m1", "j1", j1_state), env=bare_env(),
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        await waits.until(lambda: _ready(rs, "j1"), 60, "j1 joined and ready")
        assert (j1_state / "tls" / "cert.pem").is_file()  # its own identity, from m1
        assert await Auth(rs.etcd).user_roles("node:j1") == ["node:j1"]  # m1 let it in
        rotated = await asyncio.to_thread(kubeless, cluster, None, "join-token", "worker",
                                          "--rotate", "-q", "--state-dir", str(tmp_path / "no"),
                                          cert_path=cluster.tls.admin)
        assert rotated.returncode == 0, rotated.stderr
        new = cluster.tokens["worker"] = rotated.stdout.strip()
        assert new != old

        j2_state = tmp_path / "j2"
        refused = await asyncio.to_thread(subprocess.run, joining(
            cluster, old, "m2", "j2", j2_state), env=bare_env(), capture_output=True,
            text=True, timeout=60)
        assert_one_error_line(refused, "refused")
        assert not (j2_state / "tls").exists() and await rs.get("Node", "j2") is None
        request = NodeRequest("j3", cluster.gateway, "process", {})
        joined = await asyncio.to_thread(join_through, cluster.hosts["m3"].join_address, new,
                                         request)
        assert (joined.node_id, joined.role) == ("j3", "worker")
        assert await Auth(rs.etcd).user_roles("node:j3") == ["node:j3"]
        assert await Auth(rs.etcd).user_roles("node:j2") is None  # refused: no user either
        with pytest.raises(JoinFailed):
            await asyncio.to_thread(join_through, cluster.hosts["m3"].join_address, old,
                                    NodeRequest("j4", cluster.gateway, "process", {}))

        before = await _heartbeat_lease(rs, "j1")
        j1.terminate()  # j1 restarts from its state dir, no token: still a member
        assert j1.wait(30) == 0
        j1 = subprocess.Popen([sys.executable, "-m", "kubeless_cli.main", "join",
                               "--state-dir", str(j1_state)], env=bare_env(), stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
        await waits.until(lambda: _ready_again(rs, "j1", before), 60,
                          "j1 ready with a new heartbeat after its restart")
    finally:
        j1.terminate()
        await asyncio.to_thread(j1.wait, 30)
        log.close()
        for name in ("j1", "j3"):  # as `node rm` does: the Node, the users
            with contextlib.suppress(store.NotFound):
                await rs.delete("Node", name)
            await access.remove_node(rs.etcd, name)


async def _ready(rs: store.ResourceStore, node: str) -> bool:
    return node in await waits.ready_nodes(rs)


async def _heartbeat_lease(rs: store.ResourceStore, node: str) -> int:
    kv, _ = await rs.etcd.get(rs.keys.heartbeat(node))
    assert kv is not None, f"{node} has no heartbeat"
    return kv.lease


async def _ready_again(rs: store.ResourceStore, node: str, old_lease: int) -> bool:
    """Ready, its heartbeat on a lease of the new process (not ``stoppedAt``)."""
    kv, _ = await rs.etcd.get(rs.keys.heartbeat(node))
    return (kv is not None and kv.lease != old_lease and "stoppedAt" not in json.loads(kv.value)
            and await _ready(rs, node))


async def _set_cert_expiry(rs: store.ResourceStore, text: str) -> str:
    """Put ``certExpiry`` in the cluster record (a transaction on what was read); the old."""
    from kubeless.store import Compare, Put
    from kubeless.store.codec import decode, encode_json

    key = rs.keys.cluster()
    kv, _ = await rs.etcd.get(key)
    assert kv is not None, "the harness writes the cluster record"
    record = decode(key, kv.value)
    old = str(record.get("certExpiry", "2160h0m0s"))
    done = await rs.etcd.txn([Compare(key, "mod", "==", kv.mod_revision)],
                             [Put(key, encode_json({**record, "certExpiry": text}))])
    assert done.succeeded
    return old


def _serial(state: Path) -> int:
    return pki.load_cert((state / "tls" / "cert.pem").read_text()).serial_number


async def test_short_certificates_renew_while_a_joined_node_runs(
        cluster: Cluster, rs: store.ResourceStore, tmp_path: Path) -> None:
    """Certificates of 12 s (the record's certExpiry, read by every signer): a node that
    joined through a manager renews its identity at the managers' join endpoints (found in
    their agents' heartbeats, ``--join-port``) again and again, with no restart: it stays
    Ready on one heartbeat lease and its task keeps its process; etcd refuses the first
    certificate once it has expired."""
    old_expiry = await _set_cert_expiry(rs, "12s")
    state, name = tmp_path / "jr", "jr"
    log = (tmp_path / "jr.log").open("w")
    jr = subprocess.Popen(joining(cluster, cluster.tokens["worker"], "m2", name, state),
                          env=bare_env(), stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)
    try:
        await waits.until(lambda: _ready(rs, name), 60, "jr joined and ready")
        first = {f: (state / "tls" / f).read_text() for f in ("ca.pem", "cert.pem", "key.pem")}
        lease = await _heartbeat_lease(rs, name)
        svc = waits.service("renewing", 1, constraints=[f"node.id=={name}"])
        svc["spec"]["template"]["command"] = ["sleep", "600"]
        await waits.apply(rs, svc)
        tasks = await waits.wait_converged(rs, "renewing", 1, timeout=60)
        process = tasks[0]["status"].get("containerId")
        serials = {_serial(state)}

        async def renewed_twice() -> bool:
            serials.add(_serial(state))
            return len(serials) >= 3
        await waits.until(renewed_twice, 60, "jr's certificate renewed twice")
        assert await _heartbeat_lease(rs, name) == lease, "the node kept its heartbeat lease"
        assert await _ready(rs, name)
        now = waits.running(await waits.tasks(rs, "renewing"))
        assert [t["status"].get("containerId") for t in now] == [process], "no restart"
        expired = tmp_path / "expired"  # the first identity, kept aside
        expired.mkdir()
        for f, text in first.items():
            (expired / f).write_text(text)
        ends = pki.load_cert(first["cert.pem"]).not_valid_after_utc.timestamp()
        await waits.until(lambda: time.time() > ends + 1, 30, "the first certificate expired")
        said = await asyncio.to_thread(kubeless, cluster, None, "get", "nodes",
                                       cert_path=expired)
        assert_one_error_line(said, "expired")
    finally:
        await _set_cert_expiry(rs, old_expiry)
        jr.terminate()
        await asyncio.to_thread(jr.wait, 30)
        log.close()
        with contextlib.suppress(store.NotFound):
            await rs.delete("Node", name)
        await access.remove_node(rs.etcd, name)
