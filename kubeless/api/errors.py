"""Errors raised by kubeless.api, the pure resource layer.

Every error here is terminal and the user's to fix (a bad document, an
unknown kind): retrying changes nothing. Callers add where the document came
from (``source``, e.g. ``"web.yaml document 2"``) before showing it.

    ApiError
    +-- InvalidResource     one or more Violations (path + message)
    +-- UnknownKind         the kind is not one of the known kinds
    +-- UnknownApiVersion   apiVersion is not kubeless.io/v1
    +-- PortsRefused        published ports another service holds, declared twice,
                            or none free to allocate (``problems``: one line each)
    +-- MissingReference    a service's template refers to a Secret or Config that
                            does not exist in its namespace
    +-- ValueChanged        a Secret's or Config's value differs from the stored one
                            (values are immutable: the message gives the rotation)
    +-- InUse               a Secret or Config to remove that Services still use
                            (``services``: their names)

Also here: ``Violation`` and ``join_path``, which writes a path the way a user
reads it (``spec.template.mounts[0].type``, ``metadata.labels["kubeless.io/x"]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def join_path(parts: Iterable[str | int]) -> str:
    """Write a path as ``spec.ports[0].target``; odd keys as ``["a.b/c"]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


@dataclass(frozen=True)
class Violation:
    """One thing wrong with a document, at a path like ``spec.replicas``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ApiError(Exception):
    """Base of every kubeless.api error; ``source`` says where the document came from."""

    def __init__(self, message: str, source: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message


class InvalidResource(ApiError):
    """A document broke one or more rules; ``violations`` lists them all.

    str() is one line for one violation (``web.yaml:1 (Service default/web):
    spec.replicas: ...``), else a count and a line per violation.

    ``subject`` names the resource when known (``"Service default/web"``);
    ``source`` is set by callers that read files. Shown on one line when there
    is one violation, else a summary line and one indented line per violation.
    """

    def __init__(
        self,
        violations: Sequence[Violation],
        source: str | None = None,
        subject: str | None = None,
    ) -> None:
        self.violations = list(violations)
        self.subject = subject
        super().__init__(self._summary(), source)

    def _summary(self) -> str:
        count = len(self.violations)
        return f"{count} error" if count == 1 else f"{count} errors"

    def __str__(self) -> str:
        head = " ".join(
            part
            for part in (self.source, f"({self.subject})" if self.subject else None)
            if part
        )
        if len(self.violations) == 1:  # one line: where, then the violation
            return f"{head or 'invalid resource'}: {self.violations[0]}"
        first = f"{head}: {self._summary()}" if head else f"invalid resource: {self._summary()}"
        return "\n".join([first, *(f"  {v}" for v in self.violations)])


class UnknownKind(ApiError):
    """The word names no known kind; the message lists the known ones."""

    def __init__(
        self,
        word: str,
        known: Sequence[str],
        suggestion: str | None = None,
        source: str | None = None,
    ) -> None:
        self.word = word
        self.known = sorted(known)
        hint = f" (did you mean {suggestion}?)" if suggestion else ""
        what = f'unknown kind "{word}"' if word else "kind is missing"
        super().__init__(f"{what}: known kinds are {', '.join(self.known)}{hint}", source)


class UnknownApiVersion(ApiError):
    """apiVersion is missing or not the one kubeless serves."""

    def __init__(self, api_version: object, supported: str, source: str | None = None) -> None:
        self.api_version = api_version
        self.supported = supported
        what = "apiVersion is missing" if api_version is None else f'unknown apiVersion "{api_version}"'
        super().__init__(f"{what}: use apiVersion: {supported}", source)


class PortsRefused(ApiError):
    """A write's published ports cannot be had (``kubeless.api.ports.plan_ports``'s
    problems, one line each): another service holds them, the service declares one
    twice, or the dynamic range has none left. Nothing was written."""

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = self.problems[0] if count == 1 else f"{count} published port problems"
        super().__init__(head, source)


class MissingReference(ApiError):
    """A Service's template refers to a Secret or Config its namespace does not hold
    (checked when the Service is written, in the same transaction). Nothing was written."""

    def __init__(self, service: str, kind: str, name: str, namespace: str,
                 source: str | None = None) -> None:
        self.service, self.kind, self.name, self.namespace = service, kind, name, namespace
        super().__init__(f'service "{service}" refers to {kind.lower()} "{name}", which does '
                         f"not exist in namespace {namespace}", source)


class ValueChanged(ApiError):
    """Another value for a stored Secret or Config: values never change, as Swarm's;
    the message says how to rotate (never what either value is)."""

    def __init__(self, kind: str, namespace: str, name: str, source: str | None = None) -> None:
        field = "secret" if kind == "Secret" else "config"
        target = name if kind == "Secret" else f"/{name}"
        super().__init__(
            f"{kind} {namespace}/{name}: its value cannot change (values are immutable, as "
            f"Swarm's); to rotate it, create {name}.v2 with the new value, then `kubeless "
            f"service update --{field}-rm {name} --{field}-add "
            f"source={name}.v2,target={target} SERVICE`", source)


class InUse(ApiError):
    """A Secret or Config that Services' templates reference cannot be removed."""

    def __init__(self, kind: str, namespace: str, name: str, services: Sequence[str],
                 source: str | None = None) -> None:
        self.services = list(services)
        field = "secret" if kind == "Secret" else "config"
        which = "service" if len(self.services) == 1 else "services"
        where = "" if namespace == "default" else f" -n {namespace}"
        super().__init__(
            f'{field} "{name}" is in use by {which} {", ".join(self.services)}: remove it '
            f"from {'it' if len(self.services) == 1 else 'them'} first "
            f"(kubeless service update{where} --{field}-rm {name} SERVICE)",
            source)
