"""Secrets and Configs as pure rules: the user's document, limits, what is stored,
immutability, what users are shown, and who uses one (kubeless.api.secrets)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kubeless.api import InvalidResource, validate
from kubeless.api.errors import InUse, ValueChanged
from kubeless.api.file_refs import MAX_BYTES
from kubeless.api.secrets import (config_same, config_spec, desired, public_view, secret_spec,
                                  size_error, stored, users, value_of)
from kubeless.cluster import sealing

VALUE = b"hunter2-tests-kinds"
B64 = base64.b64encode(VALUE).decode()


def doc(kind: str = "Secret", name: str = "dbpass", **top: Any) -> dict[str, Any]:
    return {"apiVersion": "kubeless.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "db"}}, **top}


def service(name: str, ns: str = "default", **template: Any) -> dict[str, Any]:
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"template": {"image": "web:1", **template}}}


# -- the user's document ------------------------------------------------------------

@pytest.mark.parametrize(("top", "value"), [
    pytest.param({"data": B64}, VALUE, id="data"),
    pytest.param({"data": B64[:8] + "\n" + B64[8:]}, VALUE, id="data-wrapped-lines"),
    pytest.param({"stringData": "hunter2-tests-kinds"}, VALUE, id="stringData"),
    pytest.param({"stringData": "é"}, "é".encode(), id="stringData-utf8"),
])
def test_value_of(top: dict[str, Any], value: bytes) -> None:
    assert value_of(doc(**top)) == value


@pytest.mark.parametrize(("top", "path", "words"), [
    pytest.param({}, "data", "required", id="none"),
    pytest.param({"data": B64, "stringData": "hunter2"}, "stringData", "not both", id="both"),
    pytest.param({"data": "hunter2!!"}, "data", "not valid base64", id="bad-base64"),
    pytest.param({"data": 1234}, "data", "must be text, not int", id="data-not-text"),
    pytest.param({"stringData": 9876}, "stringData", "quote it", id="stringData-not-text"),
    pytest.param({"stringData": ""}, "stringData", "the value is empty", id="empty"),
    pytest.param({"stringData": "x" * (MAX_BYTES + 1)}, "stringData",
                 f"the value is {MAX_BYTES + 1} bytes, more than {MAX_BYTES} (500 KiB",
                 id="too-big"),
])
def test_bad_values_are_refused_without_quoting_them(top: dict[str, Any], path: str,
                                                     words: str) -> None:
    with pytest.raises(InvalidResource) as caught:
        validate(doc(**top))
    [violation] = caught.value.violations
    assert violation.path == path and words in violation.message
    for given in top.values():
        if str(given) and len(str(given)) > 3:
            assert str(given) not in str(caught.value)


def test_the_limit_itself_is_accepted() -> None:
    assert len(value_of(doc(data=base64.b64encode(b"x" * MAX_BYTES).decode()))) == MAX_BYTES
    assert size_error(MAX_BYTES) is None and size_error(1) is None


@pytest.mark.parametrize(("extra", "path", "words"), [
    pytest.param({"spec": {"size": 1}}, "spec", "written by kubeless", id="spec-given"),
    pytest.param({"status": {}}, "status", "unknown field", id="no-status"),
    pytest.param({"type": "Opaque"}, "type", "unknown field", id="kubernetes-type"),
])
def test_fields_users_may_not_give(extra: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(InvalidResource) as caught:
        validate(doc(data=B64, **extra))
    assert any(v.path == path and words in v.message for v in caught.value.violations)


@pytest.mark.parametrize(("name", "ok"), [
    ("dbpass", True), ("dbpass.v2", True), ("a" * 253, True),
    ("DbPass", False), ("db_pass", False), (".v2", False), ("a" * 254, False),
])
def test_names_are_dns_subdomains(name: str, ok: bool) -> None:
    """As Kubernetes names Secrets: the rotation recipe's dbpass.v2 is a name."""
    try:
        validate(doc(name=name, data=B64))
    except InvalidResource as err:
        assert not ok, err
        assert err.violations[0].path == "metadata.name"
    else:
        assert ok


def test_namespace_defaults_and_labels_are_checked() -> None:
    out = validate({"apiVersion": "kubeless.io/v1", "kind": "Config",
                    "metadata": {"name": "webconf"}, "stringData": "x"})
    assert out["metadata"]["namespace"] == "default"
    with pytest.raises(InvalidResource) as caught:
        validate(doc(data=B64, metadata={"name": "a", "labels": {"bad key!": "v"}}))
    assert caught.value.violations[0].path.startswith("metadata.labels")


# -- what is stored -----------------------------------------------------------------

