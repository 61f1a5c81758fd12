"""A node's copies of the Secrets and Configs its tasks use, and what a task still waits for.

The managers' ``secrets`` controller writes a copy under the node's own prefix
while a task there uses it (docs/MODEL.md):

    agents/<node>/secrets/<ns>/<name>  {"kind": "Secret", "namespace", "name", "uid",
                                        "recipient": key_id(<the agent's public key>),
                                        "sealed": seal(<that key>, value, copy_context(...))}
    agents/<node>/configs/<ns>/<name>  {"kind": "Config", "namespace", "name", "uid",
                                        "data": <base64>}

The agent's informer on its prefix hands each one to its node's worker, which
keeps them here as they arrived: sealed, never opened. ``waiting_for`` (pure)
says which of a task's references are not usable yet: no copy, or a secret
sealed to another key (an agent restarted since: the controller re-seals to
the key in the new heartbeat). ``open_files`` opens them, only when the task
is about to start, and the opened values live only until they are written.
No message here ever holds a value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from kubeless.api.file_refs import FileRef
from kubeless.cluster.sealing import SealError, copy_context, unseal

from kubeless_agent.errors import CopyUnusable

KIND_WORDS = {"Secret": "secret", "Config": "config"}
CopyName = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True)
class Copy:
    """One copy as it is stored: a secret's still sealed."""

    kind: str
    namespace: str
    name: str
    uid: str = ""
    recipient: str = ""  # Secret: key_id of the public key it is sealed to
    sealed: str = ""  # Secret
    data: str = ""  # Config: base64


@dataclass(frozen=True)
class OpenedFile:
    """A reference with its value, between opening and writing (never logged)."""

    ref: FileRef
    value: bytes

    def __repr__(self) -> str:  # a stray log of one must not show the value
        return f"OpenedFile({self.ref!r}, <{len(self.value)} bytes>)"


def parse_copy(kind: str, namespace: str, name: str, value: Any) -> Copy | None:
    """The copy stored at ``agents/<node>/<kind>s/<namespace>/<name>``; None when it is not
    one (the key decides kind, namespace and name: the value cannot claim another)."""
    if not isinstance(value, dict):
        return None
    text = {k: str(value.get(k) or "") for k in ("uid", "recipient", "sealed", "data")}
    if kind == "Secret" and not text["sealed"]:
        return None
    return Copy(kind, namespace, name, text["uid"], text["recipient"], text["sealed"],
                text["data"] if kind == "Config" else "")


def waiting_for(refs: Iterable[FileRef], namespace: str, copies: Mapping[CopyName, Copy],
                own_key_id: str) -> list[FileRef]:
    """The references a task cannot have yet: no copy, or a secret's sealed to another key."""
    waiting = []
    for ref in refs:
        copy = copies.get((ref.kind, namespace, ref.source))
        if copy is None or (ref.kind == "Secret" and copy.recipient != own_key_id):
            waiting.append(ref)
    return waiting


def waiting_message(refs: Iterable[FileRef]) -> str:
    """``waiting for secret dbpass`` (``, config webconf`` ...), each name once."""
    names = dict.fromkeys(f"{KIND_WORDS.get(r.kind, r.kind.lower())} {r.source}" for r in refs)
    return "waiting for " + ", ".join(names)


def open_files(refs: Iterable[FileRef], node: str, namespace: str,
               copies: Mapping[CopyName, Copy], key: X25519PrivateKey) -> list[OpenedFile]:
    """Every reference with its value (each present: ``waiting_for`` said none is missing).
    CopyUnusable when one does not open."""
    opened = []
    for ref in refs:
        copy = copies[(ref.kind, namespace, ref.source)]
        opened.append(OpenedFile(ref, _value(copy, node, key)))
    return opened


def _value(copy: Copy, node: str, key: X25519PrivateKey) -> bytes:
    word = f"{KIND_WORDS.get(copy.kind, copy.kind)} {copy.name}"
    if copy.kind == "Secret":
        try:
            return unseal(key, copy.sealed, copy_context(node, copy.namespace, copy.name))
        except SealError as err:
            raise CopyUnusable(f"{word}: this node's copy does not open ({err})") from err
    try:
        return base64.b64decode(copy.data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise CopyUnusable(f"{word}: this node's copy is not base64") from err
