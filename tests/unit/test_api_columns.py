"""json_path_get, kubectl-style ages and printer cells."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kubeless.api import PrinterColumn, age, cell, human_duration, json_path_get

DOC: dict[str, Any] = {
    "spec": {"template": {"image": "web:1"}, "ports": [{"target": 80}], "replicas": 0},
    "metadata": {"creationTimestamp": "2024-05-01T12:00:00Z"},
}
NOW = datetime(2024, 5, 1, 12, 5, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (".spec.template.image", "web:1"),
        (".spec.ports[0].target", 80),
        (".spec.ports[1].target", None),
        (".spec.missing.deeper", None),
        (".spec.template.image.x", None),
        (".spec.replicas", 0),
        ("{.spec.template.image}", "web:1"),
    ],
)
def test_json_path_get(path: str, value: Any) -> None:
    assert json_path_get(DOC, path) == value


@pytest.mark.parametrize("path", ["", "spec", ".spec..x", ".spec[x]", ".spec[*]"])
def test_json_path_rejects_unsupported(path: str) -> None:
    with pytest.raises(ValueError, match="unsupported jsonPath"):
        json_path_get(DOC, path)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (45, "45s"), (119, "119s"), (300, "5m"), (330, "5m30s"),
        (42 * 60, "42m"), (3 * 3600, "3h"), (3 * 3600 + 600, "3h10m"), (20 * 3600, "20h"),
        (2 * 86400, "2d"), (2 * 86400 + 3 * 3600, "2d3h"), (30 * 86400, "30d"),
        (3 * 365 * 86400, "3y"), (2 * 365 * 86400 + 10 * 86400, "2y10d"), (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("timestamp", "text"),
    [("2024-05-01T12:00:00Z", "5m"), ("2024-05-01T11:59:15+00:00", "5m45s"), ("2024-04-29T12:05:00Z", "2d"),
     (None, "<unknown>"), ("yesterday", "<invalid>")],
)
def test_age(timestamp: str | None, text: str) -> None:
    assert age(timestamp, NOW) == text


def test_age_with_naive_now_is_utc() -> None:
    assert age("2024-05-01T12:00:00Z", NOW.replace(tzinfo=None) + timedelta(seconds=45)) == "5m45s"


@pytest.mark.parametrize(
    ("column", "text"),
    [
        (PrinterColumn("IMAGE", "string", ".spec.template.image"), "web:1"),
        (PrinterColumn("REPLICAS", "integer", ".spec.replicas"), "0"),
        (PrinterColumn("PORTS", "string", ".status.portsText"), "<none>"),
        (PrinterColumn("AGE", "date", ".metadata.creationTimestamp"), "5m"),
        (PrinterColumn("GONE", "date", ".metadata.deletionTimestamp"), "<none>"),
    ],
)
def test_cell(column: PrinterColumn, text: str) -> None:
    assert cell(DOC, column, NOW) == text