def test_a_secret_is_stored_sealed_never_plain() -> None:
    private = sealing.new_private_key()
    recipient = sealing.public_text(private)
    context = sealing.secret_context("default", "dbpass")
    spec = secret_spec(VALUE, sealed=sealing.seal(recipient, VALUE, context),
                       key_id=sealing.key_id(recipient), digest=sealing.digest(VALUE))
    new = stored(doc(stringData=VALUE.decode()), spec)
    assert set(new) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(new["spec"]) == {"size", "sealed", "keyId", "digest"}
    assert new["spec"]["size"] == len(VALUE)
    assert VALUE.decode() not in repr(new) and B64 not in repr(new)
    assert sealing.unseal(private, new["spec"]["sealed"], context) == VALUE


def test_a_config_is_stored_plain() -> None:
    new = stored(doc("Config", stringData=VALUE.decode()), config_spec(VALUE))
    assert new["spec"] == {"size": len(VALUE), "data": B64}
    assert config_same(VALUE, new) and not config_same(b"other", new)
    assert not config_same(VALUE, {"spec": {"data": "!!"}})


# -- immutability: created, unchanged, labels configured, another value refused ------

def _live(kind: str = "Config") -> dict[str, Any]:
    live = stored(doc(kind, stringData="x"), config_spec(VALUE))
    live["metadata"].update(uid="u-1", resourceVersion="7")
    return live


def test_created_when_absent() -> None:
    new = desired(doc(data=B64), None, lambda: {"size": 1, "sealed": "S"}, lambda _: True)
    assert new["spec"] == {"size": 1, "sealed": "S"} and "data" not in new


def test_same_value_keeps_the_live_spec_and_takes_the_labels() -> None:
    def never() -> dict[str, Any]:
        raise AssertionError("an unchanged value is never sealed again")
    user = doc("Config", data=B64)
    user["metadata"]["labels"] = {"app": "web"}
    new = desired(user, _live(), never, lambda live: config_same(VALUE, live))
    assert new["spec"] == _live()["spec"] and new["metadata"]["labels"] == {"app": "web"}


@pytest.mark.parametrize("kind", ["Secret", "Config"])
def test_another_value_is_refused_with_the_rotation_recipe(kind: str) -> None:
    with pytest.raises(ValueChanged) as caught:
        desired(doc(kind, stringData="hunter3-other"), _live(kind), dict, lambda _: False)
    message = str(caught.value)
    field = kind.lower()
    target = "dbpass" if kind == "Secret" else "/dbpass"
    assert "create dbpass.v2" in message
    assert (f"service update --{field}-rm dbpass --{field}-add source=dbpass.v2,"
            f"target={target} SERVICE") in message
    assert "hunter3" not in message and "\n" not in message


# -- what users see -----------------------------------------------------------------

def test_public_view_hides_a_secrets_sealed_text_and_digest() -> None:
    secret = stored(doc(), {"size": 7, "sealed": "SEALED", "keyId": "k", "digest": "D"})
    shown = public_view({**secret, "stringData": "plain"})
    assert shown["spec"] == {"size": 7, "keyId": "k"} and "stringData" not in shown
    assert secret["spec"]["sealed"] == "SEALED"  # the original is untouched
    config = _live()
    assert public_view(config) is config


# -- who uses one: removal is refused while a template references it ------------------

def test_users_are_the_services_of_its_namespace_that_reference_it() -> None:
    services = [
        service("web", secrets=[{"source": "dbpass", "target": "db"}]),
        service("api", secrets=[{"source": "dbpass"}], configs=[{"source": "dbpass"}]),
        service("other", secrets=[{"source": "another"}]),
        service("elsewhere", ns="prod", secrets=[{"source": "dbpass"}]),
        service("cfg", configs=[{"source": "dbpass"}]),
        service("junk", secrets="not-a-list"),
        {"kind": "Service", "metadata": {"name": "nospec"}},
    ]
    assert users("Secret", "default", "dbpass", services) == ["api", "web"]
    assert users("Config", "default", "dbpass", services) == ["api", "cfg"]
    assert users("Secret", "prod", "dbpass", services) == ["elsewhere"]
    assert users("Secret", "default", "dbpass", services, leaving=[("default", "web")]) == ["api"]
    assert users("Secret", "default", "unused", services) == []


def test_in_use_names_the_services() -> None:
    one = str(InUse("Secret", "default", "dbpass", ["web"]))
    assert one.startswith('secret "dbpass" is in use by service web:')
    assert "--secret-rm dbpass" in one
    two = str(InUse("Config", "prod", "webconf", ["api", "web"]))
    assert "by services api, web" in two and "-n prod --config-rm webconf" in two
