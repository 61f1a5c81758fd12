"""apply_defaults on small hand-written schemas."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubeless.api import apply_defaults

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "a": {"type": "integer", "default": 1},
        "obj": {"type": "object", "default": {}, "properties": {"x": {"type": "string", "default": "x"}}},
        "opt": {"type": "object", "properties": {"y": {"type": "integer", "default": 2}}},
        "list": {"type": "array", "items": {"type": "object", "properties": {"z": {"default": False}}}},
        "map": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {"w": {"default": 0}}}},
    },
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({}, {"a": 1, "obj": {"x": "x"}}, id="empty"),
        pytest.param({"a": 5}, {"a": 5, "obj": {"x": "x"}}, id="kept"),
        pytest.param({"opt": {}}, {"opt": {"y": 2}, "a": 1, "obj": {"x": "x"}}, id="present-optional"),
        pytest.param({"list": [{}, {"z": True}]}, {"list": [{"z": False}, {"z": True}], "a": 1,
                                                   "obj": {"x": "x"}}, id="array-items"),
        pytest.param({"map": {"k": {}}}, {"map": {"k": {"w": 0}}, "a": 1, "obj": {"x": "x"}},
                     id="map-values"),
        pytest.param({"obj": "oops"}, {"obj": "oops", "a": 1}, id="wrong-type-left-alone"),
        pytest.param("scalar", "scalar", id="scalar"),
    ],
)
def test_apply_defaults(value: Any, expected: Any) -> None:
    before = copy.deepcopy(value)
    assert apply_defaults(SCHEMA, value) == expected
    assert value == before


def test_defaults_are_copies() -> None:
    first = apply_defaults(SCHEMA, {})
    first["obj"]["x"] = "changed"
    assert SCHEMA["properties"]["obj"]["default"] == {}
    assert apply_defaults(SCHEMA, {})["obj"] == {"x": "x"}
