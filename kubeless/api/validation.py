"""Checking a whole resource document and returning it with defaults filled.

The envelope (apiVersion, kind, metadata) is checked here in code, as
Kubernetes does; spec and status are checked against the kind's CRD schema
(see schema.py) after defaults are applied (defaults.py); then the rules a
structural schema cannot say: image references (images.py), placement
constraints and spread attributes (constraints.py), mount sources and the
files of secrets and configs (file_refs.py), a Route's backends (routes.py). The
CRD keeps only the shape of those fields: these grammars are the judges.
Every problem is collected, so a user sees all of them at once, each with
its path.
Unknown apiVersion or kind stop early: nothing else can be checked.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kubeless.api import file_refs
from kubeless.api.constraints import InvalidConstraint, constraint_error, normalise_key
from kubeless.api.defaults import apply_defaults
from kubeless.api.errors import InvalidResource, UnknownApiVersion, UnknownKind, Violation, join_path
from kubeless.api.images import image_error
from kubeless.api.kinds import API_VERSION, Kind, load_kinds
from kubeless.api.limits import size_violations
from kubeless.api.names import label_key_error, label_value_error, name_error, namespace_error
from kubeless.api import routes
from kubeless.api import workload
from kubeless.api.ports import repeated_ports
from kubeless.api.schema import validator_for
from kubeless.api.secrets import is_file_kind, violations as value_violations

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")
METADATA_FIELDS = (
    "name", "namespace", "labels", "annotations", "uid", "generation",
    "resourceVersion", "creationTimestamp",
)
DEFAULT_NAMESPACE = "default"
_FORMAT_HINTS = {
    "duration": "is not a duration like 10s, 1m30s, 500ms",
    "size": "is not a size like 64Mi, 1Gi, 512M, 100k or a number of bytes",
    "id": f"is not a uid or gid: {file_refs.ID_RULE} (quoted in YAML)",
    "mode": f"is not a file mode: {file_refs.MODE_RULE} "
            "(its leading 0 makes YAML read it as octal)",
}
# Formats whose hint replaces whatever the schema says (a type, a range), not only a pattern.
_WHOLLY_HINTED = ("id", "mode")


def validate(doc: Any) -> dict[str, Any]:
    """Check ``doc`` and return a copy with defaults (and namespace) filled in.

    Raises UnknownApiVersion, UnknownKind, or InvalidResource with every violation.
    """
    if not isinstance(doc, dict):
        what = type(doc).__name__
        raise InvalidResource([Violation("", f"a resource must be a mapping, not {what}")])
    kind = kind_of(doc)
    out: dict[str, Any] = apply_defaults(kind.schema, doc)
    found = [*_top_level(kind, out), *_metadata(kind, out), *_schema(kind, out), *_semantics(kind, out),
             *size_violations(kind.kind, out)]
    violations = list(dict.fromkeys(found))
    if violations:
        raise InvalidResource(violations, subject=describe(kind, out))
    return out


def kind_of(doc: dict[str, Any]) -> Kind:
    """The Kind a document declares, after checking its apiVersion."""
    api_version = doc.get("apiVersion")
    if api_version != API_VERSION:
        raise UnknownApiVersion(api_version, API_VERSION)
    kinds = load_kinds()
    word = doc.get("kind")
    if isinstance(word, str) and word in kinds:
        return kinds[word]
    text = word if isinstance(word, str) else ("" if word is None else repr(word))
    lowered = {k.lower(): k for k in kinds}
    suggestion = lowered.get(text.lower()) or next(iter(difflib.get_close_matches(text, list(kinds), n=1)), None)
    raise UnknownKind(text, list(kinds), suggestion)


def describe(kind: Kind, doc: dict[str, Any]) -> str:
    """"Service default/web" or "Node node-1" (for messages)."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    name = meta.get("name") if isinstance(meta.get("name"), str) else "?"
    if kind.namespaced:
        return f"{kind.kind} {meta.get('namespace') or DEFAULT_NAMESPACE}/{name}"
    return f"{kind.kind} {name}"


