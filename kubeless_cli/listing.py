"""docker's ``--filter`` and ``--format`` for the ls commands (service ls, service ps, node ls).

``--filter KEY=VALUE`` (repeatable): filters on different keys must all match,
several values of one key match when any does (docker's rule). Each command
names the keys it takes as ``Rule``s: a function from an item and a value to
whether it matches (``prefix``, ``exact`` and ``labelled`` build the usual ones).

``--format`` is the subset of Go templates docker users type: ``{{.Field}}``
placeholders (spaces inside the braces allowed), ``\\t`` and ``\\n`` escapes, and a
``table`` prefix that adds a header (the field names in docker's capitals,
``DesiredState`` -> ``DESIRED STATE``) and aligns the tab-separated columns.
``table`` alone is the command's default table. Anything else between braces,
or an unknown field, is one line of error naming the fields there are.

Pure functions on plain data; the commands read etcd and print.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from kubeless_cli.printers import format_rows

Rule = Callable[[Any, str], bool]
Filters = dict[str, list[str]]
T = TypeVar("T")

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_FIELD = re.compile(r"^\s*\.([A-Za-z][A-Za-z0-9]*)\s*$")
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z0-9]+|[A-Z]+")


class ListingError(ValueError):
    """A --filter or --format that cannot be used: one line naming it."""


def checked(make: Callable[[], T]) -> T:
    """``make()``; a ListingError it raises is the command's usage error (one line, exit 2)."""
    from kubeless_cli.context import USAGE, CliError

    try:
        return make()
    except ListingError as err:
        raise CliError(str(err), USAGE) from None


def prefix(value_of: Callable[[Any], str]) -> Rule:
    """Matches when the item's value starts with the filter's (docker's id= and name=)."""
    return lambda item, wanted: str(value_of(item) or "").startswith(wanted)


def exact(value_of: Callable[[Any], str]) -> Rule:
    """Matches when the item's value is the filter's, case aside (role=, mode=)."""
    return lambda item, wanted: str(value_of(item) or "").lower() == wanted.lower()


def labelled(labels_of: Callable[[Any], Mapping[str, str] | None]) -> Rule:
    """``label=KEY`` (the label is there) or ``label=KEY=VALUE`` (with that value)."""
    def rule(item: Any, wanted: str) -> bool:
        labels = labels_of(item) or {}
        key, sep, value = wanted.partition("=")
        return key in labels and (not sep or str(labels[key]) == value)
    return rule


def parse_filters(raw: Iterable[str], rules: Mapping[str, Rule]) -> Filters:
    """``("name=web", "label=tier")`` -> {"name": ["web"], "label": ["tier"]}, checked."""
    filters: Filters = {}
    for text in raw:
        key, sep, value = text.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise ListingError(f"invalid --filter {text!r}: expected KEY=VALUE, e.g. name=web")
        if key not in rules:
            raise ListingError(f"invalid --filter {text!r}: unknown key {key!r} "
                               f"(use {', '.join(sorted(rules))})")
        filters.setdefault(key, []).append(value.strip())
    return filters


def matching(items: Iterable[Any], filters: Filters, rules: Mapping[str, Rule]) -> list[Any]:
    """The items every filter key matches (any of its values)."""
    return [item for item in items
            if all(any(rules[key](item, v) for v in values) for key, values in filters.items())]


def header_of(field: str) -> str:
    """docker's column header for a field: ``DesiredState`` -> ``DESIRED STATE``."""
    return " ".join(_WORD.findall(field)).upper()


def check_format(template: str | None, fields: Sequence[str]) -> None:
    """ListingError when ``template`` names an unknown field or is more than placeholders
    (before the command reads anything)."""
    render(template, fields, [], "")


def render(template: str | None, fields: Sequence[str], records: Sequence[Mapping[str, str]],
           default: str) -> str:
    """The records through ``template`` (or ``default``, a ``table`` template, when None
    or just ``table``)."""
    text = (template or "").strip()
    if not text or text == "table":
        text = default or "table"
    table = text.startswith("table ") or text.startswith("table\t")
    body = _unescape(text[len("table"):].lstrip(" ") if table else text)
    _check(body, fields)
    lines = [_fill(body, record) for record in records]
    if not table:
        return "".join(f"{line}\n" for line in lines)
    head = _fill(body, {f: header_of(f) for f in fields})
    rows = [line.split("\t") for line in [head, *lines]]
    width = max(len(r) for r in rows)
    padded = [r + [""] * (width - len(r)) for r in rows]
    return format_rows(padded[0], padded[1:])


def _unescape(text: str) -> str:
    return text.replace("\\t", "\t").replace("\\n", "\n")


def _check(body: str, fields: Sequence[str]) -> None:
    for inside in _PLACEHOLDER.findall(body):
        match = _FIELD.match(inside)
        if match is None:
            raise ListingError(f"invalid --format {{{{{inside}}}}}: only {{{{.Field}}}} "
                               f"placeholders are supported (fields: {_names(fields)})")
        if match.group(1) not in fields:
            raise ListingError(f"invalid --format: unknown field .{match.group(1)} "
                               f"(fields: {_names(fields)})")


def _names(fields: Sequence[str]) -> str:
    return ", ".join(f".{f}" for f in fields)


def _fill(body: str, record: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: str(record.get(m.group(1).strip()[1:], "")), body)


def filter_option(keys: str) -> Callable[[Any], Any]:
    """``-f/--filter KEY=VALUE`` (repeatable), its help naming the command's ``keys``."""
    import click

    return click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
                        help=f"Only what matches (docker's filters: {keys}).")


def format_option(fields: Sequence[str]) -> Callable[[Any], Any]:
    """``--format TEMPLATE``, its help naming the ``fields`` a template may use."""
    import click

    return click.option("--format", "template", metavar="TEMPLATE",
                        help="Go-template-like output: 'table {{.Name}}\\t{{.Image}}' "
                             f"(fields: {_names(fields)}).")
