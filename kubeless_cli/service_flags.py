"""Turn `kubeless service create|update` flags into Service resources.

The click layer gathers the flags of
`kubeless service create [FLAGS] IMAGE [COMMAND [ARG...]]` and
`kubeless service update [FLAGS] NAME` into a `ServiceFlags` and calls
`build_service` or `update_service`. This module parses and checks each
flag value (a bad one raises `FlagError`, one sentence naming the flag and
the value) and shapes the document exactly as `kubeless apply` stores it
(docs/MODEL.md). It does no I/O: reading and writing etcd, and filling
defaults from the CRD, belong to the caller and to `kubeless.api`.

In an update the collection fields (env, labels, publish, mount,
constraint, placement_pref, secret, config) mean docker's `--*-add` flags
and the `*_rm` fields its `--*-rm` flags; removals apply first, then
additions. `--secret` and `--config` are file_ref_flags.py's.
"""

from __future__ import annotations

import copy
import math
import random
import re
import shlex
import string
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from kubeless.api.constraints import (InvalidConstraint, constraint_error, normalise_key,
                                       parse_constraint)
from kubeless.api import cron, workload
from kubeless.api.images import image_error
from kubeless_cli.file_ref_flags import SpecError, merged, parse_spec

API_VERSION = "kubeless.io/v1"
Parser = Callable[[str, Any], Any]


class FlagError(ValueError):
    """A flag value that cannot become part of a Service."""


@dataclass(frozen=True)
class ServiceFlags:
    """Flags of `service create` / `service update`; None or () means unset."""

    name: str | None = None
    namespace: str | None = None
    image: str | None = None
    command: tuple[str, ...] = ()
    replicas: int | str | None = None
    mode: str | None = None
    max_concurrent: int | str | None = None
    schedule: str | None = None
    run_history_limit: int | str | None = None
    publish: tuple[str, ...] = ()
    mount: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    constraint: tuple[str, ...] = ()
    placement_pref: tuple[str, ...] = ()
    max_replicas_per_node: int | str | None = None
    rebalance: bool | None = None  # placement.rebalance: True sets it, False removes it
    reserve_cpu: float | str | None = None
    reserve_memory: int | str | None = None
    limit_cpu: float | str | None = None
    limit_memory: int | str | None = None
    restart_condition: str | None = None
    restart_delay: str | None = None
    restart_max_attempts: int | str | None = None
    restart_window: str | None = None
    health_cmd: str | None = None
    health_interval: str | None = None
    health_timeout: str | None = None
    health_retries: int | str | None = None
    health_start_period: str | None = None
    update_parallelism: int | str | None = None
    update_delay: str | None = None
    update_failure_action: str | None = None
    update_monitor: str | None = None
    update_max_failure_ratio: float | str | None = None
    update_order: str | None = None
    rollback_parallelism: int | str | None = None
    rollback_delay: str | None = None
    rollback_failure_action: str | None = None
    rollback_monitor: str | None = None
    rollback_max_failure_ratio: float | str | None = None
    rollback_order: str | None = None
    stop_grace_period: str | None = None
    workdir: str | None = None
    entrypoint: str | None = None
    user: str | None = None
    secret: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    # update only
    env_rm: tuple[str, ...] = ()
    label_rm: tuple[str, ...] = ()
    publish_rm: tuple[str, ...] = ()
    mount_rm: tuple[str, ...] = ()
    constraint_rm: tuple[str, ...] = ()
    placement_pref_rm: tuple[str, ...] = ()
    secret_rm: tuple[str, ...] = ()
    config_rm: tuple[str, ...] = ()
    force: bool = False


UPDATE_ONLY = ("env_rm", "label_rm", "publish_rm", "mount_rm",
               "constraint_rm", "placement_pref_rm", "secret_rm", "config_rm", "force")
_ADDS = ("env", "labels", "publish", "mount", "constraint", "placement_pref", "secret",
         "config")


def flag_name(field: str, update: bool = False) -> str:
    """The command-line spelling of a ServiceFlags field, e.g. `--env-add`."""
    if field == "command":
        return "COMMAND"
    if field == "image" and not update:
        return "IMAGE"
    spelled = {"labels": "label", "max_replicas_per_node": "replicas_max_per_node"}
    base = "--" + spelled.get(field, field).replace("_", "-")
    return base + "-add" if update and field in _ADDS else base


