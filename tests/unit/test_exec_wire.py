"""The exec protocol's pure parts: frames, the request body, who may exec, and the fake
runtime's built-ins (what hollow nodes answer)."""

from __future__ import annotations

import pytest

from kubeless.cluster.exec_wire import (EXIT, HEADER, STDERR, STDOUT, ExecRequest, FrameError,
                                        exit_code, exit_frame, frame, parse_header)
from kubeless_agent.exec import Refused, admitted
from kubeless_agent.runtime.exec_session import CannotRun
from kubeless_agent.runtime.fake import FakeRuntime


def test_frames_round_trip() -> None:
    raw = frame(STDERR, b"oops\n")
    assert raw[:8] == bytes([2, 0, 0, 0, 0, 0, 0, 5])  # docker's multiplexed header
    assert parse_header(raw[:8]) == (STDERR, 5)
    stream, size = parse_header(exit_frame(3)[:8])
    assert stream == EXIT and exit_code(exit_frame(3)[8:8 + size]) == 3


@pytest.mark.parametrize("header", [HEADER.pack(9, 1), HEADER.pack(STDOUT, 1 << 30)])
def test_nonsense_headers_are_refused(header: bytes) -> None:
    with pytest.raises(FrameError):
        parse_header(header)


def test_requests_round_trip_and_bad_bodies_say_why() -> None:
    request = ExecRequest(("sh", "-c", "echo hi"), stdin=True, tty=True, size=(24, 80))
    assert ExecRequest.from_json(request.to_json()) == request
    for body, reason in [(b"{", "not JSON"), (b"[]", "not a JSON object"),
                         (b'{"command": []}', "non-empty list of strings"),
                         (b'{"command": ["ls", 1]}', "non-empty list of strings"),
                         (b'{"command": ["ls"], "size": [0, 80]}', "size must be")]:
        with pytest.raises(ValueError, match=reason):
            ExecRequest.from_json(body)


@pytest.mark.parametrize("common_name, tls, allowed", [
    ("admin:alice", True, True),
    ("node:n1", True, False),
    ("manager:m1", True, False),
    ("etcd-peer", True, False),
    ("admin:alice", False, False),  # plain HTTP: no one to trust
])
def test_only_admins_over_tls(common_name: str, tls: bool, allowed: bool) -> None:
    if allowed:
        admitted(common_name, tls)
        return
    with pytest.raises(Refused) as refused:
        admitted(common_name, tls)
    assert refused.value.code == 403


async def _run(runtime: FakeRuntime, tid: str, *command: str, stdin: bytes = b"",
               ) -> tuple[bytes, int]:
    session = await runtime.exec(tid, ExecRequest(command, stdin=bool(stdin)))
    if stdin:
        await session.write(stdin)
    await session.close_stdin()
    out = b"".join([data async for _, data in session.output()])
    return out, await session.wait()


async def test_fake_runtime_builtins() -> None:
    runtime = FakeRuntime()
    task = {"metadata": {"name": "t1"}, "spec": {"template": {"image": "web:1"}}}
    await runtime.start(task)
    assert runtime.tasks["t1"]["state"] == "running"  # no delay: running when start returns
    assert await _run(runtime, "t1", "echo", "hello", "there") == (b"hello there\n", 0)
    assert await _run(runtime, "t1", "cat", stdin=b"piped") == (b"piped", 0)
    assert await _run(runtime, "t1", "exit", "4") == (b"", 4)
    with pytest.raises(CannotRun) as cannot:
        await runtime.exec("t1", ExecRequest(("ls",)))
    assert cannot.value.code == 127
    with pytest.raises(LookupError):
        await runtime.exec("t2", ExecRequest(("echo",)))
