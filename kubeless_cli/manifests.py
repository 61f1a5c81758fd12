"""Reading manifests: files, folders (``-R`` for sub-folders) and standard input.

Each YAML document becomes a ``Manifest`` that remembers where it came from
(``web.yaml:12``), so every later error can name the file and line. A file
that does not parse is reported with its line and column; a document that
is not a mapping, or larger than etcd should hold, is refused here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MAX_DOCUMENT_BYTES = 1024 * 1024
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML without libyaml
    _Loader = yaml.SafeLoader


class ManifestError(Exception):
    """A manifest that cannot be read; the message starts with file:line."""


@dataclass
class Manifest:
    source: str  # "path:line" of the document's first line
    doc: dict[str, Any]


def load(paths: tuple[str, ...] | list[str], recursive: bool = False) -> list[Manifest]:
    """Every document of every file given; ManifestError on the first bad one."""
    manifests: list[Manifest] = []
    for path in paths:
        for name, text in _read(path, recursive):
            manifests.extend(parse(text, name))
    return manifests


def _read(path: str, recursive: bool) -> Iterator[tuple[str, str]]:
    if path == "-":
        yield "<stdin>", sys.stdin.read()
        return
    p = Path(path)
    if p.is_dir():
        pattern = "**/*" if recursive else "*"
        files = sorted(f for f in p.glob(pattern) if f.is_file() and f.suffix in MANIFEST_SUFFIXES)
        for f in files:
            yield from _read(str(f), recursive)
        return
    try:
        yield path, p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file or directory") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: cannot read: {err}") from None


def parse(text: str, name: str) -> list[Manifest]:
    """The non-empty documents of one YAML stream."""
    loader = _Loader(text)
    out: list[Manifest] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            line = node.start_mark.line + 1
            doc = loader.construct_document(node)
            if doc is None:
                continue
            source = f"{name}:{line}"
            _check(doc, source)
            out.append(Manifest(source, doc))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise ManifestError(f"{where}: could not parse YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ManifestError(f"{name}: could not parse YAML: {err}") from None
    finally:
        loader.dispose()
    return out


def _check(doc: Any, source: str) -> None:
    if not isinstance(doc, dict):
        raise ManifestError(f"{source}: a resource must be a mapping, not a {type(doc).__name__}")
    size = len(json.dumps(doc, default=str))
    if size > MAX_DOCUMENT_BYTES:
        raise ManifestError(f"{source}: document is {size} bytes; the limit is "
                            f"{MAX_DOCUMENT_BYTES} bytes (1 MiB)")
