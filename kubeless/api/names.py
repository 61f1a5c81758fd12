"""Rules for names, namespaces, label keys and label values.

Names and namespaces are DNS-1123 labels, as in Kubernetes. Label keys are
an optional DNS-subdomain prefix and '/', then a name part; label values are
short and may be empty. Each check returns None when fine, else a message
without the field path (callers put it in a Violation with the path).
"""

from __future__ import annotations

import re

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
_NAME_RULE = (
    "use lowercase letters, digits and '-', starting and ending with a letter "
    "or digit, at most 63 characters"
)
_LABEL_RULE = (
    "use letters, digits, '-', '_' and '.', starting and ending with a letter "
    "or digit, at most 63 characters"
)


def _dns_label_error(value: object, what: str) -> str | None:
    if not isinstance(value, str):
        return f"{what} must be a string, not {type(value).__name__}"
    if _DNS_LABEL.match(value):
        return None
    return f'"{value}" is not a valid {what}: {_NAME_RULE}'


def name_error(name: object) -> str | None:
    """Why ``name`` is not a valid resource name, or None."""
    return _dns_label_error(name, "name")


def namespace_error(namespace: object) -> str | None:
    """Why ``namespace`` is not a valid namespace, or None."""
    return _dns_label_error(namespace, "namespace")


def label_key_error(key: object) -> str | None:
    """Why ``key`` is not a valid label (or annotation) key, or None."""
    if not isinstance(key, str):
        return f"a label key must be a string, not {type(key).__name__}"
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return (
            f'"{key}" has an invalid prefix "{prefix}": use a DNS subdomain '
            "(lowercase letters, digits, '-' and '.') of at most 253 characters"
        )
    if not _LABEL_NAME.match(name):
        return f'"{key}" is not a valid label key: {_LABEL_RULE} (after an optional "prefix/")'
    return None


def label_value_error(value: object) -> str | None:
    """Why ``value`` is not a valid label value (may be empty), or None."""
    if not isinstance(value, str):
        return f"a label value must be a string, not {type(value).__name__} (quote it)"
    if value == "" or _LABEL_NAME.match(value):
        return None
    return f'"{value}" is not a valid label value: {_LABEL_RULE}, or empty'


_NOT_LABEL_CHARS = re.compile(r"[^a-z0-9-]+")


def dns_label(text: str) -> str:
    """``My_Host.example`` -> ``my-host``: the first DNS label, lowercased, made valid."""
    first = text.strip().split(".")[0].lower()
    label = _NOT_LABEL_CHARS.sub("-", first).strip("-")[:63].strip("-")
    return label or "node"
