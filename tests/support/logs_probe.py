"""Probing a node's logs server as an arbitrary client would (the security tests).

``exchange`` sends one GET of the logs endpoint over ``context`` (None: plain TCP) and
returns whatever came back: b"" when the handshake was refused, so a test asserts an
anonymous or foreign client gets nothing while a cluster identity gets an answer.
"""

from __future__ import annotations

import socket
import ssl


def exchange(address: str, port: int, context: ssl.SSLContext | None,
             request: bytes | None = None) -> bytes:
    """What a client gets back for a GET of the logs endpoint, or ``request`` (b"" when
    refused)."""
    raw = socket.create_connection((address, port), timeout=10)
    got = b""
    try:
        sock = context.wrap_socket(raw, server_hostname=address) if context else raw
        sock.sendall(request or f"GET /logs/x HTTP/1.1\r\nHost: {address}\r\n"
                                "Connection: close\r\n\r\n".encode())
        while chunk := sock.recv(4096):
            got += chunk
    except (ssl.SSLError, ConnectionError):
        pass  # the handshake refused: the server's alert, or its hangup
    finally:
        raw.close()
    return got
