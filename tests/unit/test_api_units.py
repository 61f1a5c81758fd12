"""Durations, sizes and CPUs: tables and round-trip properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeless.api import format_duration, format_size, parse_cpus, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0), ("0s", 0.0), ("10s", 10.0), ("1m30s", 90.0), ("1h", 3600.0), ("1.5h", 5400.0),
        ("500ms", 0.5), ("250us", 0.00025), ("100ns", 1e-7), ("2h45m", 9900.0), (".5s", 0.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "-1s", "1s ", "1m 30s", "1d", "ten seconds"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration like"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (90, "1m30s"), (10, "10s"), (3600, "1h0m0s"), (0.5, "500ms"), (1.5, "1.5s"),
     (0.00025, "250us"), (1e-9, "1ns"), (3723.25, "1h2m3.25s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1.0, float("inf"), float("nan")])
def test_format_duration_rejects(seconds: float) -> None:
    with pytest.raises(ValueError):
        format_duration(seconds)


@given(st.integers(min_value=0, max_value=10**15))
def test_duration_round_trip(nanoseconds: int) -> None:
    seconds = nanoseconds / 1e9
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=10**6))
def test_duration_formats_are_canonical(milliseconds: int) -> None:
    text = format_duration(milliseconds / 1000)
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("64Mi", 64 * 2**20), ("1Gi", 2**30), ("512M", 512 * 10**6), ("100k", 100_000), ("100K", 100_000),
        ("1024", 1024), (1024, 1024), ("10b", 10), ("1.5Ki", 1536), ("2Ti", 2 * 2**40), ("0", 0),
    ],
)
def test_parse_size(value: str | int, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["", "64mb", "1.5.0", "x", "-1", -1, "1 Gi B", True])
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="is not a size like"):
        parse_size(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0"), (1, "1"), (1024, "1Ki"), (64 * 2**20, "64Mi"), (1500, "1500"), (2000, "2k"),
     (512 * 10**6, "512M"), (3 * 2**40, "3Ti")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=2**60))
def test_size_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size


@pytest.mark.parametrize(("value", "cpus"), [(0.25, 0.25), (2, 2.0), ("0.5", 0.5), ("250m", 0.25)])
def test_parse_cpus(value: float | int | str, cpus: float) -> None:
    assert parse_cpus(value) == cpus


@pytest.mark.parametrize("value", [-1, "x", "nan", "inf", True, "-5m"])
def test_parse_cpus_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="is not a number of CPUs"):
        parse_cpus(value)  # type: ignore[arg-type]
