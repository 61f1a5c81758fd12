"""kubeless.api: the resource kinds, their validation and defaults, the
grammars users write (image references, placement constraints, label
selectors), and the units and columns users see. Pure logic: the only I/O
is reading ``crds/``.

Importing this package does not import jsonschema; the first ``validate``
call does.
"""

from kubeless.api.columns import age, cell, human_duration, json_path_get, parse_json_path
from kubeless.api.constraints import Constraint, InvalidConstraint, constraint_error, parse_constraint
from kubeless.api.defaults import apply_defaults
from kubeless.api.errors import (
    ApiError,
    InvalidResource,
    PortsRefused,
    UnknownApiVersion,
    UnknownKind,
    Violation,
    join_path,
)
from kubeless.api.kinds import (
    API_VERSION,
    GROUP,
    VERSION,
    Kind,
    PrinterColumn,
    crds_dir,
    kind_from_crd,
    load_kinds,
    resolve_kind,
)
from kubeless.api.images import ImageRef, InvalidImage, image_error, parse_image
from kubeless.api.names import label_key_error, label_value_error, name_error, namespace_error
from kubeless.api.schema import to_json_schema
from kubeless.api.selectors import InvalidSelector, Requirement, Selector, parse_selector
from kubeless.api.units import (
    format_duration,
    format_size,
    parse_cpus,
    parse_duration,
    parse_duration_ns,
    parse_size,
)
from kubeless.api.validation import DEFAULT_NAMESPACE, describe, kind_of, validate

__all__ = [
    "API_VERSION", "DEFAULT_NAMESPACE", "GROUP", "VERSION",
    "ApiError", "Constraint", "ImageRef", "InvalidConstraint", "InvalidImage",
    "InvalidResource", "InvalidSelector", "Kind", "PortsRefused", "PrinterColumn", "Requirement",
    "Selector",
    "UnknownApiVersion", "UnknownKind", "Violation",
    "age", "apply_defaults", "cell", "constraint_error", "crds_dir", "describe",
    "format_duration", "format_size", "human_duration", "image_error", "join_path",
    "json_path_get", "kind_from_crd", "kind_of", "label_key_error", "label_value_error",
    "load_kinds", "name_error", "namespace_error", "parse_constraint", "parse_cpus",
    "parse_duration", "parse_duration_ns", "parse_image", "parse_json_path", "parse_selector",
    "parse_size", "resolve_kind", "to_json_schema", "validate",
]
