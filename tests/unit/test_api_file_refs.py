"""kubeless.api.file_refs: where a template's secrets and configs land (Swarm's defaults),
and the rules validation adds to the CRD's schema (targets, names, paths taken twice)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kubeless.api import InvalidResource, validate
from kubeless.api.file_refs import FileRef, file_refs, problems, referenced


def service(template: str) -> dict[str, Any]:
    return {"apiVersion": "kubeless.io/v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"template": {"image": "web:1", **yaml.safe_load(template)}}}


def violations(template: str) -> list[str]:
    with pytest.raises(InvalidResource) as err:
        validate(service(template))
    return [str(v) for v in err.value.violations]


# -- defaults -----------------------------------------------------------------------------

@pytest.mark.parametrize("template, expected", [
    pytest.param("{secrets: [{source: dbpass}]}",
                 [FileRef("Secret", "dbpass", "/run/secrets/dbpass", "0", "0", 0o444)],
                 id="secret-defaults"),
    pytest.param("{secrets: [{source: dbpass.v2, target: dbpass, uid: '1000', gid: '2', mode: 0400}]}",
                 [FileRef("Secret", "dbpass.v2", "/run/secrets/dbpass", "1000", "2", 0o400)],
                 id="secret-file-name"),
    pytest.param("{secrets: [{source: tls, target: /etc/ssl/key.pem}]}",
                 [FileRef("Secret", "tls", "/etc/ssl/key.pem")], id="secret-absolute"),
    pytest.param("{configs: [{source: webconf}]}", [FileRef("Config", "webconf", "/webconf")],
                 id="config-defaults"),
    pytest.param("{configs: [{source: webconf, target: etc/web.conf, mode: 0644}]}",
                 [FileRef("Config", "webconf", "/etc/web.conf", mode=0o644)],
                 id="config-relative-from-root"),
    pytest.param("{configs: [{source: c}], secrets: [{source: s}]}",
                 [FileRef("Secret", "s", "/run/secrets/s"), FileRef("Config", "c", "/c")],
                 id="secrets-then-configs"),
    pytest.param("{}", [], id="none"),
])
def test_file_refs_fill_swarms_defaults(template: str, expected: list[FileRef]) -> None:
    assert file_refs(yaml.safe_load(template)) == expected


def test_referenced_names_each_kind_and_name_once() -> None:
    template = yaml.safe_load("{secrets: [{source: a}, {source: a, target: /b}],"
                              " configs: [{source: a}]}")
    assert referenced(template) == {("Secret", "a"), ("Config", "a")}


def test_a_defaulted_document_keeps_only_what_was_written() -> None:
    """The CRD fills no defaults for references: file_refs is their one home."""
    doc = validate(service("{secrets: [{source: dbpass}]}"))
    assert doc["spec"]["template"]["secrets"] == [{"source": "dbpass"}]


# -- validation -----------------------------------------------------------------------------

def test_the_issues_example_validates() -> None:
    validate(service("""
        secrets: [{source: dbpass, target: dbpass, uid: "0", gid: "0", mode: 0400}]
        configs: [{source: webconf, target: /etc/web.conf, mode: 0444}]"""))


@pytest.mark.parametrize("template, expected", [
    pytest.param("{secrets: [{target: x}]}", "spec.template.secrets[0].source: required",
                 id="no-source"),
    pytest.param("{secrets: [{source: Db_Pass}]}",
                 'spec.template.secrets[0].source: "Db_Pass" is not a valid name', id="bad-source"),
    pytest.param("{configs: [{source: c, path: /x}]}", "spec.template.configs[0].path: unknown field",
                 id="unknown-field"),
    pytest.param("{secrets: [{source: s, target: conf/s}]}",
                 "spec.template.secrets[0].target: \"conf/s\" is a relative path: a secret's target "
                 "is a file name under /run/secrets/ (no '/') or an absolute path",
                 id="secret-relative-path"),
    pytest.param("{secrets: [{source: s, target: ..}]}",
                 'spec.template.secrets[0].target: ".." must not contain ".."', id="secret-dotdot"),
    pytest.param("{configs: [{source: c, target: /etc/../../x}]}",
                 'spec.template.configs[0].target: "/etc/../../x" must not contain ".."',
                 id="config-dotdot"),
    pytest.param("{configs: [{source: c, target: /}]}",
                 'spec.template.configs[0].target: "/" names no file', id="config-root"),
    pytest.param("{secrets: [{source: s, target: ''}]}",
                 "spec.template.secrets[0].target: '' should be non-empty", id="empty-target"),
    pytest.param("{secrets: [{source: s, uid: 1000}]}",
                 'spec.template.secrets[0].uid: 1000 is not a uid or gid: a string of digits, '
                 'such as "0" or "1000" (quoted in YAML)', id="uid-unquoted"),
    pytest.param("{secrets: [{source: s, gid: root}]}",
                 "spec.template.secrets[0].gid: 'root' is not a uid or gid", id="gid-name"),
    pytest.param("{secrets: [{source: s, mode: 600}]}",
                 "spec.template.secrets[0].mode: 600 is not a file mode: an octal number from 0 "
                 "to 0777, such as 0400 (its leading 0 makes YAML read it as octal)",
                 id="mode-decimal"),
    pytest.param("{configs: [{source: c, mode: -1}]}",
                 "spec.template.configs[0].mode: -1 is not a file mode", id="mode-negative"),
    pytest.param("{secrets: [{source: s, mode: '0400'}]}",
                 "spec.template.secrets[0].mode: '0400' is not a file mode", id="mode-quoted"),
    pytest.param("{secrets: [{source: a, target: x}, {source: x}]}",
                 "spec.template.secrets[1].source: /run/secrets/x is also the target of "
                 "spec.template.secrets[0]", id="two-secrets-one-path"),
    pytest.param("{secrets: [{source: a, target: /etc/app.conf}],"
                 " configs: [{source: b, target: /etc/app.conf}]}",
                 "spec.template.configs[0].target: /etc/app.conf is also the target of "
                 "spec.template.secrets[0]", id="secret-and-config-one-path"),
    pytest.param("{configs: [{source: c, target: /data/}], mounts: [{type: tmpfs, target: /data}]}",
                 "spec.template.configs[0].target: /data is also the target of "
                 "spec.template.mounts[0]", id="config-on-a-mount"),
])
def test_bad_references_are_refused_naming_the_field(template: str, expected: str) -> None:
    found = violations(template)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


def test_one_secret_at_two_paths_is_fine() -> None:
    validate(service("{secrets: [{source: a}, {source: a, target: /etc/a}]}"))


def test_problems_leave_misshapen_entries_to_the_schema() -> None:
    assert list(problems(yaml.safe_load("{secrets: [3, {target: x}, null], configs: {}}"))) == []