# docker's one-letter spellings; in an update only those of fields without -add/-rm
_SHORT = {"publish": "-p", "env": "-e", "labels": "-l", "user": "-u", "workdir": "-w"}


def short_name(field: str, update: bool = False) -> str | None:
    """docker's one-letter spelling of a field's flag, e.g. `-p` for `--publish`."""
    if update and field in _ADDS:
        return None
    return _SHORT.get(field)


def env_file_entries(text: str, source: str, environ: dict[str, str]) -> list[str]:
    """docker's --env-file: a KEY=VALUE per line (the value taken as written), ``#``
    comments and blank lines skipped, a lone KEY taking its value from ``environ`` (left
    out when unset there); a key with spaces in it is one line of error."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not key or any(c.isspace() for c in key):
            raise FlagError(f"invalid --env-file {source} line {number}: {line.rstrip()!r} is "
                            "not KEY=VALUE (a key has no spaces)")
        if sep:
            entries.append(f"{key}={value}")
        elif key in environ:
            entries.append(f"{key}={environ[key]}")
    return entries


def _bad(flag: str, value: Any, reason: str) -> FlagError:
    return FlagError(f"invalid {flag} {str(value)!r}: {reason}")


# --- value parsers: (flag, raw value) -> stored value ----------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$")
_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|K|M|G|T|b)?$")
_DOCKER_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(?:([kmgt])i?b?|b)$", re.I)
_DECIMAL = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)$")
_SHORT_PORT = re.compile(r"^(?:([0-9]+):)?([0-9]+)(?:/([a-z]+))?$")


def _text(flag: str, value: Any, spaces: bool = True) -> str:
    text = str(value)
    if not text.strip() or (not spaces and any(c.isspace() for c in text)):
        raise _bad(flag, value, "must be non-empty" + ("" if spaces else ", without spaces"))
    return text


def _word(flag: str, value: Any) -> str:
    return _text(flag, value, spaces=False)


def _dns_label(flag: str, value: Any) -> str:
    if not _DNS_LABEL.match(str(value)):
        raise _bad(flag, value, "must be a DNS-1123 label (lowercase letters, "
                   "digits and '-', at most 63, e.g. 'web')")
    return str(value)


def _count(flag: str, value: Any) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not re.match(r"^-?[0-9]+$", text):
        raise _bad(flag, value, "must be a whole number")
    if int(text) < 0:
        raise _bad(flag, value, "must be 0 or more")
    return int(text)


def _decimal(flag: str, value: Any, top: float = math.inf) -> float:
    number = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif _DECIMAL.match(str(value).strip()):
        number = float(str(value).strip())
    if not 0 <= number <= top or math.isinf(number):
        raise _bad(flag, value, "must be a number from 0" +
                   (" to 1, e.g. 0.2" if top == 1 else ", e.g. 0.5"))
    return number


def _ratio(flag: str, value: Any) -> float:
    return _decimal(flag, value, top=1)


def _choice(*options: str) -> Parser:
    def parse(flag: str, value: Any) -> str:
        if value not in options:
            raise _bad(flag, value, "must be one of " + ", ".join(options))
        return str(value)
    return parse


def _schedule(flag: str, value: Any) -> str:
    if (error := cron.error(str(value))) is not None:
        raise _bad(flag, value, error)
    return str(value)


def _duration(flag: str, value: Any) -> str:
    text = str(value).strip()
    if text.isdigit():
        raise _bad(flag, value, f"use a unit, e.g. {text}s")
    if not _DURATION.match(text):
        raise _bad(flag, value, "must be a duration such as 10s, 1m30s or 500ms")
    return text


def _size(flag: str, value: Any) -> str:
    """Keep kubeless sizes; turn docker's 64m/64MB/1GiB into 64Mi/1Gi."""
    text = str(value).strip()
    if _SIZE.match(text):
        return text
    docker = _DOCKER_SIZE.match(text)
    if not docker:
        raise _bad(flag, value, "must be a size such as 64Mi, 1Gi, 512M or 64MB")
    number, prefix = docker.group(1), (docker.group(2) or "").lower()
    return number + {"": "", "k": "Ki", "m": "Mi", "g": "Gi", "t": "Ti"}[prefix]


