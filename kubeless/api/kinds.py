"""The resource kinds kubeless knows, read from the CRD files in ``crds/``.

The CRDs are the single source of truth: names, scope, the openAPIV3Schema
(validation and defaults) and the printer columns of ``kubeless get``. This
module only loads them (once per directory) and resolves the words a user
types ("svc", "Services") to a Kind. Validation lives in validation.py.
"""

from __future__ import annotations

import difflib
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeless.api.errors import UnknownKind

GROUP = "kubeless.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
CRDS_DIR_ENV = "KUBELESS_CRDS_DIR"


@dataclass(frozen=True)
class PrinterColumn:
    """One column of ``kubeless get``: priority 0 always, 1 with ``-o wide``."""

    name: str
    type: str
    json_path: str
    priority: int = 0


@dataclass(frozen=True)
class Kind:
    """A kind as its CRD declares it. Treat ``schema`` as read-only."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool
    schema: dict[str, Any] = field(compare=False, hash=False, repr=False)
    printer_columns: tuple[PrinterColumn, ...] = ()

    @property
    def api_version(self) -> str:
        return API_VERSION

    def words(self) -> tuple[str, ...]:
        """Every word that names this kind, lowercased."""
        return (self.kind.lower(), self.plural, self.singular, *self.short_names)


def crds_dir() -> Path:
    """``$KUBELESS_CRDS_DIR``, else the ``crds/`` folder of this checkout."""
    env = os.environ.get(CRDS_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "crds"


def load_kinds(crd_dir: Path | None = None) -> dict[str, Kind]:
    """Kinds by kind name ("Service"), loaded once per directory."""
    return dict(_load_dir((crd_dir or crds_dir()).resolve()))


@functools.lru_cache(maxsize=8)
def _load_dir(directory: Path) -> dict[str, Kind]:
    kinds: dict[str, Kind] = {}
    for path in sorted(directory.glob("*.yaml")):
        with path.open(encoding="utf-8") as stream:
            crd = yaml.load(stream, Loader=yaml.CSafeLoader)
        kind = kind_from_crd(crd)
        kinds[kind.kind] = kind
    if not kinds:
        raise FileNotFoundError(f"no CRD files (*.yaml) in {directory}")
    return kinds


def kind_from_crd(crd: dict[str, Any]) -> Kind:
    """Build a Kind from one CustomResourceDefinition document."""
    spec = crd["spec"]
    names = spec["names"]
    version = next(v for v in spec["versions"] if v["name"] == VERSION)
    columns = tuple(
        PrinterColumn(c["name"], c["type"], c["jsonPath"], int(c.get("priority", 0)))
        for c in version.get("additionalPrinterColumns", ())
    )
    return Kind(
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular", names["kind"].lower()),
        short_names=tuple(names.get("shortNames") or ()),
        namespaced=spec["scope"] == "Namespaced",
        schema=version["schema"]["openAPIV3Schema"],
        printer_columns=columns,
    )


def resolve_kind(word: str, kinds: dict[str, Kind] | None = None) -> Kind:
    """The kind named by ``word``: "Service", "service", "services", "svc"."""
    known = kinds if kinds is not None else load_kinds()
    lowered = word.strip().lower()
    for kind in known.values():
        if lowered in kind.words():
            return kind
    every = [w for kind in known.values() for w in kind.words()]
    close = difflib.get_close_matches(lowered, every, n=1)
    suggestion = next((k.kind for k in known.values() if close and close[0] in k.words()), None)
    raise UnknownKind(word, list(known), suggestion)
