"""Sealed values (kubeless.cluster.sealing): only the recipient's key, under the same
context, opens one; anything else is a SealError that quotes no value."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeless.cluster import sealing
from kubeless.cluster.pki import CA, key_pem, load_key

KEY = sealing.new_private_key()
PUBLIC = sealing.public_text(KEY)
CONTEXT = sealing.secret_context("default", "dbpass")


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=4096))
def test_what_is_sealed_opens_with_the_key_and_context(value: bytes) -> None:
    sealed = sealing.seal(PUBLIC, value, CONTEXT)
    assert sealing.unseal(KEY, sealed, CONTEXT) == value
    if len(value) >= 8:
        assert value not in base64.b64decode(sealed)


def test_sealing_twice_gives_two_texts() -> None:
    assert sealing.seal(PUBLIC, b"hunter2", CONTEXT) != sealing.seal(PUBLIC, b"hunter2", CONTEXT)


@pytest.mark.parametrize("other", [
    sealing.secret_context("default", "dbpass.v2"),
    sealing.secret_context("prod", "dbpass"),
    sealing.copy_context("n1", "default", "dbpass"),
])
def test_another_context_does_not_open(other: str) -> None:
    sealed = sealing.seal(PUBLIC, b"hunter2", CONTEXT)
    with pytest.raises(sealing.SealError) as err:
        sealing.unseal(KEY, sealed, other)
    assert "hunter2" not in str(err.value)


def test_another_key_does_not_open() -> None:
    sealed = sealing.seal(PUBLIC, b"hunter2", CONTEXT)
    with pytest.raises(sealing.SealError):
        sealing.unseal(sealing.new_private_key(), sealed, CONTEXT)


@pytest.mark.parametrize("damage", [
    lambda b: b[:-1],                            # cut
    lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:],  # a flipped bit in the nonce
    lambda b: b[:-3] + bytes([b[-3] ^ 1]) + b[-2:],  # a flipped bit in the tag
    lambda b: bytes([2]) + b[1:],                # an unknown version
    lambda b: b[:20],                            # too short to hold anything
])
def test_a_damaged_value_does_not_open(damage: object) -> None:
    raw = base64.b64decode(sealing.seal(PUBLIC, b"hunter2", CONTEXT))
    damaged = base64.b64encode(damage(raw)).decode()  # type: ignore[operator]
    with pytest.raises(sealing.SealError):
        sealing.unseal(KEY, damaged, CONTEXT)


def test_text_that_is_not_base64_or_not_a_key_is_refused() -> None:
    with pytest.raises(sealing.SealError):
        sealing.unseal(KEY, "not base64 !", CONTEXT)
    with pytest.raises(sealing.SealError):
        sealing.seal("AAAA", b"x", CONTEXT)


def test_the_cluster_key_is_the_same_wherever_the_ca_key_is_loaded() -> None:
    ca = CA.make("test")
    again = load_key(key_pem(ca.key))
    assert sealing.public_text(sealing.cluster_secrets_key(ca.key)) \
        == sealing.public_text(sealing.cluster_secrets_key(again))  # type: ignore[arg-type]
    other = sealing.cluster_secrets_key(CA.make("test").key)
    assert sealing.public_text(other) != sealing.public_text(sealing.cluster_secrets_key(ca.key))


def test_key_ids_tell_keys_apart() -> None:
    other = sealing.public_text(sealing.new_private_key())
    assert sealing.key_id(PUBLIC) == sealing.key_id(PUBLIC) != sealing.key_id(other)


def test_a_digest_matches_its_value_only() -> None:
    stored = sealing.digest(b"hunter2")
    assert sealing.digest_matches(b"hunter2", stored)
    assert not sealing.digest_matches(b"hunter3", stored)
    assert sealing.digest(b"hunter2") != stored  # a salt of its own each time
    assert b"hunter2" not in stored.encode()
    for broken in ("", "sha256$x$y", "scrypt$$", "scrypt$!!$x"):
        assert not sealing.digest_matches(b"hunter2", broken)
