"""Encoding of values in etcd.

Users' resources are stored as YAML (``etcdctl get`` shows what they wrote);
machine-written keys on hot paths (tasks, heartbeats) may be JSON, which is
valid YAML and decodes several times faster. ``decode`` takes either.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from .errors import CorruptValue

try:
    _Loader: type = yaml.CSafeLoader
    _Dumper: type = yaml.CSafeDumper
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader
    _Dumper = yaml.SafeDumper


def encode_yaml(obj: Any) -> bytes:
    text: str = yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    return text.encode()


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def decode(key: str, raw: bytes) -> Any:
    """A stored value back into data; CorruptValue when it is not YAML/JSON."""
    if raw[:1] == b"{":
        try:
            return json.loads(raw)
        except ValueError:
            pass  # YAML flow mappings also start with '{'
    try:
        return yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CorruptValue(key, f"not valid YAML: {first}") from err
