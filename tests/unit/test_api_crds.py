"""The CRD files themselves: well-formed, defaults valid, columns parseable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from kubeless.api import crds_dir, load_kinds, parse_json_path, resolve_kind, to_json_schema

CRD_FILES = sorted(crds_dir().glob("*.yaml"))
EXPECTED = {
    "Service": ("services", "service", ("svc",), "Namespaced"),
    "Node": ("nodes", "node", ("no",), "Cluster"),
    "Task": ("tasks", "task", (), "Namespaced"),
    "Secret": ("secrets", "secret", (), "Namespaced"),
    "Config": ("configs", "config", ("cfg", "cm"), "Namespaced"),
    "Route": ("routes", "route", ("rt",), "Namespaced"),
}
# Kinds whose value users give at the top level (data or stringData), with no status.
FILE_KINDS = ("Secret", "Config")


def _crd(path: Path) -> dict[str, Any]:
    with path.open() as stream:
        doc: dict[str, Any] = yaml.load(stream, Loader=yaml.CSafeLoader)
    return doc


def _walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}.*")


def test_one_crd_per_kind() -> None:
    assert [p.name for p in CRD_FILES] == ["config.yaml", "node.yaml", "route.yaml",
                                           "secret.yaml", "service.yaml", "task.yaml"]


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_crd_has_required_fields(path: Path) -> None:
    crd = _crd(path)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    spec = crd["spec"]
    names = spec["names"]
    assert crd["metadata"]["name"] == f"{names['plural']}.kubeless.io"
    assert spec["group"] == "kubeless.io"
    plural, singular, short, scope = EXPECTED[names["kind"]]
    assert (names["plural"], names["singular"], tuple(names["shortNames"]), spec["scope"]) == (
        plural, singular, short, scope)
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["type"] == "object"
    if names["kind"] in FILE_KINDS:
        assert "status" not in schema["properties"]
        assert {"data", "stringData", "spec"} <= set(schema["properties"])
    else:
        assert schema["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True
    for column in version["additionalPrinterColumns"]:
        assert set(column) <= {"name", "type", "jsonPath", "priority", "description"}
        assert column["type"] in {"string", "integer", "number", "boolean", "date"}
        assert column["priority"] in (0, 1)
        assert parse_json_path(column["jsonPath"])


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_every_default_validates_against_its_own_subschema(path: Path) -> None:
    schema = _crd(path)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    defaults = [(where, sub) for where, sub in _walk(schema) if "default" in sub]
    assert defaults or path.stem in ("secret", "config")
    for where, sub in defaults:
        errors = list(Draft202012Validator(to_json_schema(sub)).iter_errors(sub["default"]))
        assert not errors, f"{path.name} {where}: {errors[0].message}"


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_spec_objects_refuse_unknown_fields(path: Path) -> None:
    schema = _crd(path)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for where, sub in _walk(schema["properties"]["spec"], ".spec"):
        if sub.get("type") == "object" and "properties" in sub:
            assert sub.get("additionalProperties") is False, where


@pytest.mark.parametrize("field", ["template", "placement", "ports"])
def test_task_copies_of_service_subschemas_are_equal(field: str) -> None:
    kinds = load_kinds()
    service = kinds["Service"].schema["properties"]["spec"]["properties"][field]
    task = kinds["Task"].schema["properties"]["spec"]["properties"][field]
    assert task == service


@pytest.mark.parametrize(
    ("kind", "wide", "columns"),
    [
        ("Service", False, ["MODE", "REPLICAS", "IMAGE", "PORTS", "AGE"]),
        ("Service", True, ["MODE", "REPLICAS", "IMAGE", "PORTS", "AGE", "GENERATION"]),
        ("Node", False, ["STATUS", "AVAILABILITY", "ROLE", "AGE"]),
        ("Task", False, ["SERVICE", "SLOT", "NODE", "DESIRED", "STATE", "AGE"]),
        ("Task", True, ["SERVICE", "SLOT", "NODE", "DESIRED", "STATE", "AGE", "ERROR"]),
        ("Secret", False, ["SIZE", "AGE"]),
        ("Config", True, ["SIZE", "AGE", "LABELS"]),
        ("Route", False, ["PORT", "PROTOCOL", "BACKENDS", "AGE"]),
        ("Route", True, ["PORT", "PROTOCOL", "BACKENDS", "AGE", "WEIGHTS"]),
    ],
)
def test_printer_columns(kind: str, wide: bool, columns: list[str]) -> None:
    found = [c.name for c in resolve_kind(kind).printer_columns if wide or c.priority == 0]
    assert found == columns
