"""TLS to etcd, the decisions (kubeless.store.tls): which files, which name, what failed."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from kubeless.cluster import pki
from kubeless.store import TlsConfig, TlsError, parse_endpoints
from kubeless.store import tls

# gRPC 1.85's details of the failures, as seen against a real TLS etcd.
_PREFIX = "connections to all backends failing; last error: "
WRONG_HOST = (_PREFIX + "UNKNOWN: ipv4:127.0.0.1:40717: Custom verification check failed with "
              "error: UNAUTHENTICATED: Hostname Verification Check failed.")
UNKNOWN_CA = (_PREFIX + "UNKNOWN: ipv4:127.0.0.1:40717: Tls handshake failed "
              "(TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:"
              "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer "
              "certificate: OK")
EXPIRED = (_PREFIX + "UNKNOWN: ipv4:127.0.0.1:33027: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
           "SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:"
           "CERTIFICATE_VERIFY_FAILED: certificate has expired: OK")
REFUSED = _PREFIX + "UNAVAILABLE: ipv4:127.0.0.1:40717: Unwrap failed (TSI_DATA_CORRUPTED)"


@pytest.mark.parametrize("details, kind", [
    pytest.param(WRONG_HOST, tls.WRONG_HOST, id="wrong host"),
    pytest.param(UNKNOWN_CA, tls.UNKNOWN_CA, id="unknown CA"),
    pytest.param(EXPIRED, tls.EXPIRED, id="server certificate expired"),
    pytest.param(REFUSED, tls.CLIENT_REFUSED, id="client certificate refused"),
    pytest.param(_PREFIX + "UNAVAILABLE: ipv4:127.0.0.1:1: Failed to connect to remote host: "
                 "Connection refused", None, id="nothing listens"),
    pytest.param("etcdserver: no leader", None, id="election"),
    pytest.param(_PREFIX + "UNAVAILABLE: ipv4:127.0.0.1:1: Handshake read failed "
                 "(Socket closed)", None, id="plaintext server: retried"),
])
def test_handshake_failures(details: str, kind: str | None) -> None:
    assert tls.handshake_failure(details) == kind


@pytest.mark.parametrize("flags, cert_path, expected", [
    pytest.param({}, None, None, id="nothing"),
    pytest.param({}, "D", TlsConfig(Path("D/ca.pem"), Path("D/cert.pem"), Path("D/key.pem")),
                 id="cert path"),
    pytest.param({"cacert": "x.pem"}, "D",
                 TlsConfig(Path("x.pem"), Path("D/cert.pem"), Path("D/key.pem")),
                 id="a flag wins over its file"),
    pytest.param({"cacert": "c", "cert": "e", "key": "k"}, None,
                 TlsConfig(Path("c"), Path("e"), Path("k")), id="flags"),
    pytest.param({"cacert": "c"}, None, TlsConfig(Path("c")), id="CA only"),
])
def test_tls_config_from_flags_and_cert_path(tmp_path: Path, flags: dict[str, str],
                                             cert_path: str | None,
                                             expected: TlsConfig | None) -> None:
    if cert_path:
        (tmp_path / cert_path).mkdir()
        cert_path = str(tmp_path / cert_path)
        assert expected is not None
        expected = TlsConfig(*(tmp_path / str(p) if str(p).startswith("D/") else p
                               for p in (expected.cacert, expected.cert, expected.key)))
    assert TlsConfig.from_env({"KUBELESS_CERT_PATH": cert_path} if cert_path else {},
                              **flags) == expected


def test_a_cert_path_that_is_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="KUBELESS_CERT_PATH=.* is not a directory"):
        TlsConfig.from_options(cert_path=str(tmp_path / "nope"))


FULL = TlsConfig(Path("c"), Path("e"), Path("k"))


@pytest.mark.parametrize("endpoints, config, secure, error", [
    pytest.param("http://a:1", None, False, None, id="plain"),
    pytest.param("https://a:1,https://a:2", FULL, True, None, id="tls"),
    pytest.param("https://a:1", TlsConfig(Path("c")), True, None, id="tls without a client cert"),
    pytest.param("https://a:1", None, None, "need the CA certificate", id="https without files"),
    pytest.param("https://a:1", TlsConfig(None, Path("e"), Path("k")), None,
                 "need the CA certificate", id="https without a CA"),
    pytest.param("http://a:1", FULL, None, "but the etcd endpoints are http://",
                 id="files for http"),
    pytest.param("http://a:1,https://a:2", FULL, None, "mix http:// and https://", id="mixed"),
    pytest.param("https://a:1", TlsConfig(Path("c"), Path("e")), None, "--key is missing",
                 id="a certificate without its key"),
    pytest.param("https://a:1", TlsConfig(Path("c"), None, Path("k")), None, "--cert is missing",
                 id="a key without its certificate"),
])
def test_schemes(endpoints: str, config: TlsConfig | None, secure: bool | None,
                 error: str | None) -> None:
    eps = parse_endpoints(endpoints)
    if error is None:
        assert tls.check_schemes(eps, config) is secure
    else:
        with pytest.raises(TlsError, match=error):
            tls.check_schemes(eps, config)


@pytest.mark.parametrize("endpoints, server_name, expected", [
    pytest.param("https://127.0.0.1:1", None, "127.0.0.1", id="an address"),
    pytest.param("https://127.0.0.1:1,https://127.0.0.1:2", None, "127.0.0.1",
                 id="one host, several members"),
    pytest.param("https://etcd.example:1", None, "etcd.example", id="a name"),
    pytest.param("https://a:1,https://b:1", "etcd.example", "etcd.example", id="configured"),
    pytest.param("https://a:1,https://b:1", None, "etcd.kubeless",
                 id="hosts differ: the shared name"),
    pytest.param("https://10.0.0.1:1,https://10.0.0.2:1,https://10.0.0.1:2", None,
                 "etcd.kubeless", id="addresses differ: the shared name"),
    pytest.param("https://127.0.0.1:1,https://localhost:1", None, "etcd.kubeless",
                 id="one machine by two names still differs"),
])
def test_the_name_verified(endpoints: str, server_name: str | None, expected: str) -> None:
    config = TlsConfig(Path("c"), server_name=server_name)
    assert tls.server_name(parse_endpoints(endpoints), config) == expected
    assert tls.ETCD_SHARED_NAME == "etcd.kubeless"


def test_a_member_without_the_shared_name_is_one_sentence() -> None:
    text = tls.describe(tls.WRONG_HOST, TlsConfig(Path("c")), "https://a:1, https://b:1",
                        tls.ETCD_SHARED_NAME)
    assert "\n" not in text
    assert "does not hold the name etcd.kubeless" in text and "different hosts" in text


@pytest.fixture(scope="module")
def ca() -> pki.CA:
    return pki.CA.make("describe CA")


def test_describe_each_failure(tmp_path: Path, ca: pki.CA) -> None:
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    ours = pki.issue_identity(ca, tmp_path / "ours", pki.Profile("admin:a", lifetime=10), now)
    config = TlsConfig(ours / "ca.pem", ours / "cert.pem", ours / "key.pem")
    where = "https://127.0.0.1:2379"

    def says(kind: str, cfg: TlsConfig | None, at: datetime.datetime = now) -> str:
        return tls.describe(kind, cfg, where, "127.0.0.1", at)

    assert "not valid for the host 127.0.0.1" in says(tls.WRONG_HOST, config)
    assert f"not signed by the CA in {ours / 'ca.pem'}" in says(tls.UNKNOWN_CA, config)
    assert "has expired" in says(tls.EXPIRED, config)
    assert "requires a client certificate" in says(tls.CLIENT_REFUSED, TlsConfig(ours / "ca.pem"))
    later = now + datetime.timedelta(seconds=11)
    assert "it expired at 2030-01-01T00:00:10Z" in says(tls.CLIENT_REFUSED, config, later)
    foreign = pki.issue_identity(pki.CA.make("other CA"), tmp_path / "f", pki.Profile("admin:a"),
                                 now)
    assert "does not trust the CA that signed it (CN=other CA)" in says(
        tls.CLIENT_REFUSED, TlsConfig(ours / "ca.pem", foreign / "cert.pem", foreign / "key.pem"))
    for kind in (tls.WRONG_HOST, tls.UNKNOWN_CA, tls.EXPIRED, tls.CLIENT_REFUSED):
        assert "\n" not in says(kind, config) and says(kind, config).startswith("TLS: ")


def test_credentials_name_the_file_that_cannot_serve(tmp_path: Path, ca: pki.CA) -> None:
    d = pki.issue_identity(ca, tmp_path / "d", pki.Profile("admin:a"))
    other = pki.issue_identity(ca, tmp_path / "o", pki.Profile("admin:b"))
    (tmp_path / "junk.pem").write_text("not a certificate")
    cases = [
        (TlsConfig(tmp_path / "none.pem"), f"cannot read the CA certificate {tmp_path}/none.pem: "
                                           "No such file or directory"),
        (TlsConfig(tmp_path / "junk.pem"), "is not a PEM certificate"),
        (TlsConfig(d / "ca.pem", d / "cert.pem", tmp_path / "k.pem"),
         f"cannot read the client key {tmp_path}/k.pem"),
        (TlsConfig(d / "ca.pem", d / "cert.pem", other / "key.pem"),
         "are not a PEM certificate and its key: KEY_VALUES_MISMATCH"),
    ]
    for config, message in cases:
        with pytest.raises(TlsError) as err:
            tls.credentials(config)
        assert message in str(err.value)
    assert tls.credentials(TlsConfig(d / "ca.pem", d / "cert.pem", d / "key.pem")) is not None
