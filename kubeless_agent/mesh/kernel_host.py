"""What the kernel path does to a host: nft, iptables and sysctl through subprocesses.

Blocking calls (``subprocess.run``): the kernel mesh calls them off the event
loop (``asyncio.to_thread``). ``prefix`` runs every command elsewhere, e.g.
``("nsenter", "--net=/var/run/netns/n1")`` for a node that is a network
namespace (tests, the lab).

- ``probe()``: why the kernel path cannot work here (None when it can):
  ``nft`` missing, or ``nft -j list tables`` refused (not root);
- ``apply(batch)`` / ``check(batch)``: ``nft -j -f -`` / ``nft -c -j -f -``;
- ``listing(table)``: ``nft -j list table`` (counters), None when there is none;
- ``allow_localnet()``: ``net.ipv4.conf.all.route_localnet=1``, as kube-proxy sets
  it: a connection from 127.0.0.1 DNATed to another address may then be routed;
- ``forwarding()``: whether ``net.ipv4.ip_forward`` is on (Docker turns it on; the
  mesh only says when it is off, since endpoints on other nodes need it);
- ``docker_rules()``: Docker's DNAT rules of its host ports (``nft.docker_targets``);
- the forward rule: Docker's FORWARD policy is drop, which a rule in our own table
  cannot override, so one ``ct status dnat`` accept goes into Docker's
  ``DOCKER-USER`` chain, found by its comment (``kubeless mesh <node>``), added
  once, removed with the table; nothing is done where there is no such chain.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)
TIMEOUT = 30.0


class NftError(Exception):
    """A command of the kernel path failed: its one line of stderr."""


class NftHost:
    """The host (or network namespace) whose ruleset the kernel path changes."""

    def __init__(self, prefix: Sequence[str] = ()) -> None:
        self.prefix = tuple(prefix)

    def _run(self, *cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([*self.prefix, *cmd], input=stdin, capture_output=True,
                                  text=True, timeout=TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise NftError(f"{cmd[0]}: {err}") from err

    def _ok(self, *cmd: str, stdin: str | None = None) -> str:
        done = self._run(*cmd, stdin=stdin)
        if done.returncode != 0:
            lines = [s for s in (done.stderr or done.stdout).splitlines() if s.strip()]
            raise NftError(f"{' '.join(cmd[:3])}: " + (lines[0] if lines else
                                                        f"exit {done.returncode}"))
        return done.stdout

    def probe(self) -> str | None:
        if not self.prefix and shutil.which("nft") is None:
            return "nft is not installed (Debian's nftables)"
        try:
            self._ok("nft", "-j", "list", "tables")
        except NftError as err:
            return str(err)
        return None

    def apply(self, batch: dict[str, Any]) -> None:
        self._ok("nft", "-j", "-f", "-", stdin=json.dumps(batch))

    def check(self, batch: dict[str, Any]) -> None:
        self._ok("nft", "-c", "-j", "-f", "-", stdin=json.dumps(batch))

    def listing(self, family: str, table: str) -> dict[str, Any] | None:
        done = self._run("nft", "-j", "list", "table", family, table)
        if done.returncode != 0:
            return None
        try:
            value = json.loads(done.stdout)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def allow_localnet(self) -> None:
        self._ok("sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1")

    def forwarding(self) -> bool:
        done = self._run("sysctl", "-n", "net.ipv4.ip_forward")
        return done.returncode == 0 and done.stdout.strip() == "1"

    def docker_rules(self) -> str:
        done = self._run("iptables", "-w", "-t", "nat", "-S", "DOCKER")
        return done.stdout if done.returncode == 0 else ""

    # -- the accept rule in Docker's DOCKER-USER chain ------------------------------------

    @staticmethod
    def _forward_rule(node_id: str) -> list[str]:
        return ["-m", "conntrack", "--ctstate", "DNAT", "-m", "comment", "--comment",
                f"kubeless mesh {node_id}", "-j", "ACCEPT"]

    def _has_docker_user(self) -> bool:
        return self._run("iptables", "-w", "-S", "DOCKER-USER").returncode == 0

    def ensure_forward_rule(self, node_id: str) -> bool:
        """The accept rule is in DOCKER-USER (added when missing); False: no such chain."""
        if not self._has_docker_user():
            return False
        rule = self._forward_rule(node_id)
        if self._run("iptables", "-w", "-C", "DOCKER-USER", *rule).returncode != 0:
            self._ok("iptables", "-w", "-I", "DOCKER-USER", *rule)
        return True

    def remove_forward_rule(self, node_id: str) -> None:
        if not self._has_docker_user():
            return
        rule = self._forward_rule(node_id)
        while self._run("iptables", "-w", "-C", "DOCKER-USER", *rule).returncode == 0:
            self._ok("iptables", "-w", "-D", "DOCKER-USER", *rule)
