"""The cluster's secrets key as managers hold it: from the CA key (in memory or its PEM
file), tied to its CA, in the cluster record, and given to ``kubeless-controllers``."""

from __future__ import annotations

from pathlib import Path

import pytest

from controllers.main import parse_args
from kubeless.cluster import CAError, secrets_key
from kubeless.cluster.pki import CA, key_pem, write_private
from kubeless.cluster.record import ClusterRecord
from kubeless.cluster.sealing import (cluster_secrets_key, public_text, seal, secret_context,
                                      unseal)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.make("kubeless test CA secrets-key")


def test_derived_from_the_ca_key_and_tied_to_its_certificate(ca: CA, tmp_path: Path) -> None:
    held = secrets_key.of(ca.key)
    assert held.public == public_text(cluster_secrets_key(ca.key))
    assert secrets_key.public_of(ca.key) == held.public
    write_private(tmp_path / "ca.key", key_pem(ca.key))
    loaded = secrets_key.load(tmp_path / "ca.key")
    assert loaded.public == held.public and loaded.key_id == held.key_id
    sealed = seal(held.public, b"hunter2", secret_context("default", "dbpass"))
    assert unseal(loaded.private, sealed, secret_context("default", "dbpass")) == b"hunter2"
    assert held.belongs_to(ca.cert_pem)
    assert not held.belongs_to(CA.make("another").cert_pem)
    assert not held.belongs_to("not a certificate")
    assert "private" not in repr(held) and held.public in repr(held)


def test_unreadable_ca_keys_are_one_sentence_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(CAError, match=r"cannot read the CA key .*missing\.key"):
        secrets_key.load(tmp_path / "missing.key")
    (tmp_path / "junk.key").write_text("not a key\n")
    with pytest.raises(CAError, match=r"the CA key .*junk\.key: not a PEM private key"):
        secrets_key.load(tmp_path / "junk.key")


def test_the_record_keeps_the_public_half(ca: CA) -> None:
    record = ClusterRecord("c1", "2030-01-01T00:00:00Z", ca.cert_pem,
                           secrets_key=secrets_key.public_of(ca.key))
    value = record.to_value()
    assert value["secretsKey"] == record.secrets_key
    assert ClusterRecord.from_value("k", value).secrets_key == record.secrets_key
    older = ClusterRecord("c1", "2030-01-01T00:00:00Z", ca.cert_pem).to_value()
    assert "secretsKey" not in older  # a record made before secrets
    assert ClusterRecord.from_value("k", older).secrets_key == ""


def test_controllers_take_the_ca_key_by_flag_or_environment(ca: CA, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    path = tmp_path / "ca.key"
    write_private(path, key_pem(ca.key))
    assert parse_args([]).cluster_key is None
    assert parse_args(["--ca-key", str(path)]).cluster_key.public == \
        secrets_key.public_of(ca.key)
    monkeypatch.setenv("KUBELESS_CA_KEY", str(path))
    assert parse_args([]).cluster_key is not None
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--ca-key", str(tmp_path / "nope.key")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "cannot read the CA key" in err and "Traceback" not in err
