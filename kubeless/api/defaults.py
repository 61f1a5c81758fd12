"""Filling a document's missing fields from the ``default:`` values of its schema.

Pure: returns a new value and leaves the input untouched. Walks objects
(``properties`` and map-like ``additionalProperties``) and array ``items``.
A missing property with a default is created (an object default such as
``{}`` is then filled in turn); a missing property without one stays
missing. Values of the wrong type are left as they are for validation to
report.
"""

from __future__ import annotations

import copy
from typing import Any


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """``value`` with every missing defaulted property of ``schema`` filled in."""
    if isinstance(value, dict):
        return _object_defaults(schema, value)
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [apply_defaults(items, item) for item in value]
    return copy.deepcopy(value)


def _object_defaults(schema: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    out: dict[str, Any] = {}
    for key, item in value.items():
        sub = properties.get(key, extra if isinstance(extra, dict) else None)
        out[key] = apply_defaults(sub, item) if sub is not None else copy.deepcopy(item)
    for key, sub in properties.items():
        if key not in out and "default" in sub:
            out[key] = apply_defaults(sub, copy.deepcopy(sub["default"]))
    return out
