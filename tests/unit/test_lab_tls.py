"""The multi-host harness's certificates (``lab.cluster.tls.make``), on plain files: who
gets which identity, what etcd's certificates name, and what the harness prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubeless.cluster import pki
from lab.__main__ import exports, join_line
from lab.cluster import tls as lab_tls
from lab.cluster.harness import Cluster, Host


Made = tuple[lab_tls.LabTls, list[Host]]


def hosts(root: Path) -> list[Host]:
    return [Host(name, i, role, f"10.77.9.{10 + i}", f"ns-{name}", f"p-{name}", "", root / name)
            for i, (name, role) in enumerate([("m1", "manager"), ("m2", "manager"),
                                              ("w1", "worker")])]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    root = tmp_path_factory.mktemp("lab")
    hs = hosts(root)
    return lab_tls.make(root, hs), hs


def usages(cert: Path) -> set[x509.ObjectIdentifier]:
    return set(pki.load_cert(cert.read_text()).extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value)


def test_etcd_certificates_name_every_manager_and_the_shared_name(made: Made) -> None:
    tls, _ = made
    for cert in (tls.etcd.server_cert, tls.etcd.peer_cert):
        assert pki.cert_info(cert.read_text()).hosts == ("10.77.9.10", "10.77.9.11",
                                                         "etcd.kubeless")
    assert "--client-cert-auth" in tls.etcd.flags()


@pytest.mark.parametrize("host, directory, common_name, serves", [
    pytest.param("m1", "tls", "node:m1", True, id="a manager's agent"),
    pytest.param("m1", "manager-tls", "manager:m1", False, id="a manager's controllers"),
    pytest.param("w1", "tls", "node:w1", True, id="a worker's agent"),
])
def test_each_party_has_its_identity(made: Made, host: str, directory: str,
                                     common_name: str, serves: bool) -> None:
    tls, hs = made
    h = next(x for x in hs if x.name == host)
    info = pki.cert_info((h.dir / directory / "cert.pem").read_text())
    assert info.common_name == common_name
    assert (ExtendedKeyUsageOID.SERVER_AUTH in usages(h.dir / directory / "cert.pem")) == serves
    if serves:  # the logs server: valid for the host's address
        assert info.hosts == (h.address,)
    assert (h.dir / directory / "ca.pem").read_text() == tls.ca.cert_pem


def test_only_managers_hold_the_ca_and_a_manager_identity(made: Made) -> None:
    _, hs = made
    for h in hs:
        assert (h.dir / "ca.key").exists() == h.manager
        assert (h.dir / "manager-tls").exists() == h.manager
        if h.manager:
            assert (h.dir / "ca.key").stat().st_mode & 0o777 == 0o600


def test_the_admin_identity_is_what_clients_present(made: Made) -> None:
    tls, _ = made
    client = tls.client()
    assert client.cert is not None and client.cacert == tls.admin / "ca.pem"
    assert pki.cert_info(client.cert.read_text()).common_name == "admin:lab"


def test_etcds_users_are_exactly_the_identities_made(made: Made) -> None:
    """The users the harness admits (``identities``) are the common names of every
    certificate ``make`` wrote: no identity without its user, no user without a holder."""
    tls, hs = made
    written = {pki.cert_info(cert.read_text()).common_name
               for cert in [tls.admin / "cert.pem",
                            *(h.dir / d / "cert.pem" for h in hs
                              for d in (lab_tls.NODE_DIR, lab_tls.MANAGER_DIR))]
               if cert.exists()}
    named = [who.common_name for who in lab_tls.identities(hs)]
    assert sorted(named) == sorted(written) == [
        "admin:lab", "manager:m1", "manager:m2", "node:m1", "node:m2", "node:w1"]


def test_what_lab_up_prints(made: Made, tmp_path: Path) -> None:
    tls, _ = made
    cluster = Cluster.__new__(Cluster)  # only what the printing reads
    cluster.hosts = {h.name: h for h in hosts(tmp_path)}
    cluster.tls, cluster.tokens = tls, {"worker": "SWMTKN-1-x-y"}
    text = exports(cluster)
    assert "export KUBELESS_ENDPOINTS=https://10.77.9.10:2379,https://10.77.9.11:2379" in text
    assert f"export KUBELESS_CERT_PATH={tls.admin}" in text
    assert "kubeless join --token SWMTKN-1-x-y 10.77.9.10:2377" in join_line(cluster)
    for h in cluster.hosts.values():
        h.scheme = "http"
    cluster.tls, cluster.tokens = None, {}
    assert "http://10.77.9.10:2379" in exports(cluster) and "unset KUBELESS_CERT_PATH" in \
        exports(cluster)
    assert join_line(cluster) == ""
