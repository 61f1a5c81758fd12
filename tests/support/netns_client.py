"""A client run inside a network namespace (``ip netns exec NS python netns_client.py``).

    http HOST PORT COUNT [SECONDS]   COUNT GETs of /cgi-bin/who, a new connection each,
                                     spread over SECONDS (0: back to back)
    udp HOST PORT COUNT              COUNT datagrams, each waiting for its echo
    udp-echo HOST PORT NAME          serve: answer each datagram with "NAME <peer address>"

Prints one JSON object: ``{"bodies": [...], "failures": [...]}`` (a failure is the
error's text). Timeouts are short: a mesh that drops instead of refusing shows up
as a failure, not as a hang.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.request


def http(host: str, port: int, count: int, seconds: float) -> dict[str, list[str]]:
    bodies, failures = [], []
    start = time.monotonic()
    for i in range(count):
        if seconds:
            delay = start + seconds * i / count - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/cgi-bin/who", timeout=3) as r:
                bodies.append(r.read().decode().strip())
        except OSError as err:
            failures.append(str(err))
    return {"bodies": bodies, "failures": failures}


def udp(host: str, port: int, count: int) -> dict[str, list[str]]:
    bodies, failures = [], []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for i in range(count):
            try:
                s.sendto(f"ping {i}".encode(), (host, port))
                bodies.append(s.recvfrom(2048)[0].decode())
            except OSError as err:
                failures.append(str(err))
    return {"bodies": bodies, "failures": failures}


def udp_echo(host: str, port: int, name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, port))
        while True:
            _, peer = s.recvfrom(2048)
            s.sendto(f"{name} {peer[0]}".encode(), peer)


def main(argv: list[str]) -> None:
    if argv[0] == "udp-echo":
        udp_echo(argv[1], int(argv[2]), argv[3])
        return
    kind, host, port, count = argv[0], argv[1], int(argv[2]), int(argv[3])
    if kind == "http":
        result = http(host, port, count, float(argv[4]) if len(argv) > 4 else 0.0)
    else:
        result = udp(host, port, count)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
