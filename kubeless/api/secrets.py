"""Secrets and Configs: from the document a user gives to the one etcd stores (pure).

A user gives one value, as Swarm's secrets and configs hold one, written at
the top level as Kubernetes writes a Secret: exactly one of ``data``
(base64) and ``stringData`` (text), 1 byte to ``MAX_BYTES`` (500 KiB). What
is stored replaces them with a ``spec`` that kubeless writes:

    Secret  spec: {size, sealed, keyId, digest}   the value sealed to the cluster's
                                                  secrets key, never the value itself
    Config  spec: {size, data}                    plain base64, as Swarm stores configs

Values are immutable, as Swarm's: a document applied again with the same
value is unchanged (its labels and annotations may change); another value
is refused (``ValueChanged``, whose message is the rotation recipe). A
Secret or Config that a Service's template references cannot be removed
(``InUse`` names the services). Sealing and the digest are
``kubeless.cluster.sealing``'s: the decisions here take their results (or a
predicate) as arguments. ``public_view`` is what users are shown: never a
Secret's sealed text nor its digest. No message here ever holds a value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kubeless.api.errors import InvalidResource, ValueChanged, Violation
from kubeless.api.file_refs import FIELDS, MAX_BYTES, referenced
from kubeless.api.kinds import API_VERSION

Resource = dict[str, Any]

KINDS = tuple(FIELDS)  # ("Secret", "Config")
VALUE_FIELDS = ("data", "stringData")
HIDDEN = ("sealed", "digest")  # a Secret's spec fields never shown


def is_file_kind(kind: object) -> bool:
    """Whether ``kind`` is Secret or Config."""
    return kind in FIELDS


def size_error(size: int) -> str | None:
    """Why a value of ``size`` bytes cannot be stored (None: it can)."""
    if size == 0:
        return "the value is empty"
    if size > MAX_BYTES:
        return (f"the value is {size} bytes, more than {MAX_BYTES} "
                f"({MAX_BYTES // 1024} KiB, Swarm's limit)")
    return None


def value_of(doc: Resource) -> bytes:
    """The value a user's document gives (``data`` decoded, or ``stringData``);
    InvalidResource, with one violation that never quotes the value, when it gives
    none, both, or one that cannot be stored."""
    given = [f for f in VALUE_FIELDS if f in doc]
    if not given:
        _refuse("data", "required: the value, base64 (or stringData: the value as text)")
    if len(given) > 1:
        _refuse("stringData", "give data (base64) or stringData, not both")
    field = given[0]
    raw = doc[field]
    if not isinstance(raw, str):
        _refuse(field, f"must be text, not {type(raw).__name__}"
                       + (" (base64 of the value)" if field == "data" else " (quote it)"))
    if field == "data":
        try:
            value = base64.b64decode("".join(raw.split()), validate=True)
        except (binascii.Error, ValueError):
            _refuse(field, "is not valid base64 (give the text itself as stringData instead)")
    else:
        value = raw.encode()
    error = size_error(len(value))
    if error is not None:
        _refuse(field, error)
    return value


def _refuse(path: str, message: str) -> Any:
    raise InvalidResource([Violation(path, message)])


def violations(doc: Resource) -> Iterator[Violation]:
    """What validation adds for a Secret's or Config's document: its value's shape and
    size; a ``spec`` is kubeless's to write, never a user's."""
    if "spec" in doc:
        yield Violation("spec", "is written by kubeless; give the value as data (base64) "
                                "or stringData")
        if not any(f in doc for f in VALUE_FIELDS):
            return
    try:
        value_of(doc)
    except InvalidResource as err:
        yield from err.violations


def config_spec(value: bytes) -> dict[str, Any]:
    """A Config's stored spec: the value plain (base64) and its size."""
    return {"size": len(value), "data": base64.b64encode(value).decode()}


def secret_spec(value: bytes, *, sealed: str, key_id: str, digest: str) -> dict[str, Any]:
    """A Secret's stored spec: its size and what ``sealing`` made of the value."""
    return {"size": len(value), "sealed": sealed, "keyId": key_id, "digest": digest}


def config_same(value: bytes, live: Resource) -> bool:
    """Whether a stored Config holds ``value``."""
    data = (live.get("spec") or {}).get("data")
    try:
        return isinstance(data, str) and base64.b64decode(data, validate=True) == value
    except (binascii.Error, ValueError):
        return False


def stored(doc: Resource, spec: dict[str, Any]) -> Resource:
    """The document etcd holds: the user's envelope, ``spec`` instead of the value."""
    return {"apiVersion": doc.get("apiVersion", API_VERSION), "kind": doc["kind"],
            "metadata": dict(doc.get("metadata") or {}), "spec": dict(spec)}


def desired(doc: Resource, live: Resource | None, new_spec: Callable[[], dict[str, Any]],
            same: Callable[[Resource], bool]) -> Resource:
    """What applying ``doc`` (validated) over ``live`` (None: absent) stores: a new
    document (``new_spec()``: the value sealed or encoded), or, when ``same(live)``
    says the value is the stored one, the live spec with the document's labels and
    annotations (``merge`` then finds it unchanged or configured). ValueChanged when
    the value differs."""
    if live is None:
        return stored(doc, new_spec())
    if not same(live):
        meta = doc["metadata"]
        raise ValueChanged(doc["kind"], meta.get("namespace") or "default", meta["name"])
    return stored(doc, live.get("spec") or {})


def public_view(doc: Resource) -> Resource:
    """``doc`` as users may see it: a Secret without its sealed text, digest or any
    value field; everything else as it is (a copy when anything was dropped)."""
    if doc.get("kind") != "Secret":
        return doc
    out = {k: v for k, v in doc.items() if k not in VALUE_FIELDS}
    if isinstance(out.get("spec"), dict):
        out["spec"] = {k: v for k, v in out["spec"].items() if k not in HIDDEN}
    return out


def users(kind: str, namespace: str, name: str, services: Iterable[Resource],
          leaving: Iterable[tuple[str, str]] = ()) -> list[str]:
    """The names of the Services (in ``namespace``) whose template references the
    Secret or Config, except those ``leaving`` ((namespace, name) removed alongside)."""
    gone = set(leaving)
    found = set()
    for service in services:
        meta = service.get("metadata") or {}
        ref = (meta.get("namespace") or "default", meta.get("name"))
        if ref[0] != namespace or ref in gone:
            continue
        if (kind, name) in _references(service):
            found.add(str(ref[1]))
    return sorted(found)


def _references(service: Resource) -> set[tuple[str, str]]:
    spec = service.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    if not isinstance(template, dict):
        return set()
    try:
        return referenced(template)
    except (KeyError, TypeError, ValueError, AttributeError):
        # A template written behind kubeless's back: read its sources as they are.
        out = set()
        for kind, field in FIELDS.items():
            entries = template.get(field)
            for entry in entries if isinstance(entries, list) else ():
                if isinstance(entry, dict):
                    out.add((kind, str(entry.get("source"))))
        return out
