"""TLS to a node's servers: the agent's choice of server identity, the words of a failure,
who may read, the heartbeat's ``logsTLS``, and a joined node's ``tls/`` picked up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubeless.cluster import NodeState, StateDir, pki
from kubeless.cluster.node_tls import (EXPIRED, REFUSED, UNKNOWN_CA, WRONG_HOST, ServerTls,
                                       allowed_client, choose_server_tls, client_context,
                                       describe, failure_kind, peer_common_name,
                                       server_context, server_usage)
from kubeless.store import TlsConfig, TlsError
from kubeless_agent.main import AgentConfig
from kubeless_agent.node_status import advertise

ID = TlsConfig(Path("/id/ca.pem"), Path("/id/cert.pem"), Path("/id/key.pem"))


@pytest.mark.parametrize("case, flags, identity, serves, expected", [
    ("nothing: plain", (None, None, None), None, False, None),
    ("an identity for clients only: plain", (None, None, None), ID, False, None),
    ("an identity that may serve: it", (None, None, None), ID, True,
     ServerTls(Path("/id/cert.pem"), Path("/id/key.pem"), Path("/id/ca.pem"))),
    ("an identity without a key: plain", (None, None, None),
     TlsConfig(Path("/id/ca.pem")), True, None),
    ("explicit flags win", ("/s/c.pem", "/s/k.pem", "/s/ca.pem"), ID, True,
     ServerTls(Path("/s/c.pem"), Path("/s/k.pem"), Path("/s/ca.pem"))),
    ("explicit, the client CA from --cacert", ("/s/c.pem", "/s/k.pem", None), ID, False,
     ServerTls(Path("/s/c.pem"), Path("/s/k.pem"), Path("/id/ca.pem"))),
])
def test_choose_server_tls(case: str, flags: tuple[str | None, str | None, str | None], identity: TlsConfig | None,
                           serves: bool, expected: ServerTls | None) -> None:
    assert choose_server_tls(*flags, identity, serves) == expected, case


@pytest.mark.parametrize("case, flags, needle", [
    ("a certificate without its key", ("/s/c.pem", None, "/ca.pem"), "--server-key is missing"),
    ("a key without its certificate", (None, "/s/k.pem", "/ca.pem"), "--server-cert is missing"),
    ("no CA to verify clients", ("/s/c.pem", "/s/k.pem", None), "give --client-ca"),
])
def test_server_flags_that_cannot_serve(case: str, flags: tuple[str | None, str | None, str | None],
                                        needle: str) -> None:
    with pytest.raises(TlsError, match=needle):
        choose_server_tls(*flags, None, False)


@pytest.mark.parametrize("case, reason, code, kind", [
    ("another CA signed the node's certificate", "CERTIFICATE_VERIFY_FAILED", 20, UNKNOWN_CA),
    ("self-signed", "CERTIFICATE_VERIFY_FAILED", 18, UNKNOWN_CA),
    ("expired", "CERTIFICATE_VERIFY_FAILED", 10, EXPIRED),
    ("not yet valid", "CERTIFICATE_VERIFY_FAILED", 9, EXPIRED),
    ("a name that is not the node's", "CERTIFICATE_VERIFY_FAILED", 62, WRONG_HOST),
    ("an IP address that is not the node's", "CERTIFICATE_VERIFY_FAILED", 64, WRONG_HOST),
    ("TLS 1.3: certificate required", "TLSV13_ALERT_CERTIFICATE_REQUIRED", None, REFUSED),
    ("the node does not know our CA", "TLSV1_ALERT_UNKNOWN_CA", None, REFUSED),
    ("the node hung up", None, None, REFUSED),
])
def test_failure_kind(case: str, reason: str | None, code: int | None, kind: str) -> None:
    assert failure_kind(reason, code) == kind, case


@pytest.mark.parametrize("kind, needle", [
    (UNKNOWN_CA, "node n1's certificate at 10.0.0.2:7000 is not signed by the CA in "
                 "/id/ca.pem (unknown CA)"),
    (EXPIRED, "node n1's certificate at 10.0.0.2:7000 has expired"),
    (WRONG_HOST, "node n1's certificate at 10.0.0.2:7000 is not valid for its address"),
    (REFUSED, "node n1 at 10.0.0.2:7000 refused the client certificate /id/cert.pem"),
])
def test_describe(kind: str, needle: str) -> None:
    text = describe(kind, "n1", "10.0.0.2:7000", ID)
    assert needle in text and "\n" not in text


@pytest.mark.parametrize("case, tls, needle", [
    ("nothing given", None, "the logs of node n1 are served over TLS: give --cert/--key or "
                            "KUBELESS_CERT_PATH"),
    ("a CA only", TlsConfig(Path("/id/ca.pem")), "give --cert/--key"),
    ("no CA", TlsConfig(None, Path("/c"), Path("/k")), "give --cacert"),
    ("files that are not there", ID, "cannot read the CA certificate /id/ca.pem"),
])
def test_client_context_refusals(case: str, tls: TlsConfig | None, needle: str) -> None:
    with pytest.raises(TlsError, match=needle):
        client_context(tls, "n1")


@pytest.mark.parametrize("case, name, allowed", [
    ("a node", "node:n1", True), ("a manager", "manager:m1", True),
    ("an admin", "admin:ops", True), ("etcd's own", "etcd-server", False),
    ("etcd's root", "root", False), ("a reserved name", "admin:root", False),
    ("none", None, False),
])
def test_allowed_client(case: str, name: str | None, allowed: bool) -> None:
    assert allowed_client(name) is allowed, case


def test_peer_common_name() -> None:
    cert = {"subject": ((("organizationName", "x"),), (("commonName", "admin:ops"),))}
    assert peer_common_name(cert) == "admin:ops"
    assert peer_common_name(None) is None and peer_common_name({}) is None


class Beats:
    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}

    def update(self, node_id: str, fields: dict[str, Any]) -> None:
        self.fields.update(fields)


class Runtime:
    def runtime_state(self) -> dict[str, str]:
        return {"state": "up"}

    def engine_version(self) -> str:
        return "fake"

    def watch_state(self, callback: Callable[[dict[str, str]], None]) -> None:
        pass


@pytest.mark.parametrize("case, port, tls, expected", [
    ("plain: as before, no logsTLS", 7000, False, {"logsPort": 7000}),
    ("tls", 7000, True, {"logsPort": 7000, "logsTLS": True}),
    ("no logs server", None, True, {}),
])
def test_the_heartbeat_says_tls(case: str, port: int | None, tls: bool,
                                expected: dict[str, Any]) -> None:
    beats = Beats()
    advertise(beats, "n1", Runtime(), port, logs_tls=tls)  # type: ignore[arg-type]
    assert {k: v for k, v in beats.fields.items() if k.startswith("logs")} == expected, case


@pytest.fixture(scope="module")
def ca() -> pki.CA:
    return pki.CA.make("test-ca")


NODE = NodeState(cluster_id="c1", node_id="n1", role="worker", endpoints="https://10.0.0.1:2379",
                 prefix="/k", runtime="docker", advertise_addr="10.0.0.2")


@pytest.mark.parametrize("case, usages, endpoints, etcd_tls, serves", [
    ("a joined node's identity: etcd client and server", pki.USAGES, "https://10.0.0.1:2379",
     True, True),
    ("client usage only: plain logs", frozenset({"client"}), "https://10.0.0.1:2379", True,
     False),
    ("plain etcd: the identity is not used (TLS comes as a whole)", pki.USAGES,
     "http://10.0.0.1:2379", False, False),
])
def test_a_joined_nodes_identity_is_picked_up(ca: pki.CA, tmp_path: Path, case: str,
                                              usages: frozenset[str], endpoints: str,
                                              etcd_tls: bool, serves: bool) -> None:
    state = StateDir(tmp_path)
    tls = tmp_path / "tls"
    pki.issue_identity(ca, tls, pki.Profile("node:n1", ("10.0.0.2",), usages))
    node = NodeState(**{**NODE.__dict__, "endpoints": endpoints})
    config = AgentConfig.from_node_state(node, state)
    assert (config.tls is not None) is etcd_tls, case
    assert config.server_tls == (ServerTls(tls / "cert.pem", tls / "key.pem", tls / "ca.pem")
                                 if serves else None), case
    if serves:
        server_context(config.server_tls)  # type: ignore[arg-type]


def test_no_tls_dir_changes_nothing(tmp_path: Path) -> None:
    config = AgentConfig.from_node_state(NODE, StateDir(tmp_path))
    assert (config.tls, config.server_tls) == (None, None)


def test_server_usage(ca: pki.CA, tmp_path: Path) -> None:
    both = pki.issue_identity(ca, tmp_path / "both", pki.Profile("node:n1", usages=pki.USAGES))
    client = pki.issue_identity(ca, tmp_path / "client", pki.Profile("admin:ops"))
    assert server_usage(both / "cert.pem") and not server_usage(client / "cert.pem")
    assert not server_usage(tmp_path / "missing.pem")


def test_the_agent_serves_with_its_own_identity_when_it_may(ca: pki.CA, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from kubeless_agent.main import parse_args

    monkeypatch.delenv("KUBELESS_CERT_PATH", raising=False)
    both = pki.issue_identity(ca, tmp_path / "node", pki.Profile("node:n1", usages=pki.USAGES))
    client = pki.issue_identity(ca, tmp_path / "client", pki.Profile("node:n1"))
    https = ["--endpoints", "https://127.0.0.1:2379"]
    assert parse_args(https + identity_flags(both)).server_tls == \
        ServerTls(both / "cert.pem", both / "key.pem", both / "ca.pem")
    assert parse_args(https + identity_flags(client)).server_tls is None
    assert parse_args([]).server_tls is None  # no identity: plain, as before
    explicit = parse_args(["--server-cert", str(both / "cert.pem"), "--server-key",
                           str(both / "key.pem"), "--client-ca", str(both / "ca.pem")])
    assert explicit.server_tls == ServerTls(both / "cert.pem", both / "key.pem",
                                            both / "ca.pem")


@pytest.mark.parametrize("case, args, needle", [
    ("a key without its certificate", ["--server-key", "/k.pem", "--client-ca", "/ca.pem"],
     "--server-cert is missing"),
    ("files that are not there", ["--server-cert", "/nope/c.pem", "--server-key",
                                  "/nope/k.pem", "--client-ca", "/nope/ca.pem"],
     "cannot read the client CA certificate /nope/ca.pem"),
])
def test_the_agent_refuses_server_flags_it_cannot_use(case: str, args: list[str], needle: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from kubeless_agent.main import parse_args

    with pytest.raises(SystemExit):
        parse_args(args)
    assert needle in capsys.readouterr().err, case


def identity_flags(d: Path) -> list[str]:
    return ["--cacert", str(d / "ca.pem"), "--cert", str(d / "cert.pem"),
            "--key", str(d / "key.pem")]
