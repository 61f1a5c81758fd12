"""Label selectors, as kubectl reads them (``-l``): the one grammar.

A selector is requirements separated by commas, all of which must hold
(an empty selector matches everything):

    key=value  key==value   the label is there and equals value
    key!=value              the label is absent or differs
    key in (v1,v2)          the label is there and is one of the values
    key notin (v1,v2)       the label is absent or is none of the values
    key                     the label is there
    !key                    the label is absent

Commas inside parentheses separate values, not requirements. Keys and
values must be valid label keys and values (names.py); a value may be
empty (``tier=``). ``parse_selector`` returns a frozen ``Selector`` or raises
``InvalidSelector``, whose message is one line: ``bad label selector "app in
web": expected "(" after in``. ``matches_selector`` applies it to a label map.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from kubeless.api.names import label_key_error, label_value_error

Op = Literal["=", "!=", "in", "notin", "exists", "!"]
_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|[^\s=!(),]+)")
_SYMBOLS = frozenset(("==", "!=", "=", "!", "(", ")", ","))


class InvalidSelector(ValueError):
    """Text that is not a label selector; str() is the whole one-line message."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f'bad label selector "{text}": {reason}')
        self.text, self.reason = text, reason


@dataclass(frozen=True)
class Requirement:
    """One requirement; ``values`` has one value for = and !=, none for exists and !."""

    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # != and notin

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return f"!{self.key}"
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        return f"{self.key}{self.op}{self.values[0]}"


@dataclass(frozen=True)
class Selector:
    """Requirements that must all hold."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return all(r.matches(labels or {}) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _tokens(text: str) -> list[str]:
    return [m.group(1) for m in _TOKEN.finditer(text) if m.group(1)]


class _Parser:
    """Recursive descent over the tokens; ``fail`` raises with the whole text."""

    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.at = text, _tokens(text), 0

    def fail(self, reason: str) -> InvalidSelector:
        return InvalidSelector(self.text, reason)

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.at += token is not None
        return token

    def requirements(self) -> Iterator[Requirement]:
        while self.peek() is not None:
            yield self.requirement()
            token = self.take()
            if token not in (None, ","):
                raise self.fail(f'expected "," between requirements, found "{token}"')
            if token == "," and self.peek() is None:
                raise self.fail("nothing after the last \",\"")

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return Requirement(self.key(), "!")
        key = self.key()
        op = self.peek()
        if op in (None, ","):
            return Requirement(key, "exists")
        self.take()
        if op in ("=", "==", "!="):
            return Requirement(key, "!=" if op == "!=" else "=", (self.value(),))
        if op in ("in", "notin"):
            return Requirement(key, "in" if op == "in" else "notin", self.value_set(op))
        raise self.fail(f'expected =, ==, !=, in or notin after "{key}", found "{op}"')

    def key(self) -> str:
        token = self.take()
        if token is None or token in _SYMBOLS:
            raise self.fail("expected a label key" + (f', found "{token}"' if token else ""))
        if (error := label_key_error(token)) is not None:
            raise self.fail(error)
        return token

    def value(self) -> str:
        token = self.peek()
        if token in (None, ",", ")"):
            return ""
        self.take()
        assert token is not None
        if token in _SYMBOLS:
            raise self.fail(f'expected a label value, found "{token}"')
        if (error := label_value_error(token)) is not None:
            raise self.fail(error)
        return token

    def value_set(self, op: str) -> tuple[str, ...]:
        if self.take() != "(":
            raise self.fail(f'expected "(" after {op}, as in "key {op} (a,b)"')
        values = [self.value()]
        while (token := self.take()) == ",":
            values.append(self.value())
        if token != ")":
            raise self.fail(f'expected ")" to close the values of {op}' if token is None
                            else f'expected "," or ")" in the values of {op}, found "{token}"')
        if values == [""]:
            raise self.fail(f"{op} needs at least one value")
        return tuple(dict.fromkeys(values))


def parse_selector(text: str | None) -> Selector:
    """``"app in (web,api),tier!=db,!canary"`` -> Selector; InvalidSelector on bad input."""
    parser = _Parser(text or "")
    return Selector(tuple(parser.requirements()))


def matches_selector(labels: Mapping[str, str] | None, selector: Selector) -> bool:
    """Whether a label map satisfies every requirement of ``selector``."""
    return selector.matches(labels)
