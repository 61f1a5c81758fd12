"""Turning a CRD's openAPIV3Schema into JSON Schema, and validators for it.

The two dialects differ in a few places: ``nullable: true`` adds "null" to
the type, ``x-kubernetes-int-or-string: true`` means integer or string, and
other ``x-kubernetes-*`` keys say nothing to a validator. ``format`` is kept
as an annotation (never asserted): duration and size strings are checked by
their ``pattern``. jsonschema is imported only when a validator is built,
so commands that never validate do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

_SUBSCHEMA_KEYS = ("items", "additionalProperties", "not")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_validators: dict[int, tuple[dict[str, Any], "Validator"]] = {}


def to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema (2020-12) equivalent of an openAPIV3Schema node."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in _SUBSCHEMA_KEYS and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in _SUBSCHEMA_LISTS:
            out[key] = [to_json_schema(sub) for sub in value]
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string") and "type" not in out:
        out["type"] = ["integer", "string"]
    if schema.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    return out


def validator_for(schema: dict[str, Any]) -> "Validator":
    """A (cached) Draft 2020-12 validator for an openAPIV3Schema."""
    cached = _validators.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    from jsonschema import Draft202012Validator

    validator: Validator = Draft202012Validator(to_json_schema(schema))
    _validators[id(schema)] = (schema, validator)
    return validator