def _unknown_field(path: list[str | int], known: tuple[str, ...]) -> Violation:
    close = difflib.get_close_matches(str(path[-1]), known, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return Violation(join_path(path), f"unknown field{hint}")


def _top_level(kind: Kind, doc: dict[str, Any]) -> Iterator[Violation]:
    """Keys the kind's schema does not declare at the top (a Secret's are data and
    stringData, not status)."""
    declared = tuple(kind.schema.get("properties") or ())
    known = tuple(dict.fromkeys(("apiVersion", "kind", "metadata", *declared))) \
        if declared else TOP_LEVEL
    for key in doc:
        if key not in known:
            yield _unknown_field([key], known)


def _metadata(kind: Kind, doc: dict[str, Any]) -> Iterator[Violation]:
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        yield Violation("metadata", "required: a mapping with at least a name" if meta is None else "must be a mapping")
        return
    for key in meta:
        if key not in METADATA_FIELDS:
            yield _unknown_field(["metadata", key], METADATA_FIELDS)
    yield from _name_and_namespace(kind, meta)
    yield from _string_map(meta, "labels", label_value_error)
    yield from _string_map(meta, "annotations", None)
    yield from _bookkeeping(meta)


def _name_and_namespace(kind: Kind, meta: dict[str, Any]) -> Iterator[Violation]:
    # A Secret's or Config's name is what a template's source names (dots allowed: dbpass.v2).
    check_name = file_refs.source_error if is_file_kind(kind.kind) else name_error
    if "name" not in meta:
        yield Violation("metadata.name", "required")
    elif (error := check_name(meta["name"])) is not None:
        yield Violation("metadata.name", error)
    namespace = meta.get("namespace")
    if not kind.namespaced:
        if namespace not in (None, ""):
            yield Violation("metadata.namespace", f"{kind.kind} is cluster-scoped")
        meta.pop("namespace", None)
    elif namespace in (None, ""):
        meta["namespace"] = DEFAULT_NAMESPACE
    elif (error := namespace_error(namespace)) is not None:
        yield Violation("metadata.namespace", error)


def _string_map(meta: dict[str, Any], field: str, check_value: Any) -> Iterator[Violation]:
    value = meta.get(field)
    if value is None:
        return
    if not isinstance(value, dict):
        yield Violation(f"metadata.{field}", "must be a mapping of strings to strings")
        return
    for key, item in value.items():
        path = join_path(["metadata", field, str(key)])
        if (error := label_key_error(key)) is not None:
            yield Violation(path, error)
        if check_value is not None and (error := check_value(item)) is not None:
            yield Violation(path, error)
        elif not isinstance(item, str):
            yield Violation(path, f"must be a string, not {type(item).__name__} (quote it)")


def _bookkeeping(meta: dict[str, Any]) -> Iterator[Violation]:
    for field in ("uid", "resourceVersion", "creationTimestamp"):
        if field in meta and not isinstance(meta[field], str):
            yield Violation(f"metadata.{field}", "must be a string")
    generation = meta.get("generation")
    if generation is not None and (not isinstance(generation, int) or isinstance(generation, bool) or generation < 0):
        yield Violation("metadata.generation", "must be an integer >= 0")


def _schema(kind: Kind, doc: dict[str, Any]) -> Iterator[Violation]:
    body = {key: doc[key] for key in ("spec", "status") if key in doc}
    for error in validator_for(kind.schema).iter_errors(body):
        yield from _violations(error)


def _violations(error: "ValidationError") -> Iterator[Violation]:
    path: list[str | int] = list(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = tuple(error.schema.get("properties") or ())
        for key in error.instance:
            if key not in known:
                yield _unknown_field([*path, key], known)
        return
    if error.validator == "required" and isinstance(error.instance, dict):
        for key in error.validator_value:
            if key not in error.instance:
                yield Violation(join_path([*path, key]), "required")
        return
    form = str(error.schema.get("format"))
    hint = _FORMAT_HINTS.get(form)
    if hint and (error.validator == "pattern" or form in _WHOLLY_HINTED):
        yield Violation(join_path(path), f"{error.instance!r} {hint}")
    else:
        yield Violation(join_path(path), error.message)


def _semantics(kind: Kind, doc: dict[str, Any]) -> Iterator[Violation]:
    """Rules a structural schema cannot say: grammars (images, constraints), mounts, ports,
    the files of secrets and configs; a Secret's or Config's value (never quoted)."""
    if is_file_kind(kind.kind):
        yield from value_violations(doc)
        return
    if kind.kind == "Route":
        for path, message in routes.problems(doc):
            yield Violation(join_path(path), message)
        return
    yield from _repeated_ports(doc)
    for path, message in workload.problems(doc):
        yield Violation(join_path(path), message)
    spec = doc.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    if isinstance(template, dict):
        yield from _image(template)
        yield from _mounts(template)
        for path, message in file_refs.problems(template):
            yield Violation(join_path(["spec", "template", *path]), message)
    placement = spec.get("placement") if isinstance(spec, dict) else None
    if isinstance(placement, dict):
        yield from _placement(placement)


def _repeated_ports(doc: dict[str, Any]) -> Iterator[Violation]:
    spec = doc.get("spec")
    ports = spec.get("ports") if isinstance(spec, dict) else None
    for index, first, (number, proto) in repeated_ports(ports if isinstance(ports, list) else []):
        path = join_path(["spec", "ports", index, "published"])
        yield Violation(path, f"{number}/{proto} is already published by spec.ports[{first}]")
    for index, port in enumerate(ports if isinstance(ports, list) else []):
        if isinstance(port, dict) and port.get("proxyProtocol") == "v1" \
                and (port.get("protocol") or "tcp") != "tcp":
            yield Violation(join_path(["spec", "ports", index, "proxyProtocol"]),
                            "v1 needs protocol tcp (a PROXY header opens a tcp stream)")


def _image(template: dict[str, Any]) -> Iterator[Violation]:
    image = template.get("image")
    if isinstance(image, str) and image and (error := image_error(image)) is not None:
        yield Violation("spec.template.image", error)


def _placement(placement: dict[str, Any]) -> Iterator[Violation]:
    constraints = placement.get("constraints")
    for index, text in enumerate(constraints if isinstance(constraints, list) else []):
        if isinstance(text, str) and (error := constraint_error(text)) is not None:
            yield Violation(join_path(["spec", "placement", "constraints", index]), error)
    preferences = placement.get("preferences")
    for index, pref in enumerate(preferences if isinstance(preferences, list) else []):
        spread = pref.get("spread") if isinstance(pref, dict) else None
        if isinstance(spread, str) and spread:
            try:
                normalise_key(spread)
            except InvalidConstraint as exc:
                path = join_path(["spec", "placement", "preferences", index, "spread"])
                yield Violation(path, str(exc))


def _mounts(template: dict[str, Any]) -> Iterator[Violation]:
    mounts = template.get("mounts")
    for index, mount in enumerate(mounts if isinstance(mounts, list) else []):
        if not isinstance(mount, dict):
            continue
        path = join_path(["spec", "template", "mounts", index, "source"])
        if mount.get("type") in ("bind", "volume") and "source" not in mount:
            yield Violation(path, f"required for a {mount['type']} mount")
        if mount.get("type") == "tmpfs" and "source" in mount:
            yield Violation(path, "a tmpfs mount has no source")
