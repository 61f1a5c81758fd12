"""The cluster CA and its certificates (kubeless.cluster.pki), and identity names."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubeless.cluster import CAError, identities, pki
from kubeless.cluster.ca import make_root_ca
from kubeless.cluster.identities import Identity, IdentityError

UTC = datetime.timezone.utc


@pytest.fixture(scope="module")
def ca() -> pki.CA:
    return pki.CA.make("test CA")


def test_a_ca_is_ec_p256_self_signed_and_a_ca(ca: pki.CA) -> None:
    info = pki.cert_info(ca.cert_pem)
    assert info.common_name == "test CA" and info.is_ca
    assert ca.cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    ca.cert.verify_directly_issued_by(ca.cert)
    usage = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign


def test_saved_ca_loads_back_with_a_private_key(tmp_path: Path, ca: pki.CA) -> None:
    ca.save(tmp_path)
    assert (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
    again = pki.CA.load(tmp_path)
    assert again.cert == ca.cert and pki.key_pem(again.key) == pki.key_pem(ca.key)


def test_make_root_ca_keeps_its_files_and_returns_the_pem(tmp_path: Path) -> None:
    pem = make_root_ca(tmp_path / "state", "kubeless root CA c1")
    assert (tmp_path / "state" / "ca.crt").read_text() == pem
    assert (tmp_path / "state" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert pki.cert_info(pem).common_name == "kubeless root CA c1"
    assert not [p for p in (tmp_path / "state").iterdir() if p.name.startswith(".")]


def test_loading_a_missing_ca_says_which_file(tmp_path: Path) -> None:
    with pytest.raises(CAError, match=r"cannot read the cluster CA in .*ca\.key"):
        pki.CA.load(tmp_path)


def test_the_ca_names_the_holder_not_the_request(ca: pki.CA) -> None:
    key = pki.new_key()
    csr = pki.make_csr(key, "root")  # the request asks for a name; the profile decides
    pem = ca.sign(csr, pki.Profile("node:n1", ("10.0.0.7", "n1.example"),
                                   frozenset({"client", "server"}), lifetime=30))
    cert = pki.load_cert(pem)
    cert.verify_directly_issued_by(ca.cert)
    assert cert.public_key() == key.public_key()
    info = pki.cert_info(pem)
    assert info.common_name == "node:n1" and not info.is_ca
    assert info.hosts == ("10.0.0.7", "n1.example")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}


@pytest.mark.parametrize("usages, expected", [
    pytest.param({"client"}, {ExtendedKeyUsageOID.CLIENT_AUTH}, id="client"),
    pytest.param({"server"}, {ExtendedKeyUsageOID.SERVER_AUTH}, id="server"),
])
def test_usages(ca: pki.CA, usages: set[str], expected: set[x509.ObjectIdentifier]) -> None:
    _, pem = ca.issue(pki.Profile("admin:a", usages=frozenset(usages)))
    eku = pki.load_cert(pem).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == expected


def test_a_lifetime_in_seconds(ca: pki.CA) -> None:
    now = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    _, pem = ca.issue(pki.Profile("admin:a", lifetime=5), now=now)
    info = pki.cert_info(pem)
    assert info.not_after == now + datetime.timedelta(seconds=5)
    assert info.not_before <= now
    assert not info.expired(now + datetime.timedelta(seconds=4))
    assert info.expired(now + datetime.timedelta(seconds=5))


@pytest.mark.parametrize("profile", [
    pytest.param(lambda: pki.Profile(""), id="no common name"),
    pytest.param(lambda: pki.Profile("a", usages=frozenset({"peer"})), id="unknown usage"),
    pytest.param(lambda: pki.Profile("a", usages=frozenset()), id="no usage"),
    pytest.param(lambda: pki.Profile("a", lifetime=0), id="no lifetime"),
])
def test_bad_profiles_are_refused(profile: object) -> None:
    with pytest.raises(CAError):
        profile()  # type: ignore[operator]


def test_requests_that_are_not_or_whose_key_is_weak_are_refused(ca: pki.CA) -> None:
    with pytest.raises(CAError, match="not a PEM certificate request"):
        ca.sign("not a request", pki.Profile("admin:a"))
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(CAError, match="too weak"):
        ca.sign(pki.make_csr(weak, "x"), pki.Profile("admin:a"))


def test_a_tampered_request_does_not_verify(ca: pki.CA) -> None:
    """A request whose body changed after its holder signed it is refused."""
    der = x509.load_pem_x509_csr(pki.make_csr(pki.new_key(), "node:aaaa").encode()) \
        .public_bytes(Encoding.DER)
    forged = x509.load_der_x509_csr(der.replace(b"node:aaaa", b"node:bbbb"))
    with pytest.raises(CAError, match="does not verify"):
        ca.sign(forged.public_bytes(Encoding.PEM), pki.Profile("admin:a"))


def test_identity_dir_in_docker_layout(tmp_path: Path, ca: pki.CA) -> None:
    d = pki.issue_identity(ca, tmp_path / "admin", pki.Profile("admin:alice"))
    assert sorted(p.name for p in d.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    assert (d / "key.pem").stat().st_mode & 0o777 == 0o600
    assert (d / "ca.pem").read_text() == ca.cert_pem
    cert = pki.load_cert((d / "cert.pem").read_text())
    assert cert.public_key() == pki.load_key((d / "key.pem").read_text()).public_key()


@pytest.mark.parametrize("hosts, expected", [
    pytest.param((), ("etcd.kubeless",), id="no host: the shared name alone"),
    pytest.param(("10.0.0.1", "m1"), ("10.0.0.1", "m1", "etcd.kubeless"), id="appended"),
    pytest.param(("etcd.kubeless", "10.0.0.1"), ("etcd.kubeless", "10.0.0.1"),
                 id="already there: once"),
    pytest.param(("a", "a", "b"), ("a", "b", "etcd.kubeless"), id="duplicates dropped"),
])
def test_etcd_certificate_hosts(hosts: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert pki.etcd_hosts(hosts) == expected


def test_etcd_certs_as_kubeadm_lays_them_out(tmp_path: Path, ca: pki.CA) -> None:
    tls = pki.issue_etcd_certs(ca, tmp_path, ("127.0.0.1", "localhost"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ca.crt", "peer.crt", "peer.key", "server.crt", "server.key"]
    for cert, key in ((tls.server_cert, tls.server_key), (tls.peer_cert, tls.peer_key)):
        assert key.stat().st_mode & 0o777 == 0o600
        info = pki.cert_info(cert.read_text())
        assert info.hosts == ("127.0.0.1", "localhost", "etcd.kubeless")  # + the shared name
        eku = pki.load_cert(cert.read_text()).extensions.get_extension_for_class(
            x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    flags = tls.flags()
    assert "--client-cert-auth" in flags and "--peer-client-cert-auth" in flags
    assert flags[flags.index("--trusted-ca-file") + 1] == str(tmp_path / "ca.crt")


# -- identities -----------------------------------------------------------------------

@pytest.mark.parametrize("kind, name, common_name", [
    pytest.param("node", "n1", "node:n1", id="node"),
    pytest.param("manager", "m-1", "manager:m-1", id="manager"),
    pytest.param("admin", "alice", "admin:alice", id="admin"),
    pytest.param("node", "a" * 63, "node:" + "a" * 63, id="longest name"),
])
def test_identities(kind: str, name: str, common_name: str) -> None:
    ident = identities.identity(kind, name)
    assert ident.common_name == common_name == str(ident)
    assert identities.parse_identity(common_name) == ident


@pytest.mark.parametrize("kind, name, message", [
    pytest.param("root", "x", "not a kind of identity", id="unknown kind"),
    pytest.param("node", "root", "reserved", id="root as a node"),
    pytest.param("admin", "root", "reserved", id="root as an admin"),
    pytest.param("admin", "admin", "reserved", id="admin admin"),
    pytest.param("manager", "etcd", "reserved", id="etcd"),
    pytest.param("node", "", "not a valid node name", id="empty"),
    pytest.param("node", "N1", "not a valid node name", id="uppercase"),
    pytest.param("node", "a:b", "not a valid node name", id="colon"),
    pytest.param("node", "-a", "not a valid node name", id="leading dash"),
    pytest.param("node", "a" * 64, "not a valid node name", id="too long"),
])
def test_names_that_are_not_identities(kind: str, name: str, message: str) -> None:
    assert message in (identities.identity_error(kind, name) or "")
    with pytest.raises(IdentityError, match=message):
        identities.identity(kind, name)


@pytest.mark.parametrize("common_name", [
    pytest.param("root", id="etcd's root user"),
    pytest.param("n1", id="no kind"),
    pytest.param("node:", id="no name"),
    pytest.param("node:root", id="reserved"),
    pytest.param("etcd-server", id="etcd's own certificate"),
])
def test_common_names_that_are_not_ours(common_name: str) -> None:
    with pytest.raises(IdentityError):
        identities.parse_identity(common_name)


def test_the_kinds_have_helpers() -> None:
    assert [identities.node("a"), identities.manager("a"), identities.admin("a")] == [
        Identity("node", "a"), Identity("manager", "a"), Identity("admin", "a")]
