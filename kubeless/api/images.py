"""Image references, read by Docker's reference grammar (distribution/reference).

    reference  := name [":" tag] ["@" digest]
    name       := [domain "/"] path-component ["/" path-component]*
    domain     := host [":" port]     host: DNS-like components joined by ".",
                                      or an IPv6 address in brackets
    path-component := [a-z0-9]+ (separator [a-z0-9]+)*
    separator  := "." | "_" | "__" | "-"+
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex (at least 32 hex digits)
    algorithm  := [A-Za-z][A-Za-z0-9]* ([-_+.] [A-Za-z][A-Za-z0-9]*)*

The first component is a domain only when it holds a "." or a ":" or is
``localhost`` (as Docker decides); a name is at most 255 characters. A
reference the grammar refuses can never be pulled or run, so validation
refuses it at apply (Docker says "invalid reference format" for every task,
forever). ``image_error`` says why in one sentence; ``parse_image`` splits a
good one. Whether the image exists is the node's business, not this module's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = f"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = re.compile(rf"{_HOST}(?::[0-9]+)?", re.ASCII)
_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
_TAG = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}",
                     re.ASCII)
_FORM = "expected [HOST[:PORT]/]NAME[:TAG][@DIGEST], e.g. nginx:1.27 or registry:5000/team/app@sha256:..."


@dataclass(frozen=True)
class ImageRef:
    """A reference split in its parts; ``domain``, ``tag`` and ``digest`` may be empty."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else "")


class InvalidImage(ValueError):
    """A string that is not an image reference; the message says why."""


def _split(text: str) -> tuple[str, str, str]:
    """(name, tag, digest): the digest after "@", the tag after a ":" past the last "/"."""
    name, at, digest = text.partition("@")
    if at and not digest:
        raise InvalidImage("nothing after @: expected a digest like sha256:<hex>")
    colon = name.rfind(":")
    if colon <= name.rfind("/"):
        return name, "", digest
    if colon == len(name) - 1:
        raise InvalidImage(f"nothing after the last ':' (a tag goes there); {_FORM}")
    return name[:colon], name[colon + 1:], digest


def _domain_and_path(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "", name


def _check_name(domain: str, path: str) -> None:
    if domain and not _DOMAIN.fullmatch(domain):
        raise InvalidImage(f'registry "{domain}" is not a host name or address with an optional :PORT')
    if not path:
        raise InvalidImage(f"no repository name: {_FORM}")
    if not _PATH.fullmatch(path):
        if _PATH.fullmatch(path.lower()):
            raise InvalidImage(f'repository name "{path}" must be lowercase')
        raise InvalidImage(f'repository name "{path}" may only hold lowercase letters, digits, '
                           "and '.', '_', '__' or '-' between them, with '/' between components")
    if len(domain) + bool(domain) + len(path) > NAME_MAX:
        raise InvalidImage(f"the name is longer than {NAME_MAX} characters")


def parse_image(text: object) -> ImageRef:
    """Split an image reference by Docker's grammar; InvalidImage (one sentence) if it is none."""
    if not isinstance(text, str):
        raise InvalidImage(f"an image must be a string, not {type(text).__name__}")
    if not text or text != text.strip():
        raise InvalidImage("leading or trailing spaces" if text else "empty")
    name, tag, digest = _split(text)
    domain, path = _domain_and_path(name)
    _check_name(domain, path)
    if tag and not _TAG.fullmatch(tag):
        raise InvalidImage(f'tag "{tag}" may only hold letters, digits, \'_\', \'.\' and \'-\' '
                           "(not first), at most 128 characters")
    if digest and not _DIGEST.fullmatch(digest):
        raise InvalidImage(f'digest "{digest}" is not ALGORITHM:HEX with at least 32 hex digits')
    return ImageRef(domain, path, tag, digest)


def image_error(text: object) -> str | None:
    """Why ``text`` is not a valid image reference (one sentence), or None."""
    try:
        parse_image(text)
    except InvalidImage as exc:
        if text == "":
            return "the image reference is empty"
        shown = f'"{text}" ' if isinstance(text, str) else ""
        return f"{shown}is not a valid image reference: {exc}"
    return None
