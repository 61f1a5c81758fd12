"""``kubeless up``'s transport decision, the admin identity's name, and the TLS files
``prepare_tls`` makes in a state dir (kubeless_cli.up_tls)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from kubeless.cluster import NodeState, StateDir
from kubeless.cluster.pki import CA, Profile, cert_info
from kubeless.store import TlsConfig
from kubeless_cli.context import CliError
from kubeless_cli.node_process import manager_tls, tls_flags
from kubeless_cli.up_tls import (admin_name, choose_transport, prepare_tls, renew_own_identities,
                                 renewal_due)

DAY = datetime.timedelta(days=1)

TRANSPORTS = {  # name: (etcd_certs, etcd_data, insecure) -> (tls, warning starts with)
    "a new state dir is secure": ((False, False, False), (True, None)),
    "a TLS state dir stays TLS": ((True, True, False), (True, None)),
    "TLS certificates made, etcd never ran": ((True, False, False), (True, None)),
    "a plain etcd stays plain, with a warning": ((False, True, False),
                                                 (False, "WARNING: this cluster's etcd")),
    "--insecure on a plain etcd: the same": ((False, True, True),
                                             (False, "WARNING: this cluster's etcd")),
    "--insecure makes a new plain one, loudly": ((False, False, True),
                                                 (False, "WARNING: --insecure")),
}


@pytest.mark.parametrize("case", TRANSPORTS)
def test_choose_transport(case: str) -> None:
    (certs, data, insecure), (tls, warning) = TRANSPORTS[case]
    got = choose_transport(etcd_certs=certs, etcd_data=data, insecure=insecure, state="/s")
    assert got.tls is tls
    if warning is None:
        assert got.warning is None
    else:
        assert got.warning is not None and got.warning.startswith(warning)
        assert "\n" not in got.warning


def test_a_plain_state_dir_says_how_to_start_a_secure_one() -> None:
    warning = choose_transport(etcd_certs=False, etcd_data=True, insecure=False,
                               state="/s").warning
    assert warning is not None and "another --state-dir" in warning and "/s" in warning


@pytest.mark.parametrize("etcd_data", [True, False])
def test_insecure_never_flips_a_tls_state_dir(etcd_data: bool) -> None:
    with pytest.raises(CliError, match="serves TLS; --insecure only makes a new cluster"):
        choose_transport(etcd_certs=True, etcd_data=etcd_data, insecure=True, state="/s")


ADMIN_NAMES = {
    "a plain user name": ("alice", "alice"),
    "upper case and dots": ("Alice.Smith", "alice-smith"),
    "root is reserved": ("root", "up"),
    "admin is reserved": ("admin", "up"),
    "nothing left": ("___", "up"),
    "empty": ("", "up"),
    "too long": ("a" * 64, "up"),
}


@pytest.mark.parametrize("case", ADMIN_NAMES)
def test_admin_name(case: str) -> None:
    user, name = ADMIN_NAMES[case]
    assert admin_name(user) == name


def test_prepare_tls_makes_the_ca_etcd_certificates_and_admin_then_reuses_them(
        tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s")
    tls = prepare_tls(state, user="alice")
    ca = CA.load(state.path)
    assert tls.ca.cert_pem == ca.cert_pem == tls.etcd.ca.read_text()
    server = cert_info(tls.etcd.server_cert.read_bytes())
    assert {"127.0.0.1", "localhost"} <= set(server.hosts)
    assert tls.etcd.client_cert_auth and "--client-cert-auth" in tls.etcd.flags()
    admin = tls.admin
    assert admin.cacert is not None and admin.cert is not None and admin.key is not None
    assert cert_info(admin.cert.read_bytes()).common_name == "admin:alice"
    assert admin.cacert.read_text() == ca.cert_pem
    assert admin.key.stat().st_mode & 0o777 == 0o600
    files = {p: p.read_bytes() for p in state.path.rglob("*") if p.is_file()}

    again = prepare_tls(state, user="bob")
    assert {p: p.read_bytes() for p in state.path.rglob("*") if p.is_file()} == files
    assert again.ca.cert_pem == ca.cert_pem and again.ca.cluster_id != tls.ca.cluster_id


def test_prepare_tls_reissues_missing_etcd_certificates_from_the_same_ca(
        tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s")
    first = prepare_tls(state, user="alice")
    first.etcd.server_key.unlink()
    second = prepare_tls(state, user="alice")
    assert second.etcd.server_key.is_file()
    assert CA.load(state.path).cert_pem == first.ca.cert_pem == second.etcd.ca.read_text()


def node(endpoints: str) -> NodeState:
    return NodeState(cluster_id="c", node_id="m1", role="manager", endpoints=endpoints,
                     prefix="/kubeless", runtime="fake", advertise_addr="127.0.0.1")


def test_controllers_present_the_manager_identity_on_https_only(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    assert manager_tls(node("https://127.0.0.1:2379"), state) is None, "none in the state dir"
    directory = state.manager_tls_dir
    directory.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (directory / name).write_text("x")
    assert manager_tls(node("http://127.0.0.1:2379"), state) is None
    tls = manager_tls(node("https://127.0.0.1:2379"), state)
    assert tls == TlsConfig(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    assert tls_flags(tls) == ["--cacert", str(directory / "ca.pem"),
                              "--cert", str(directory / "cert.pem"),
                              "--key", str(directory / "key.pem")]
    assert tls_flags(None) == []


def test_renewal_is_due_in_the_last_third_of_a_lifetime() -> None:
    ca = CA.make("renewal CA")
    _, pem = ca.issue(Profile("admin:alice", lifetime=90 * 86400.0))
    made = cert_info(pem).not_before + datetime.timedelta(seconds=60)  # backdated a minute
    cases = {  # name: (certificate, now) -> due
        "fresh": ((pem.encode(), made), False),
        "after 59 days": ((pem.encode(), made + 59 * DAY), False),
        "after 61 days": ((pem.encode(), made + 61 * DAY), True),
        "expired": ((pem.encode(), made + 91 * DAY), True),
        "missing": ((None, made), True),
        "not a certificate": ((b"garbage", made), True),
    }
    got = {name: renewal_due(*args) for name, (args, _) in cases.items()}
    assert got == {name: due for name, (_, due) in cases.items()}


def test_prepare_tls_renews_etcd_and_admin_certificates_when_due_keeping_the_name(
        tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s")
    first = prepare_tls(state, user="alice")
    before = {p: p.read_bytes() for p in (first.etcd.server_cert, first.etcd.peer_cert,
                                          state.path / "admin" / "cert.pem")}
    later = datetime.datetime.now(datetime.timezone.utc) + 70 * DAY
    again = prepare_tls(state, user="bob", now=later)
    for path, text in before.items():
        assert path.read_bytes() != text, f"{path.name} renewed"
    admin = again.admin.cert
    assert admin is not None and cert_info(admin.read_bytes()).common_name == "admin:alice"
    assert CA.load(state.path).cert_pem == first.ca.cert_pem, "the same CA signs them"


def test_own_identities_are_issued_when_missing_or_due_and_kept_otherwise(
        tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s")
    prepare_tls(state, user="alice")
    assert renew_own_identities(state, "m1", "127.0.0.1"), "missing: issued"
    node_cert = cert_info((state.tls_dir / "cert.pem").read_bytes())
    assert node_cert.common_name == "node:m1" and "127.0.0.1" in node_cert.hosts
    assert cert_info((state.manager_tls_dir / "cert.pem").read_bytes()).common_name \
        == "manager:m1"
    held = (state.tls_dir / "cert.pem").read_bytes()
    assert not renew_own_identities(state, "m1", "127.0.0.1")
    assert (state.tls_dir / "cert.pem").read_bytes() == held
    later = datetime.datetime.now(datetime.timezone.utc) + 70 * DAY
    assert renew_own_identities(state, "m1", "127.0.0.1", now=later)
    assert (state.tls_dir / "cert.pem").read_bytes() != held
