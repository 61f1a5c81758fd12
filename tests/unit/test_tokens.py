"""Join tokens: Swarm's format, parsing, and the checks a cluster record makes."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from kubeless.cluster import ClusterRecord, TokenMalformed, TokenRefused, tokens
from kubeless.cluster.ca import cert_der, make_root_ca

TOKEN_RE = re.compile(r"^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$")


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Two root CAs (two clusters), made with openssl as init makes them."""
    root = tmp_path_factory.mktemp("ca")
    return make_root_ca(root / "a", "a"), make_root_ca(root / "b", "b")


def record_with_tokens(pem: str) -> tuple[ClusterRecord, dict[str, tokens.JoinToken]]:
    digest = tokens.ca_digest(cert_der(pem))
    made = {role: tokens.new_token(digest) for role in tokens.ROLES}
    record = ClusterRecord("c1", "2025-01-01T00:00:00Z", pem)
    for role, token in made.items():
        record = record.with_token(role, token, "2025-01-01T00:00:00Z")
    return record, made


@pytest.mark.parametrize("n, width, expected", [
    (0, 3, "000"), (35, 1, "z"), (36, 2, "10"), (36 ** 5 - 1, 5, "zzzzz"), (1295, 5, "000zz"),
])
def test_base36_pads_on_the_left(n: int, width: int, expected: str) -> None:
    assert tokens.base36(n, width) == expected


def test_ca_digest_is_50_base36_chars_of_the_der_sha256() -> None:
    der = b"not really a certificate"
    digest = tokens.ca_digest(der)
    assert len(digest) == 50 and re.fullmatch(r"[0-9a-z]{50}", digest)
    assert int(digest, 36) == int.from_bytes(hashlib.sha256(der).digest(), "big")
    assert tokens.ca_digest(der + b"!") != digest


def test_new_token_has_swarm_format_and_fresh_secrets() -> None:
    digest = tokens.ca_digest(b"x")
    a, b = tokens.new_token(digest), tokens.new_token(digest)
    assert TOKEN_RE.match(str(a)), str(a)
    assert a.digest == digest and len(a.secret) == 25
    assert a.secret != b.secret


def test_parse_round_trips_and_strips_whitespace() -> None:
    token = tokens.new_token(tokens.ca_digest(b"x"))
    assert tokens.parse_token(f"  {token}\n") == token


@pytest.mark.parametrize("text", [
    "", "garbage", "SWMTKN-2-" + "a" * 50 + "-" + "b" * 25, "SWMTKN-1-" + "a" * 49 + "-" + "b" * 25,
    "SWMTKN-1-" + "a" * 50 + "-" + "b" * 24, "SWMTKN-1-" + "A" * 50 + "-" + "b" * 25,
    "SWMTKN-1-" + "a" * 50 + "-" + "b" * 25 + "-x", "XXXTKN-1-" + "a" * 50 + "-" + "b" * 25,
], ids=["empty", "garbage", "version", "short-digest", "short-secret", "uppercase", "extra",
        "prefix"])
def test_malformed_tokens_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(TokenMalformed) as err:
        tokens.parse_token(text)
    assert "malformed" in str(err.value)
    assert "b" * 24 not in str(err.value)


def test_hash_is_sha256_hex_of_the_secret() -> None:
    assert tokens.hash_secret("abc") == hashlib.sha256(b"abc").hexdigest()
    token = tokens.new_token(tokens.ca_digest(b"x"))
    assert token.matches_hash(tokens.hash_secret(token.secret))
    assert not token.matches_hash(tokens.hash_secret(token.secret + "0"))


def test_each_token_grants_its_role(pems: tuple[str, str]) -> None:
    record, made = record_with_tokens(pems[0])
    assert record.role_of(made["worker"]) == "worker"
    assert record.role_of(made["manager"]) == "manager"


def test_wrong_secret_is_refused(pems: tuple[str, str]) -> None:
    record, made = record_with_tokens(pems[0])
    wrong = tokens.JoinToken(made["worker"].digest, tokens.new_secret())
    with pytest.raises(TokenRefused, match="wrong or was rotated"):
        record.role_of(wrong)


def test_token_of_another_cluster_is_refused_by_its_digest(pems: tuple[str, str]) -> None:
    record, _ = record_with_tokens(pems[0])
    _, other = record_with_tokens(pems[1])
    with pytest.raises(TokenRefused, match="another cluster"):
        record.role_of(other["worker"])


def test_rotation_refuses_the_old_token_at_once(pems: tuple[str, str]) -> None:
    record, made = record_with_tokens(pems[0])
    new = tokens.new_token(record.ca_digest)
    rotated = record.with_token("worker", new, "2025-01-02T00:00:00Z")
    with pytest.raises(TokenRefused):
        rotated.role_of(made["worker"])
    assert rotated.role_of(new) == "worker"
    assert rotated.role_of(made["manager"]) == "manager"


def test_record_value_keeps_only_hashes_and_round_trips(pems: tuple[str, str]) -> None:
    record, made = record_with_tokens(pems[0])
    value = record.to_value()
    text = repr(value)
    for token in made.values():
        assert token.secret not in text
        assert value["joinTokens"][record.role_of(token)]["sha256"] == token.secret_hash
    assert value["caDigest"] == made["worker"].digest
    again = ClusterRecord.from_value("/k", value)
    assert again.token_hashes == record.token_hashes and again.ca_cert == record.ca_cert


def test_root_ca_key_is_private(tmp_path: Path) -> None:
    make_root_ca(tmp_path, "t")
    assert (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
    assert "BEGIN CERTIFICATE" in (tmp_path / "ca.crt").read_text()
