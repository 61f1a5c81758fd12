"""The exec protocol between ``kubeless exec`` and a node's agent: the request and the frames.

The CLI asks the agent's server (the one that serves logs, on the heartbeat's
``logsPort``, over TLS with client certificates) with::

    POST /exec/<task-id> HTTP/1.1
    Content-Type: application/json
    Content-Length: N
    Connection: Upgrade
    Upgrade: kubeless-exec

    {"command": ["sh", "-c", "..."], "stdin": true, "tty": false, "size": [rows, cols]}

and the agent answers ``101 Switching Protocols`` (then the stream), or an
error status with one line of text: 400 (a bad request), 403 (not an admin
identity, or the server is not TLS), 404 (no such task on this node), 409 (the
task is not running), 500.

After the 101 both sides send frames, docker's multiplexed-stream header as
the model: 8 bytes, the stream (one byte), three zero bytes, the payload
length (big-endian uint32), then the payload.

    client -> agent   STDIN  bytes for the command's stdin; an empty payload closes it
    agent -> client   STDOUT, STDERR  the command's output (with a TTY: STDOUT only,
                      the terminal's bytes); EXIT, last: JSON {"exitCode": n}
                      (n: 126 the command cannot run, 127 not found, as docker exec)

Pure framing: no sockets here, so both ends and the tests share it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

STDIN, STDOUT, STDERR, EXIT = 0, 1, 2, 3
HEADER = struct.Struct(">BxxxI")
MAX_FRAME = 1 << 20  # a peer announcing more is broken or hostile: hang up
UPGRADE = "kubeless-exec"
EXEC_PATH = "/exec/"


class FrameError(ValueError):
    """A frame header that no peer of ours sends."""


def frame(stream: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(stream, len(payload)) + payload


def exit_frame(code: int) -> bytes:
    return frame(EXIT, json.dumps({"exitCode": code}).encode())


def parse_header(header: bytes) -> tuple[int, int]:
    """(stream, payload length) of an 8-byte header; ``FrameError`` for nonsense."""
    stream, size = HEADER.unpack(header)
    if stream > EXIT or size > MAX_FRAME:
        raise FrameError(f"bad exec frame: stream {stream}, {size} bytes")
    return stream, size


def exit_code(payload: bytes) -> int:
    try:
        return int(json.loads(payload)["exitCode"])
    except (ValueError, KeyError, TypeError) as err:
        raise FrameError(f"bad exit frame: {payload[:80]!r}") from err


@dataclass(frozen=True)
class ExecRequest:
    """What to run in a task, and how (``size``: the client's terminal, rows and columns)."""

    command: tuple[str, ...]
    stdin: bool = False
    tty: bool = False
    size: tuple[int, int] | None = None

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"command": list(self.command), "stdin": self.stdin,
                                "tty": self.tty}
        if self.size:
            body["size"] = list(self.size)
        return json.dumps(body).encode()

    @staticmethod
    def from_json(raw: bytes) -> ExecRequest:
        """The request in a body; ``ValueError`` with the reason when it is not one."""
        try:
            body = json.loads(raw)
        except ValueError:
            raise ValueError("the body is not JSON") from None
        if not isinstance(body, dict):
            raise ValueError("the body is not a JSON object")
        command = body.get("command")
        if not isinstance(command, list) or not command \
                or not all(isinstance(a, str) for a in command):
            raise ValueError("command must be a non-empty list of strings")
        size = body.get("size")
        if size is not None and not (isinstance(size, list) and len(size) == 2 and all(
                isinstance(n, int) and 0 < n < 10000 for n in size)):
            raise ValueError("size must be [rows, columns]")
        return ExecRequest(tuple(command), body.get("stdin") is True, body.get("tty") is True,
                           (size[0], size[1]) if size else None)
