"""docker's --filter and --format for service ls, service ps and node ls (kubeless_cli.listing)."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless_cli.listing import ListingError, header_of, matching, parse_filters, render
from kubeless_cli.node_cmds import NODE_FILTERS
from kubeless_cli.service_cmds import PS_FILTERS, SERVICE_FIELDS, SERVICE_FILTERS, SERVICE_TABLE


def svc(name: str, mode: str = "replicated", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"{name}-0000-uid", "labels": labels},
            "spec": {"mode": mode, "template": {"image": f"{name}:1"}}}


SERVICES = [svc("web", tier="front"), svc("web-admin", tier="back"), svc("agent", "global")]

FILTERS: dict[str, tuple[tuple[str, ...], list[str]]] = {
    "no filter: everything": ((), ["web", "web-admin", "agent"]),
    "name is a prefix, as docker's": (("name=web",), ["web", "web-admin"]),
    "two values of one key: either": (("name=agent", "name=web-a"), ["web-admin", "agent"]),
    "two keys: both": (("name=web", "label=tier=back"), ["web-admin"]),
    "label=KEY: the label is there": (("label=tier",), ["web", "web-admin"]),
    "mode, case aside": (("mode=Global",), ["agent"]),
    "id prefix": (("id=web0",), ["web"]),
}


@pytest.mark.parametrize("case", list(FILTERS))
def test_service_filters(case: str) -> None:
    raw, wanted = FILTERS[case]
    found = matching(SERVICES, parse_filters(raw, SERVICE_FILTERS), SERVICE_FILTERS)
    assert [s["metadata"]["name"] for s in found] == wanted


def test_task_and_node_filters() -> None:
    tasks = [{"metadata": {"name": "t1"}, "spec": {"serviceName": "web", "slot": 1,
                                                    "desiredState": "running", "nodeName": "n1"}},
             {"metadata": {"name": "t2"}, "spec": {"serviceName": "web", "slot": 1,
                                                    "desiredState": "shutdown", "nodeName": "n2"}}]
    running = parse_filters(("desired-state=running",), PS_FILTERS)
    assert [t["metadata"]["name"] for t in matching(tasks, running, PS_FILTERS)] == ["t1"]
    on_n2 = parse_filters(("node=n2", "name=web.1"), PS_FILTERS)
    assert [t["metadata"]["name"] for t in matching(tasks, on_n2, PS_FILTERS)] == ["t2"]
    nodes = [{"metadata": {"name": "m1", "labels": {"zone": "eu"}}, "spec": {"role": "manager"}},
             {"metadata": {"name": "w1"}, "spec": {"role": "worker"}}]
    managers = parse_filters(("role=manager",), NODE_FILTERS)
    assert [n["metadata"]["name"] for n in matching(nodes, managers, NODE_FILTERS)] == ["m1"]
    eu = parse_filters(("node.label=zone=eu",), NODE_FILTERS)
    assert [n["metadata"]["name"] for n in matching(nodes, eu, NODE_FILTERS)] == ["m1"]


@pytest.mark.parametrize("raw, needle", [
    ("name", "expected KEY=VALUE"),
    ("colour=red", "unknown key 'colour' (use id, label, mode, name)"),
])
def test_a_bad_filter_is_one_line(raw: str, needle: str) -> None:
    with pytest.raises(ListingError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        parse_filters((raw,), SERVICE_FILTERS)


RECORDS = [{"ID": "abc", "Name": "web", "Mode": "replicated", "Replicas": "2/3",
            "Image": "web:1", "Ports": "*:8080->80/tcp"}]


def test_a_template_without_table_is_one_line_per_record_with_tabs() -> None:
    out = render("{{.Name}}\\t{{ .Replicas }}", SERVICE_FIELDS, RECORDS, SERVICE_TABLE)
    assert out == "web\t2/3\n"


def test_a_table_template_has_dockers_header_and_aligned_columns() -> None:
    out = render("table {{.Name}}\\t{{.Replicas}}", SERVICE_FIELDS, RECORDS, SERVICE_TABLE)
    assert out.splitlines() == ["NAME   REPLICAS", "web    2/3"]


def test_table_alone_and_no_template_are_the_default_table() -> None:
    default = render(None, SERVICE_FIELDS, RECORDS, SERVICE_TABLE)
    assert render("table", SERVICE_FIELDS, RECORDS, SERVICE_TABLE) == default
    assert default.splitlines()[0].split() == ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]


@pytest.mark.parametrize("template, needle", [
    ("{{.Colour}}", "unknown field .Colour (fields: .ID, .Name"),
    ("{{json .}}", "only {{.Field}} placeholders are supported"),
])
def test_a_bad_template_is_one_line(template: str, needle: str) -> None:
    with pytest.raises(ListingError) as err:
        render(template, SERVICE_FIELDS, RECORDS, SERVICE_TABLE)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_headers_are_dockers() -> None:
    assert [header_of(f) for f in ("DesiredState", "ID", "EngineVersion", "TLSStatus")] == \
        ["DESIRED STATE", "ID", "ENGINE VERSION", "TLS STATUS"]
