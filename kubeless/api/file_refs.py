"""A service template's secrets and configs: where each lands in a task, as Swarm places them.

    template:
      secrets: [{source: dbpass, target: dbpass, uid: "0", gid: "0", mode: 0400}]
      configs: [{source: webconf, target: /etc/web.conf, mode: 0444}]

A secret's target is a file name under ``/run/secrets/`` (the default: its
source's name), or an absolute path; a config's target is an absolute path
(default ``/<source>``; a relative one is taken from ``/``). uid and gid are
strings of digits ("0" by default), mode an integer (0444 by default; YAML's
``0400`` is octal). Pure: the one place these rules are written, read by
validation (``problems``: the rules the CRD's schema cannot say), the
``service`` flags, the controllers that deliver copies and the agent that
mounts them.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SECRETS_DIR = "/run/secrets"
DEFAULT_MODE = 0o444
MAX_BYTES = 500 * 1024  # Swarm's limit on a secret's or config's value
# The template field holding each kind's references.
FIELDS = {"Secret": "secrets", "Config": "configs"}
MAX_MODE = 0o777
# A Secret's or Config's name, as Kubernetes names them: a DNS subdomain (dots allowed,
# so that a rotated ``dbpass.v2`` sits beside ``dbpass``).
_SOURCE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_IDS = re.compile(r"^[0-9]+$")
ID_RULE = 'a string of digits, such as "0" or "1000"'
MODE_RULE = "an octal number from 0 to 0777, such as 0400"


@dataclass(frozen=True)
class FileRef:
    """One secret or config as a task sees it."""

    kind: str  # "Secret" or "Config"
    source: str  # the Secret's or Config's name, in the service's namespace
    path: str  # absolute, in the task's filesystem
    uid: str = "0"
    gid: str = "0"
    mode: int = DEFAULT_MODE


def target_path(kind: str, source: str, target: str | None) -> str:
    """Where a reference lands: Swarm's defaults and directories."""
    if kind == "Secret":
        name = target or source
        return posixpath.normpath(name if name.startswith("/") else f"{SECRETS_DIR}/{name}")
    return posixpath.normpath("/" + (target or source).lstrip("/"))


def file_refs(template: dict[str, Any] | None) -> list[FileRef]:
    """Every secret then config a template references, with its defaults filled in.
    The template is validated already (its schema): entries are mappings with a source."""
    out: list[FileRef] = []
    for kind, field in FIELDS.items():
        for entry in (template or {}).get(field) or ():
            source = str(entry["source"])
            out.append(FileRef(kind, source, target_path(kind, source, entry.get("target")),
                               str(entry.get("uid", "0")), str(entry.get("gid", "0")),
                               int(entry.get("mode", DEFAULT_MODE))))
    return out


def referenced(template: dict[str, Any] | None) -> set[tuple[str, str]]:
    """(kind, name) of every Secret and Config a template uses."""
    return {(ref.kind, ref.source) for ref in file_refs(template)}


# -- the rules a schema cannot say (validation and the service flags call them) -------

def source_error(source: object) -> str | None:
    """Why ``source`` cannot name a Secret or Config, or None."""
    if not isinstance(source, str):
        return f"must be a string, not {type(source).__name__}"
    if len(source) <= 253 and _SOURCE.match(source):
        return None
    return (f'"{source}" is not a valid name: use lowercase letters, digits, \'-\' and '
            "'.', starting and ending with a letter or digit, at most 253 characters")


def target_error(kind: str, target: object) -> str | None:
    """Why ``target`` cannot say where a Secret or Config lands, or None."""
    if not isinstance(target, str) or not target:
        return "must be a non-empty string"
    if "\0" in target:
        return "must not hold a NUL character"
    if ".." in target.split("/"):
        return f'"{target}" must not contain ".."'
    if kind == "Secret" and not target.startswith("/") and "/" in target:
        return (f'"{target}" is a relative path: a secret\'s target is a file name under '
                f"{SECRETS_DIR}/ (no '/') or an absolute path")
    if target_path(kind, "", target) == "/" or target.strip("/") in ("", "."):
        return f'"{target}" names no file'
    return None


def id_error(value: object) -> str | None:
    """Why ``value`` is not a uid or gid, or None."""
    if isinstance(value, str) and _IDS.match(value):
        return None
    return f"{value!r} is not a uid or gid: {ID_RULE}"


def mode_error(value: object) -> str | None:
    """Why ``value`` is not a file mode, or None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MODE:
        return None
    shown = oct(value).replace("0o", "0") if isinstance(value, int) else repr(value)
    return f"{shown} is not a file mode: {MODE_RULE}"


def problems(template: dict[str, Any]) -> Iterator[tuple[list[str | int], str]]:
    """What is wrong with a template's references, each with its path under the template
    (``["secrets", 0, "target"]``): a bad source or target, and two files on one path
    (or on a mount's target). Entries the schema refuses (not mappings, no source) are
    left to it."""
    taken: dict[str, str] = {}
    for index, mount in enumerate(_entries(template, "mounts")):
        if isinstance(mount.get("target"), str):
            taken.setdefault(posixpath.normpath(mount["target"]), f"mounts[{index}]")
    for kind, field in FIELDS.items():
        for index, entry in enumerate(_entries(template, field)):
            source, target = entry.get("source"), entry.get("target")
            # Not strings, or empty: the schema's to say.
            if isinstance(source, str) and source and (error := source_error(source)):
                yield [field, index, "source"], error
            if isinstance(target, str) and target and (error := target_error(kind, target)):
                yield [field, index, "target"], error
            elif isinstance(source, str) and source and (target is None or isinstance(target, str)):
                path = target_path(kind, source, target)
                where = f"{field}[{index}]"
                if path in taken:
                    yield ([field, index, "target" if target is not None else "source"],
                           f"{path} is also the target of spec.template.{taken[path]}")
                taken.setdefault(path, where)


def _entries(template: dict[str, Any], field: str) -> Iterator[dict[str, Any]]:
    value = template.get(field)
    for entry in value if isinstance(value, list) else ():
        yield entry if isinstance(entry, dict) else {}
