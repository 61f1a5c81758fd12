"""TLS to a real etcd that verifies client certificates: the store, the CLI, the daemons.

One etcd for the module (conftest's ``tls_etcd``: a CA in its temp dir, https://
client and peer URLs, ``--client-cert-auth``); its certificates name 127.0.0.1
only, so ``https://localhost:PORT`` is a wrong host. Each refusal is one
``error:`` line and exit 1.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubeless import store
from kubeless.cluster import pki
from kubeless.store import Put, TlsConfig
from lab.waiting import until
from tests.support.cli import tls_flags as flags
from tests.support.cli_errors import assert_one_error_line
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def admin(tls_etcd: EtcdCluster) -> Path:
    return tls_etcd.identity("admin:tester")


def cli(endpoints: str, prefix: str, *args: str,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "KUBELESS_CERT_PATH"}
    full.update({"KUBELESS_ENDPOINTS": endpoints, "KUBELESS_PREFIX": prefix, **(env or {})})
    return subprocess.run([sys.executable, "-m", "kubeless_cli.main", *args], capture_output=True,
                          text=True, env=full, timeout=30)


SERVICE = """apiVersion: kubeless.io/v1
kind: Service
metadata: {name: web}
spec: {replicas: 1, template: {image: web:1}}
"""


async def test_the_store_reads_and_writes_over_tls(tls_etcd: EtcdCluster, admin: Path,
                                                   prefix: str) -> None:
    rstore = store.connect(tls_etcd.endpoints, prefix,
                           tls=TlsConfig(admin / "ca.pem", admin / "cert.pem", admin / "key.pem"))
    try:
        result = await rstore.etcd.txn([], [Put(f"{prefix}/k", b"v")])
        kv, _ = await rstore.etcd.get(f"{prefix}/k")
        assert result.succeeded and kv is not None and kv.value == b"v"
    finally:
        await rstore.etcd.close()


def test_the_cli_over_tls_with_flags_and_with_a_cert_path(tls_etcd: EtcdCluster, admin: Path,
                                                          prefix: str, tmp_path: Path) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SERVICE)
    applied = cli(tls_etcd.endpoints, prefix, *flags(admin), "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    got = cli(tls_etcd.endpoints, prefix, "get", "services", "-o", "name",
              env={"KUBELESS_CERT_PATH": str(admin)})
    assert got.returncode == 0 and got.stdout.split() == ["service/web"], got.stderr
    # a flag replaces its file from the cert path: a CA that did not sign etcd's is refused
    stranger = pki.issue_identity(pki.CA.make("stranger"), tmp_path / "s", pki.Profile("admin:s"))
    mixed = cli(tls_etcd.endpoints, prefix, "--cacert", str(stranger / "ca.pem"), "get",
                "services", env={"KUBELESS_CERT_PATH": str(admin)})
    assert_one_error_line(mixed, "unknown CA")


def refusals(tls_etcd: EtcdCluster, admin: Path, tmp_path: Path) -> dict[str, tuple[list[str], str, str]]:
    """Name -> (global flags, endpoints, what the error line says)."""
    stranger_ca = pki.CA.make("stranger")
    stranger = pki.issue_identity(stranger_ca, tmp_path / "stranger", pki.Profile("admin:s"))
    port = tls_etcd.members[0].client_port
    ours = tls_etcd.endpoints
    return {
        "unknown CA": (["--cacert", str(stranger / "ca.pem"), *flags(admin)[2:]], ours,
                       f"TLS: etcd's certificate at {ours} is not signed by the CA in "
                       f"{stranger / 'ca.pem'} (unknown CA)"),
        "wrong host": (flags(admin), f"https://localhost:{port}",
                       f"TLS: etcd's certificate at https://localhost:{port} is not valid for "
                       f"the host localhost"),
        "no client certificate": (["--cacert", str(admin / "ca.pem")], ours,
                                  f"TLS: etcd at {ours} requires a client certificate"),
        "client certificate from another CA": (
            ["--cacert", str(admin / "ca.pem"), "--cert", str(stranger / "cert.pem"),
             "--key", str(stranger / "key.pem")], ours,
            "does not trust the CA that signed it (CN=stranger)"),
        "missing file": (["--cacert", str(admin / "ca.pem"), "--cert", str(tmp_path / "no.pem"),
                          "--key", str(admin / "key.pem")], ours,
                         f"cannot read the client certificate {tmp_path / 'no.pem'}: "
                         "No such file or directory"),
        "https without a CA": ([], ours, "https:// etcd endpoints need the CA certificate"),
        "files for http": (flags(admin), ours.replace("https://", "http://"),
                           "but the etcd endpoints are http://"),
    }


CASES = ["unknown CA", "wrong host", "no client certificate",
         "client certificate from another CA", "missing file", "https without a CA",
         "files for http"]


@pytest.mark.parametrize("case", CASES)
def test_each_tls_failure_is_one_line_and_exit_1(tls_etcd: EtcdCluster, admin: Path, prefix: str,
                                                 tmp_path: Path, case: str) -> None:
    global_flags, endpoints, says = refusals(tls_etcd, admin, tmp_path)[case]
    res = cli(endpoints, prefix, *global_flags, "get", "services")
    assert res.returncode == 1
    assert_one_error_line(res, says)


async def test_a_certificate_of_seconds_works_then_is_refused_expired(
        tls_etcd: EtcdCluster, prefix: str, tmp_path: Path) -> None:
    assert tls_etcd.ca is not None
    short = pki.issue_identity(tls_etcd.ca, tmp_path / "short", pki.Profile("admin:brief",
                                                                             lifetime=3))
    expiry = pki.cert_info((short / "cert.pem").read_text()).not_after

    def get() -> subprocess.CompletedProcess[str]:
        return cli(tls_etcd.endpoints, prefix, *flags(short), "get", "services")
    first = await asyncio.to_thread(get)
    if datetime.datetime.now(datetime.timezone.utc) < expiry:  # a loaded machine may be late
        assert first.returncode == 0, first.stderr
    await until(lambda: datetime.datetime.now(datetime.timezone.utc) >= expiry, 10,
                "the certificate expires")
    res = await asyncio.to_thread(get)
    assert_one_error_line(res, f"refused the client certificate {short / 'cert.pem'}: it "
                               f"expired at {expiry.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    assert res.returncode == 1


def daemon(module: str, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "KUBELESS_CERT_PATH"}
    return subprocess.Popen([sys.executable, "-m", module, *args, "--log-level", "WARNING"],
                            env=env, start_new_session=True)


async def test_agent_and_controllers_over_tls(tls_etcd: EtcdCluster, admin: Path, prefix: str,
                                              procs: list[subprocess.Popen[bytes]]) -> None:
    """An agent registers and keeps its heartbeat; the controllers keep their manager key."""
    assert tls_etcd.ca is not None
    node = tls_etcd.identity("node:tls-n1")
    manager = tls_etcd.identity("manager:tls-m1")
    common = ["--endpoints", tls_etcd.endpoints, "--prefix", prefix]
    procs.append(daemon("kubeless_agent", *common, *flags(node), "--runtime", "fake",
                        "--node-name", "tls-n1", "--no-mesh", "--dns-addr", "none",
                        "--heartbeat-ttl", "2"))
    procs.append(daemon("controllers", *common, *flags(manager), "--identity", "tls-m1",
                        "--lease-ttl", "2"))
    rstore = store.connect(tls_etcd.endpoints, prefix,
                           tls=TlsConfig(admin / "ca.pem", admin / "cert.pem", admin / "key.pem"))
    try:
        async def present(key: str) -> bool:
            kv, _ = await rstore.etcd.get(key)
            return kv is not None and kv.lease != 0
        await until(lambda: present(rstore.keys.heartbeat("tls-n1")), 30, "the agent's heartbeat")
        await until(lambda: present(rstore.keys.manager("tls-m1")), 30, "the manager key")
    finally:
        await rstore.etcd.close()
    assert all(p.poll() is None for p in procs)


def test_an_agent_whose_certificate_etcd_refuses_exits_with_one_line(
        tls_etcd: EtcdCluster, prefix: str, tmp_path: Path) -> None:
    """Waiting does not fix a refused certificate: the agent gives up (TLS_ATTEMPTS in a
    row) with the reason, instead of retrying it forever; nothing is registered."""
    assert tls_etcd.ca is not None
    foreign = pki.CA.make("another cluster's CA")
    ident = pki.issue_identity(foreign, tmp_path / "foreign", pki.Profile("node:tls-n2"))
    (ident / "ca.pem").write_text(tls_etcd.ca.cert_pem)  # trusts etcd; etcd does not trust it
    env = {k: v for k, v in os.environ.items() if k != "KUBELESS_CERT_PATH"}
    res = subprocess.run([sys.executable, "-m", "kubeless_agent", "--endpoints",
                          tls_etcd.endpoints, "--prefix", prefix, *flags(ident), "--runtime",
                          "fake", "--node-name", "tls-n2", "--no-mesh", "--dns-addr", "none",
                          "--log-level", "ERROR"], capture_output=True, text=True, env=env,
                         timeout=60)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert lines[0].startswith("kubeless-agent: TLS: etcd at ") and "certificate" in lines[0]
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("module", ["kubeless_agent", "controllers"])
def test_daemons_refuse_tls_they_cannot_use_at_start(tls_etcd: EtcdCluster, tmp_path: Path,
                                                     module: str) -> None:
    res = subprocess.run([sys.executable, "-m", module, "--endpoints", tls_etcd.endpoints,
                          "--cacert", str(tmp_path / "none.pem")], capture_output=True,
                         text=True, timeout=30,
                         env={k: v for k, v in os.environ.items() if k != "KUBELESS_CERT_PATH"})
    assert res.returncode != 0
    assert f"cannot read the CA certificate {tmp_path / 'none.pem'}" in res.stderr
    assert "Traceback" not in res.stderr


async def test_two_members_with_peer_tls_behind_one_channel(prefix: str) -> None:
    """Members verify each other (peer TLS); one channel over both verifies each member's
    certificate for the host the endpoints share, and reads what the other member wrote."""
    cluster = EtcdCluster(2, tls=True).start()
    try:
        ident = cluster.client_identity("admin:two")  # root: its etcd user made
        assert ident is not None
        config = TlsConfig(ident / "ca.pem", ident / "cert.pem", ident / "key.pem")
        assert "--peer-client-cert-auth" in cluster._cmd(cluster.members[0])
        both = store.connect(cluster.endpoints, prefix, tls=config)
        second = store.connect(cluster.members[1].client_url, prefix, tls=config)
        try:
            assert (await both.etcd.txn([], [Put(f"{prefix}/k", b"v")])).succeeded
            kv, _ = await second.etcd.get(f"{prefix}/k")
            assert kv is not None and kv.value == b"v"
        finally:
            await both.etcd.close()
            await second.etcd.close()
    finally:
        cluster.stop()
