"""Names, namespaces, label keys and values."""

from __future__ import annotations

import pytest

from kubeless.api import label_key_error, label_value_error, name_error, namespace_error


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        pytest.param("web", True, id="simple"),
        pytest.param("web-1", True, id="dash"),
        pytest.param("1web", True, id="leading-digit"),
        pytest.param("a" * 63, True, id="63-chars"),
        pytest.param("a" * 64, False, id="64-chars"),
        pytest.param("", False, id="empty"),
        pytest.param("Web_1", False, id="upper-and-underscore"),
        pytest.param("-web", False, id="leading-dash"),
        pytest.param("web-", False, id="trailing-dash"),
        pytest.param("web.example", False, id="dot"),
        pytest.param(12, False, id="not-a-string"),
    ],
)
def test_name_error(name: object, ok: bool) -> None:
    assert (name_error(name) is None) is ok
    assert (namespace_error(name) is None) is ok


def test_name_error_message() -> None:
    assert name_error("Web_1") == (
        '"Web_1" is not a valid name: use lowercase letters, digits and \'-\', '
        "starting and ending with a letter or digit, at most 63 characters"
    )


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        pytest.param("app", True, id="plain"),
        pytest.param("App.Name_x-1", True, id="mixed"),
        pytest.param("kubeless.io/service", True, id="prefixed"),
        pytest.param("a" * 63, True, id="63-chars"),
        pytest.param("a" * 64, False, id="64-chars"),
        pytest.param("", False, id="empty"),
        pytest.param("/app", False, id="empty-prefix"),
        pytest.param("Kubeless.io/x", False, id="uppercase-prefix"),
        pytest.param("kubeless.io/", False, id="empty-name"),
        pytest.param("-app", False, id="leading-dash"),
        pytest.param("a b", False, id="space"),
    ],
)
def test_label_key_error(key: str, ok: bool) -> None:
    assert (label_key_error(key) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        pytest.param("", True, id="empty"),
        pytest.param("web", True, id="plain"),
        pytest.param("v1.2_3-x", True, id="mixed"),
        pytest.param("a" * 64, False, id="too-long"),
        pytest.param("a/b", False, id="slash"),
        pytest.param(1, False, id="int"),
    ],
)
def test_label_value_error(value: object, ok: bool) -> None:
    assert (label_value_error(value) is None) is ok
