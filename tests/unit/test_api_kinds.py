"""Loading kinds from the CRDs and resolving the words users type."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kubeless.api import UnknownKind, crds_dir, load_kinds, resolve_kind


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("Service", "Service"), ("service", "Service"), ("services", "Service"),
        ("svc", "Service"), ("SVC", "Service"), ("Node", "Node"), ("no", "Node"),
        ("nodes", "Node"), ("task", "Task"), ("Tasks", "Task"),
    ],
)
def test_resolve_kind(word: str, kind: str) -> None:
    assert resolve_kind(word).kind == kind


def test_unknown_kind_lists_known_kinds_and_suggests() -> None:
    with pytest.raises(UnknownKind) as caught:
        resolve_kind("servce")
    message = str(caught.value)
    assert 'unknown kind "servce"' in message
    assert "known kinds are Config, Node, Route, Secret, Service, Task" in message
    assert "did you mean Service?" in message


def test_kind_fields() -> None:
    node = load_kinds()["Node"]
    assert (node.plural, node.singular, node.short_names, node.namespaced) == ("nodes", "node", ("no",), False)
    assert load_kinds()["Service"].namespaced
    assert node.api_version == "kubeless.io/v1"


def test_load_is_cached() -> None:
    assert load_kinds()["Service"] is load_kinds()["Service"]


def test_env_var_chooses_the_crd_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(crds_dir() / "node.yaml", tmp_path / "node.yaml")
    monkeypatch.setenv("KUBELESS_CRDS_DIR", str(tmp_path))
    assert list(load_kinds()) == ["Node"]
    with pytest.raises(UnknownKind):
        resolve_kind("svc")
