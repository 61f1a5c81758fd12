"""Which etcd call failures are retried, and which may have been applied (pure)."""

from __future__ import annotations

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from kubeless.store.etcd import _maybe_applied, _retryable

S = grpc.StatusCode


def err(code: grpc.StatusCode, details: str) -> AioRpcError:
    return AioRpcError(code, Metadata(), Metadata(), details)


CASES = {
    # name: (code, details, retried, maybe applied)
    "member unreachable": (S.UNAVAILABLE, "failed to connect to all addresses", True, False),
    "election under way": (S.UNAVAILABLE, "etcdserver: no leader", True, False),
    "leader changed during a read": (S.UNAVAILABLE, "etcdserver: leader changed", True, False),
    "proposal outlived the server's wait": (S.UNAVAILABLE, "etcdserver: request timed out",
                                            True, True),
    "killed member reset the stream": (S.UNKNOWN, "Stream removed", True, True),
    "attempt ran out of time": (S.DEADLINE_EXCEEDED, "Deadline Exceeded", True, True),
    "member's own request context expired": (S.UNKNOWN, "context deadline exceeded", True,
                                              True),
    "proposal dropped without a leader": (S.UNKNOWN, "raft proposal dropped", True, False),
    "compacted revision": (S.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been "
                                           "compacted", False, False),
    "request too large": (S.INVALID_ARGUMENT, "etcdserver: request is too large", False, False),
    "other unknown error": (S.UNKNOWN, "something else", False, False),
    "permission denied": (S.PERMISSION_DENIED, "etcdserver: permission denied", False, False),
}


@pytest.mark.parametrize("name", CASES)
def test_retry_and_ambiguity(name: str) -> None:
    code, details, retried, maybe_applied = CASES[name]
    e = err(code, details)
    assert _retryable(e) is retried
    assert _maybe_applied(e) is maybe_applied