def _pair(flag: str, value: Any) -> tuple[str, str]:
    """`KEY=VALUE` (the value may be empty or contain '=')."""
    key, sep, rest = str(value).partition("=")
    if not sep:
        raise _bad(flag, value, "expected KEY=VALUE")
    if not key or any(c.isspace() for c in key):
        raise _bad(flag, value, "the key must be non-empty and without spaces")
    return key, rest


def _port_number(flag: str, value: Any, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _bad(flag, value, f"port {text!r} must be between 1 and 65535")
    return int(text)


def _port(flag: str, value: Any) -> dict[str, Any]:
    """`[PUBLISHED:]TARGET[/PROTOCOL]` or `published=..,target=..,protocol=..,mode=..`."""
    text = str(value).strip()
    if "=" in text:
        fields_ = dict(_option(flag, value, part) for part in text.split(","))
    else:
        short = _SHORT_PORT.match(text)
        if not short:
            raise _bad(flag, value, "expected [PUBLISHED:]TARGET[/PROTOCOL] or "
                       "published=P,target=T[,protocol=tcp|udp][,mode=ingress|host]")
        fields_ = {k: v for k, v in zip(("published", "target", "protocol"),
                                        short.groups()) if v is not None}
    unknown = set(fields_) - {"published", "target", "protocol", "mode"}
    if unknown or "target" not in fields_:
        raise _bad(flag, value, f"unknown option {sorted(unknown)[0]!r}"
                   if unknown else "missing target=")
    port: dict[str, Any] = {"target": _port_number(flag, value, fields_["target"])}
    if "published" in fields_:
        port["published"] = _port_number(flag, value, fields_["published"])
    for key, options in (("protocol", ("tcp", "udp")), ("mode", ("ingress", "host"))):
        if key in fields_:
            if fields_[key] not in options:
                raise _bad(flag, value, f"{key} must be one of " + ", ".join(options))
            port[key] = fields_[key]
    return port


def _option(flag: str, value: Any, part: str) -> tuple[str, str]:
    key, sep, rest = part.partition("=")
    if not sep or not key.strip() or not rest.strip():
        raise _bad(flag, value, f"expected key=value, got {part!r}")
    return key.strip().lower(), rest.strip()


_MOUNT_KEYS = {"type": "type", "source": "source", "src": "source",
               "target": "target", "dst": "target", "destination": "target",
               "readonly": "readOnly", "ro": "readOnly"}


def _mount(flag: str, value: Any) -> dict[str, Any]:
    """docker's `type=bind,source=/a,target=/b,readonly` (type defaults to volume)."""
    opts: dict[str, str] = {}
    for part in str(value).split(","):
        if part.strip().lower() in ("readonly", "ro"):
            part = "readonly=true"
        key, text = _option(flag, value, part)
        if key not in _MOUNT_KEYS:
            raise _bad(flag, value, f"unsupported mount option {key!r}")
        opts[_MOUNT_KEYS[key]] = text
    mount: dict[str, Any] = {"type": opts.get("type", "volume")}
    if mount["type"] not in ("bind", "volume", "tmpfs"):
        raise _bad(flag, value, "type must be one of bind, volume, tmpfs")
    if "source" in opts:
        mount["source"] = opts["source"]
    mount["target"] = opts.get("target", "")
    readonly = opts.get("readOnly", "false").lower()
    if readonly not in ("true", "1", "false", "0"):
        raise _bad(flag, value, f"readonly must be true or false, got {readonly!r}")
    mount["readOnly"] = readonly in ("true", "1")
    _check_mount(flag, value, mount)
    return mount


def _check_mount(flag: str, value: Any, mount: dict[str, Any]) -> None:
    if not mount["target"].startswith("/"):
        raise _bad(flag, value, "target= must be an absolute path")
    if mount["type"] == "bind" and not str(mount.get("source", "")).startswith("/"):
        raise _bad(flag, value, "a bind mount needs an absolute source= path")
    if mount["type"] == "tmpfs" and "source" in mount:
        raise _bad(flag, value, "a tmpfs mount takes no source=")


def _constraint(flag: str, value: Any) -> str:
    if (error := constraint_error(str(value))) is not None:
        raise _bad(flag, value, error)
    return str(value)


def _constraint_key(text: str) -> object:
    """What `--constraint-rm` compares: the parsed constraint, or the text when it
    does not parse (so a stored constraint that no longer parses can be removed)."""
    try:
        return parse_constraint(text)
    except InvalidConstraint:
        return text.strip()


def _image(flag: str, value: Any) -> str:
    if (error := image_error(str(value))) is not None:
        raise FlagError(f"invalid {flag}: {error}")
    return str(value)


def _preference(flag: str, value: Any, check: bool = True) -> dict[str, str]:
    strategy, sep, descriptor = str(value).partition("=")
    if strategy != "spread" or not sep or not descriptor.strip():
        raise _bad(flag, value, "expected spread=<descriptor>, e.g. "
                   "spread=node.labels.zone")
    try:
        if check:
            normalise_key(descriptor)
    except InvalidConstraint as exc:
        raise _bad(flag, value, str(exc)) from None
    return {"spread": descriptor.strip()}


# --- where each single-valued flag lives under spec ------------------------

_TPL, _RES, _RP, _HC = ("template",), ("template", "resources"), \
    ("template", "restartPolicy"), ("template", "healthcheck")
_SCALARS: tuple[tuple[str, tuple[str, ...], Parser], ...] = (
    ("image", _TPL + ("image",), _image),
    ("mode", ("mode",), _choice(*workload.MODES)),
    ("replicas", ("replicas",), _count),
    ("max_concurrent", ("maxConcurrent",), _count),
    ("schedule", ("schedule",), _schedule),
    ("run_history_limit", ("runHistoryLimit",), _count),
    ("workdir", _TPL + ("workdir",), _text),
    ("entrypoint", _TPL + ("command",), lambda f, v: shlex.split(_text(f, v))),
    ("user", _TPL + ("user",), _word),
    ("stop_grace_period", _TPL + ("stopGracePeriod",), _duration),
    ("reserve_cpu", _RES + ("reservations", "cpus"), _decimal),
    ("reserve_memory", _RES + ("reservations", "memory"), _size),
    ("limit_cpu", _RES + ("limits", "cpus"), _decimal),
    ("limit_memory", _RES + ("limits", "memory"), _size),
    ("restart_condition", _RP + ("condition",), _choice("any", "on-failure", "none")),
    ("restart_delay", _RP + ("delay",), _duration),
    ("restart_max_attempts", _RP + ("maxAttempts",), _count),
    ("restart_window", _RP + ("window",), _duration),
    ("health_cmd", _HC + ("test",), lambda f, v: ["CMD-SHELL", _text(f, v)]),
    ("health_interval", _HC + ("interval",), _duration),
    ("health_timeout", _HC + ("timeout",), _duration),
    ("health_retries", _HC + ("retries",), _count),
    ("health_start_period", _HC + ("startPeriod",), _duration),
    ("max_replicas_per_node", ("placement", "maxReplicasPerNode"), _count),
) + tuple(
    (f"{kind}_{field}", (kind, key), parse)
    for kind, actions in (("update", ("pause", "continue", "rollback")),
                          ("rollback", ("pause", "continue")))
    for field, key, parse in (
        ("parallelism", "parallelism", _count),
        ("delay", "delay", _duration),
        ("failure_action", "failureAction", _choice(*actions)),
        ("monitor", "monitor", _duration),
        ("max_failure_ratio", "maxFailureRatio", _ratio),
        ("order", "order", _choice("stop-first", "start-first")),
    )
)


def _node(root: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        root = root.setdefault(key, {})
    return root


def _get(root: dict[str, Any], path: tuple[str, ...], default: Any) -> Any:
    for key in path[:-1]:
        root = root.get(key) or {}
    return root.get(path[-1], default)


def _put(root: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set a collection, or drop its key when it became empty."""
    if value:
        _node(root, path[:-1])[path[-1]] = value
    elif _get(root, path, None) is not None:
        del _node(root, path[:-1])[path[-1]]


# --- applying flags to a document ------------------------------------------

def _apply_scalars(spec: dict[str, Any], flags: ServiceFlags, update: bool) -> None:
    for field, path, parse in _SCALARS:
        raw = getattr(flags, field)
        if raw is not None:
            _node(spec, path[:-1])[path[-1]] = parse(flag_name(field, update), raw)


def _apply_command(spec: dict[str, Any], command: tuple[str, ...]) -> None:
    """COMMAND [ARG...] become the arguments, keeping the image's entrypoint (as docker)."""
    if not command:
        return
    _text(flag_name("command"), command[0])
    _put(spec, _TPL + ("args",), [str(arg) for arg in command])


def _merge_map(root: dict[str, Any], path: tuple[str, ...], adds: tuple[str, ...],
               removes: tuple[str, ...], flags: tuple[str, str]) -> None:
    pairs = [_pair(flags[0], raw) for raw in adds]
    gone = {raw.partition("=")[0] for raw in removes}
    current = {k: v for k, v in dict(_get(root, path, {}) or {}).items()
               if k not in gone}
    _put(root, path, current | dict(pairs))


def _merge_ports(spec: dict[str, Any], flags: ServiceFlags, update: bool) -> None:
    adds = [_port(flag_name("publish", update), raw) for raw in flags.publish]
    drops = [_port("--publish-rm", raw) for raw in flags.publish_rm]
    ports = [p for p in spec.get("ports") or [] if not any(
        _port_matches(p, drop) for drop in drops)]
    for port in adds:
        ports = _add_port(ports, port, flag_name("publish", update))
    _put(spec, ("ports",), ports)


def _port_matches(port: dict[str, Any], drop: dict[str, Any]) -> bool:
    return (port.get("target") == drop["target"]
            and port.get("protocol", "tcp") == drop.get("protocol", "tcp")
            and drop.get("mode", port.get("mode")) == port.get("mode"))


def _add_port(ports: list[dict[str, Any]], port: dict[str, Any],
              flag: str) -> list[dict[str, Any]]:
    if port in ports:
        return ports
    for other in ports:
        if ("published" in port and other.get("published") == port["published"]
                and other.get("protocol", "tcp") == port.get("protocol", "tcp")):
            raise FlagError(f"invalid {flag}: published port {port['published']}/"
                            f"{port.get('protocol', 'tcp')} is already used by "
                            f"target {other.get('target')}")
    return ports + [port]


def _merge_mounts(spec: dict[str, Any], flags: ServiceFlags, update: bool) -> None:
    adds = [_mount(flag_name("mount", update), raw) for raw in flags.mount]
    targets = [m["target"] for m in adds]
    if len(set(targets)) < len(targets):
        raise FlagError(f"invalid {flag_name('mount', update)}: two mounts on one target")
    gone = set(flags.mount_rm) | set(targets)
    _merge_list(spec, _TPL + ("mounts",), adds, lambda m: m.get("target") in gone)


def _merge_list(spec: dict[str, Any], path: tuple[str, ...], adds: list[Any],
                removes: Callable[[Any], bool]) -> None:
    result = [item for item in _get(spec, path, []) or [] if not removes(item)]
    result += [item for i, item in enumerate(adds)
               if item not in result and item not in adds[:i]]
    _put(spec, path, result)


def _merge_placement(spec: dict[str, Any], flags: ServiceFlags, update: bool) -> None:
    add_c = [_constraint(flag_name("constraint", update), c) for c in flags.constraint]
    gone_c = {_constraint_key(c) for c in flags.constraint_rm}
    _merge_list(spec, ("placement", "constraints"), add_c,
                lambda c: _constraint_key(c) in gone_c)
    flag = flag_name("placement_pref", update)
    add_p = [_preference(flag, p) for p in flags.placement_pref]
    gone_p = [_preference("--placement-pref-rm", p, check=False) for p in flags.placement_pref_rm]
    _merge_list(spec, ("placement", "preferences"), add_p, lambda p: p in gone_p)


def _merge_file_refs(spec: dict[str, Any], flags: ServiceFlags, update: bool) -> None:
    """--secret/--config (create), --secret-rm/-add and --config-rm/-add (update)."""
    for kind, field, path in (("Secret", "secret", _TPL + ("secrets",)),
                              ("Config", "config", _TPL + ("configs",))):
        flag = flag_name(field, update)
        adds = []
        for raw in getattr(flags, field):
            try:
                adds.append(parse_spec(kind, str(raw)))
            except SpecError as err:
                raise _bad(flag, raw, str(err)) from None
        removes = [str(raw).strip() for raw in getattr(flags, f"{field}_rm")]
        try:
            _put(spec, path, merged(kind, _get(spec, path, []) or [], adds, removes))
        except SpecError as err:
            raise FlagError(f"invalid {flag}: {err}") from None


def _apply_rebalance(spec: dict[str, Any], on: bool | None) -> None:
    """--rebalance stores ``placement.rebalance: true``; --no-rebalance removes it (absent
    means off: no stored default), and an emptied placement with it."""
    if on is None:
        return
    _put(spec, ("placement", "rebalance"), True if on else None)
    if not spec.get("placement", True):
        del spec["placement"]


def _apply(doc: dict[str, Any], flags: ServiceFlags, update: bool) -> None:
    spec = doc.setdefault("spec", {})
    _apply_scalars(spec, flags, update)
    _apply_command(spec, flags.command)
    _merge_map(spec, _TPL + ("env",), flags.env, flags.env_rm,
               (flag_name("env", update), "--env-rm"))
    _merge_map(doc, ("metadata", "labels"), flags.labels, flags.label_rm,
               (flag_name("labels", update), "--label-rm"))
    _merge_ports(spec, flags, update)
    _merge_mounts(spec, flags, update)
    _merge_placement(spec, flags, update)
    _apply_rebalance(spec, flags.rebalance)
    _merge_file_refs(spec, flags, update)


# --- public entry points ---------------------------------------------------

def random_name(rng: random.Random | None = None) -> str:
    """A DNS-1123 service name like `svc-k3x9qa`, for a create without --name."""
    alphabet = string.ascii_lowercase + string.digits
    return "svc-" + "".join((rng or random).choices(alphabet, k=6))


def build_service(flags: ServiceFlags) -> dict[str, Any]:
    """The Service `service create` would apply; unset flags are left out."""
    for field in UPDATE_ONLY:
        if getattr(flags, field):
            raise FlagError(f"{flag_name(field, True)} is only valid with "
                            "`service update`")
    if flags.image is None:
        raise FlagError("service create needs an IMAGE")
    if flags.mode in workload.GLOBAL_MODES and flags.replicas is not None:
        raise FlagError(f"--replicas cannot be used with --mode {flags.mode}")
    metadata: dict[str, Any] = {"name": _dns_label("--name", flags.name or random_name())}
    if flags.namespace is not None:
        metadata["namespace"] = _dns_label("--namespace", flags.namespace)
    doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "Service",
                           "metadata": metadata, "spec": {}}
    _apply(doc, flags, update=False)
    return doc


def update_service(doc: dict[str, Any], flags: ServiceFlags) -> dict[str, Any]:
    """A new Service: `doc` with the `service update` flags applied."""
    new = copy.deepcopy(doc)
    _check_identity(new, flags)
    spec = new.setdefault("spec", {})
    mode = spec.get("mode", "replicated")
    if flags.mode is not None and flags.mode != mode:
        raise FlagError(f"invalid --mode {flags.mode!r}: the mode of an existing "
                        f"service cannot change (it is {mode})")
    if mode in workload.GLOBAL_MODES and flags.replicas is not None:
        raise FlagError(f"--replicas cannot be used on a {mode} service")
    _apply(new, dataclasses.replace(flags, mode=None), update=True)
    if flags.force:
        spec["forceUpdate"] = int(spec.get("forceUpdate") or 0) + 1
    return new


def _check_identity(doc: dict[str, Any], flags: ServiceFlags) -> None:
    metadata = doc.get("metadata") or {}
    for field, current in (("name", metadata.get("name")),
                           ("namespace", metadata.get("namespace", "default"))):
        wanted = getattr(flags, field)
        if wanted is not None and wanted != current:
            raise FlagError(f"invalid --{field} {wanted!r}: service update cannot "
                            f"rename (the service's {field} is {current!r})")


__all__ = ["API_VERSION", "FlagError", "ServiceFlags", "UPDATE_ONLY",
           "build_service", "env_file_entries", "flag_name", "random_name",
           "update_service"]
