"""The mesh benchmark's pure helpers (bench.mesh): the 1,000 endpoints it syncs into a
table, wrk's output read back, and the per-round ratios."""

from __future__ import annotations

from bench.mesh import parse_wrk, ratio, synthetic_published
from kubeless_agent.mesh.nft import build_table

WRK_OUT = """Running 1s test @ http://127.0.0.3:29080/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  500.00us   9.00ms   90.00%
  Latency Distribution
     50%    1.00ms
     75%    1.20ms
     90%    1.50ms
     99%  750.00us
  4321 requests in 1.00s, 1.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   4300.50
Transfer/sec:      1.00MB
"""


def test_synthetic_published_holds_the_endpoints_asked_for() -> None:
    published = synthetic_published(1000, 10, 10)
    assert len(published) == 100
    backends = [b for pub in published.values() for g in pub.groups for b in g.backends]
    assert len(backends) == len({(b.address, b.port) for b in backends}) == 1000
    assert {b.node for b in backends} == {f"node-{i}" for i in range(10)}
    kinds = {pub.kind for pub in published.values()}
    assert kinds == {"Service", "Route"}
    route = next(pub for pub in published.values() if pub.kind == "Route")
    assert [g.weight for g in route.groups] == [90, 10]


def test_every_synthetic_endpoint_gets_a_chain() -> None:
    ruleset = build_table("node-0", synthetic_published(1000, 10, 10), ["10.0.0.1"])
    assert len(ruleset.endpoints) == 1000
    assert not ruleset.refused
    assert sum(r.local for r in ruleset.endpoints) == 100


def test_parse_wrk_reads_rate_p99_and_errors() -> None:
    assert parse_wrk(WRK_OUT) == {"rate": 4300.5, "p99_ms": 0.75, "requests": 4321.0,
                                  "errors": 7.0}


def test_ratio_is_the_median_of_each_rounds() -> None:
    base = [{"rate": 100.0}, {"rate": 50.0}, {"rate": 200.0}]
    path = [{"rate": 90.0}, {"rate": 50.0}, {"rate": 100.0}]
    assert ratio(path, base) == 0.9
