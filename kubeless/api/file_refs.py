"""A service template's secrets and configs: where each lands in a task, as Swarm places them.

    template:
      secrets: [{source: dbpass, target: dbpass, uid: "0", gid: "0", mode: 0400}]
      configs: [{source: webconf, target: /etc/web.conf, mode: 0444}]

A secret's target is a file name under ``/run/secrets/`` (the default: its
source's name), or an absolute path; a config's target is an absolute path
(default ``/<source>``; a relative one is taken from ``/``). uid and gid are
strings of digits ("0" by default), mode an integer (0444 by default; YAML's
``0400`` is octal). Pure: the one place these rules are written, read by
validation, the controllers that deliver copies and the agent that mounts
them.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

SECRETS_DIR = "/run/secrets"
DEFAULT_MODE = 0o444
MAX_BYTES = 500 * 1024  # Swarm's limit on a secret's or config's value
# The template field holding each kind's references.
FIELDS = {"Secret": "secrets", "Config": "configs"}


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
