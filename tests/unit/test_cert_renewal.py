"""When a certificate is renewed, for how long, through which endpoints, who may: plain data."""

from __future__ import annotations

import datetime

import pytest

from kubeless.cluster import pki
from kubeless.cluster.join_server import renew_refusal
from kubeless.cluster.record import DEFAULT_CERT_EXPIRY, ClusterRecord
from kubeless.cluster.renewal import (MAX_RETRY, RENEW_WINDOW, join_endpoints,
                                      parse_cert_expiry, renewal_point, seconds_to_wait)

T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("text, seconds", [
    pytest.param("2160h", 90 * 86400.0, id="Swarm's default as a Go duration"),
    pytest.param("90d", 90 * 86400.0, id="days"),
    pytest.param("10s", 10.0, id="the minimum"),
    pytest.param("1m30s", 90.0, id="composite"),
])
def test_cert_expiry_accepted(text: str, seconds: float) -> None:
    assert parse_cert_expiry(text) == seconds


@pytest.mark.parametrize("text, says", [
    pytest.param("9s", "at least 10s", id="below the minimum"),
    pytest.param("0", "at least 10s", id="zero"),
    pytest.param("-5m", "expected a duration", id="negative"),
    pytest.param("soon", "expected a duration", id="words"),
    pytest.param("", "expected a duration", id="empty"),
])
def test_cert_expiry_refused(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_cert_expiry(text)


@pytest.mark.parametrize("now, fraction, failures, wait", [
    pytest.param(0, 0.5, 0, 50.0, id="to the renewal point"),
    pytest.param(60, 0.5, 0, 0.0, id="past the point: at once"),
    pytest.param(60, 0.5, 1, 1.0, id="first retry after a second"),
    pytest.param(60, 0.5, 4, 4.0, id="doubling, bounded by a tenth of what is left"),
    pytest.param(60, 0.5, 10, 4.0, id="a tenth of the 40 s left"),
    pytest.param(99.9, 0.5, 3, 0.2, id="nearly expired: never under 0.2 s"),
    pytest.param(150, 0.5, 3, 0.2, id="expired: still retried"),
])
def test_seconds_to_wait(now: float, fraction: float, failures: int, wait: float) -> None:
    assert seconds_to_wait(at(now), at(0), at(100), fraction, failures) == pytest.approx(wait)


def test_retries_are_bounded_for_long_lifetimes() -> None:
    assert seconds_to_wait(at(0), at(0), at(90 * 86400), 0.5, 20) == MAX_RETRY


def test_the_renewal_point_falls_in_swarms_window_of_the_validity() -> None:
    low, high = RENEW_WINDOW
    assert renewal_point(at(0), at(100), low) == at(50)
    assert renewal_point(at(0), at(100), high) == at(80)


def test_a_short_lifetime_is_backdated_by_a_tenth_only() -> None:
    ca = pki.CA.make("backdate")
    info = pki.cert_info(ca.issue(pki.Profile("node:n1", lifetime=10), now=T0)[1])
    assert (info.not_before, info.not_after) == (at(-1), at(10))
    long = pki.cert_info(ca.issue(pki.Profile("node:n1"), now=T0)[1])
    assert long.not_before == at(-60)


@pytest.mark.parametrize("beats, found", [
    pytest.param({"m2": {"address": "10.0.0.2", "joinPort": 2400},
                  "m1": {"address": "10.0.0.1", "joinPort": 2377}},
                 [("10.0.0.1", 2377), ("10.0.0.2", 2400)], id="every manager, by name"),
    pytest.param({"w1": {"address": "10.0.0.3"}}, [], id="a worker says no join port"),
    pytest.param({}, [], id="no heartbeat: every node down"),
    pytest.param({"m1": {"joinPort": 2377}}, [], id="no address"),
    pytest.param({"m1": {"address": "10.0.0.1", "joinPort": 2377, "stoppedAt": "x"}}, [],
                 id="a manager that stopped"),
    pytest.param({"m1": {"address": "10.0.0.1", "joinPort": "2377"}}, [],
                 id="a port that is not a number"),
    pytest.param({"m1": {"address": "10.0.0.1", "joinPort": 70000}}, [],
                 id="a port out of range"),
    pytest.param({"m1": "text"}, [], id="a heartbeat that is not a mapping"),
])
def test_join_endpoints(beats: dict[str, object], found: list[tuple[str, int]]) -> None:
    assert join_endpoints(beats) == found


def info(common_name: str) -> pki.CertInfo:
    return pki.CertInfo(common_name, (), at(0), at(10), False)


@pytest.mark.parametrize("peer, asked, status", [
    pytest.param(info("node:n1"), "node:n1", None, id="the node itself"),
    pytest.param(None, "node:n1", 401, id="no client certificate"),
    pytest.param(info("node:n1"), "node:n2", 403, id="another node's name"),
    pytest.param(info("node:n1"), "manager:n1", 403, id="a manager identity asked"),
    pytest.param(info("manager:n1"), "manager:n1", 403, id="a manager renews itself locally"),
    pytest.param(info("admin:ops"), "admin:ops", 403, id="an admin"),
    pytest.param(info("etcd-server"), "etcd-server", 403, id="etcd's own certificate"),
])
def test_renew_refusal(peer: pki.CertInfo | None, asked: str, status: int | None) -> None:
    reply = renew_refusal(peer, asked)
    assert (reply.status if reply is not None else None) == status


def test_the_record_keeps_its_cert_expiry() -> None:
    ca = pki.CA.make("record")
    record = ClusterRecord("c1", "2030-01-01T00:00:00Z", ca.cert_pem, cert_expiry=30.0)
    value = record.to_value()
    assert value["certExpiry"] == "30s"
    assert ClusterRecord.from_value("k", value).cert_expiry == 30.0
    del value["certExpiry"]  # a record made before the setting
    assert ClusterRecord.from_value("k", value).cert_expiry == DEFAULT_CERT_EXPIRY
