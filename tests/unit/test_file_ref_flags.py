"""The --secret/--config flags of service create|update (kubeless_cli.file_ref_flags, as
service_flags uses them): docker's SPEC grammar, rm before add, rotation, bad specs in
one line naming the flag."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless.api import validate
from kubeless_cli.file_ref_flags import SpecError, merged, parse_spec
from kubeless_cli.service_flags import FlagError, ServiceFlags, build_service, update_service


def created(**flags: Any) -> dict[str, Any]:
    return build_service(ServiceFlags(name="web", image="web:1", **flags))


def template(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = doc["spec"]["template"]
    return out


@pytest.mark.parametrize("spec, expected", [
    pytest.param("dbpass", {"source": "dbpass"}, id="name"),
    pytest.param("source=dbpass", {"source": "dbpass"}, id="source"),
    pytest.param("src=dbpass.v2,target=dbpass", {"source": "dbpass.v2", "target": "dbpass"},
                 id="src-alias"),
    pytest.param("source=tls,dst=/etc/tls/key.pem", {"source": "tls", "target": "/etc/tls/key.pem"},
                 id="dst-alias"),
    pytest.param("source=s,uid=1000,gid=50,mode=0400",
                 {"source": "s", "uid": "1000", "gid": "50", "mode": 0o400}, id="owner-and-mode"),
    pytest.param("Source=s,MODE=0o440", {"source": "s", "mode": 0o440}, id="keys-any-case-0o"),
    pytest.param("source=s,mode=0", {"source": "s", "mode": 0}, id="mode-zero"),
])
def test_specs_become_template_entries(spec: str, expected: dict[str, Any]) -> None:
    assert parse_spec("Secret", spec) == expected


@pytest.mark.parametrize("spec, reason", [
    pytest.param("", "missing source=NAME", id="empty"),
    pytest.param("target=x", "missing source=NAME", id="no-source"),
    pytest.param("source=s,mode=400", "mode '400' must be octal with its leading 0", id="decimal-mode"),
    pytest.param("source=s,mode=01000", "mode: 01000 is not a file mode", id="mode-too-big"),
    pytest.param("source=s,mode=0x1ff", "must be octal", id="hex-mode"),
    pytest.param("source=s,mode=0o", "must be octal", id="bare-0o"),
    pytest.param("source=s,uid=root", "uid: 'root' is not a uid or gid", id="uid-name"),
    pytest.param("source=s,target=a/b", "a secret's target is a file name", id="relative-path"),
    pytest.param("source=s,target=/run/../etc/x", 'must not contain ".."', id="dotdot"),
    pytest.param("source=S", 'source: "S" is not a valid name', id="bad-name"),
    pytest.param("source=s,readonly=true", "unknown option 'readonly'", id="unknown-option"),
    pytest.param("source=s,target", "expected key=value, got 'target'", id="no-value"),
    pytest.param("source=s,src=t", "source is given twice", id="twice"),
])
def test_bad_specs_say_why(spec: str, reason: str) -> None:
    with pytest.raises(SpecError, match=reason.replace("(", r"\(").replace(".", r"\.")):
        parse_spec("Secret", spec)


def test_a_configs_relative_target_is_from_root() -> None:
    assert parse_spec("Config", "source=c,target=etc/c.conf") == {"source": "c",
                                                                    "target": "etc/c.conf"}


def test_create_stores_what_the_flags_say_and_it_validates() -> None:
    doc = created(secret=("dbpass", "source=tls,target=/etc/tls.pem,mode=0400"),
                  config=("src=webconf,dst=/etc/web.conf",))
    assert template(doc)["secrets"] == [{"source": "dbpass"},
                                        {"source": "tls", "target": "/etc/tls.pem", "mode": 0o400}]
    assert template(doc)["configs"] == [{"source": "webconf", "target": "/etc/web.conf"}]
    validate(doc)


def test_rotation_removes_then_adds_in_one_update() -> None:
    doc = created(secret=("dbpass", "source=tls,target=/etc/tls.pem"))
    new = update_service(doc, ServiceFlags(secret_rm=("dbpass",),
                                           secret=("source=dbpass.v2,target=dbpass",)))
    assert template(new)["secrets"] == [{"source": "tls", "target": "/etc/tls.pem"},
                                        {"source": "dbpass.v2", "target": "dbpass"}]
    assert template(doc)["secrets"][0] == {"source": "dbpass"}  # the input is left alone


def test_config_rm_of_the_last_drops_the_field_and_unknown_names_are_ignored() -> None:
    doc = created(config=("webconf",))
    new = update_service(doc, ServiceFlags(config_rm=("webconf", "nosuch")))
    assert "configs" not in template(new)


def test_an_add_replaces_what_lands_on_its_path() -> None:
    assert merged("Secret", [{"source": "dbpass"}, {"source": "other"}],
                  [{"source": "dbpass.v2", "target": "/run/secrets/dbpass"}], []) == [
        {"source": "other"}, {"source": "dbpass.v2", "target": "/run/secrets/dbpass"}]


@pytest.mark.parametrize("flags, message", [
    pytest.param(ServiceFlags(secret=("source=s,mode=644",)),
                 "invalid --secret-add 'source=s,mode=644': mode '644' must be octal with its "
                 "leading 0, such as mode=0400", id="mode"),
    pytest.param(ServiceFlags(config=("source=c,uid=x",)),
                 "invalid --config-add 'source=c,uid=x': uid: 'x' is not a uid or gid", id="uid"),
    pytest.param(ServiceFlags(secret=("a", "source=b,target=a")),
                 "invalid --secret-add: two references land on /run/secrets/a", id="two-adds"),
])
def test_bad_update_flags_are_one_line_naming_the_flag(flags: ServiceFlags, message: str) -> None:
    with pytest.raises(FlagError) as err:
        update_service(created(), flags)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_create_names_its_own_flag_and_refuses_the_update_only_ones() -> None:
    with pytest.raises(FlagError, match=r"^invalid --secret 'target=x': missing source=NAME$"):
        created(secret=("target=x",))
    with pytest.raises(FlagError, match="--config-rm is only valid with `service update`"):
        created(config_rm=("c",))
