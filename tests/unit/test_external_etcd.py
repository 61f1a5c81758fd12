"""init's and join's transport decision (``choose_node_transport``), ``kubeless certs``'
host list and etcd flags, the printed direct join command, and the plain tokens' key."""

from __future__ import annotations

import pytest

from kubeless.cluster.etcd_server import LOOPBACK
from kubeless.cluster.join_client import join_address
from kubeless.store import Keyspace
from kubeless_cli.certs_cmds import etcd_flags_text, parse_hosts
from kubeless_cli.cluster_cmds import join_command
from kubeless_cli.context import CliError
from kubeless_cli.up_tls import choose_node_transport

HTTP, HTTPS = "http://10.0.0.1:2379", "https://10.0.0.1:2379,https://10.0.0.2:2379"

NODE_TRANSPORTS = {  # name: (endpoints, insecure, remembered) -> tls, or the refusal's words
    "https is TLS": ((HTTPS, False, False), True),
    "https with a plain node state: TLS now": ((HTTPS, False, True), True),
    "http with --insecure: plain": ((HTTP, True, False), False),
    "http remembered by the node's state: plain": ((HTTP, False, True), False),
    "http without --insecure: refused, saying how to do it securely":
        ((HTTP, False, False), "has no TLS: `kubeless init` refuses a plain connection"),
    "--insecure with https: refused": ((HTTPS, True, False), "drop --insecure"),
    "mixed schemes: plain, so refused without --insecure":
        (("http://a:2379,https://b:2379", False, False), "--insecure to accept it"),
}


@pytest.mark.parametrize("case", NODE_TRANSPORTS)
def test_choose_node_transport(case: str) -> None:
    (endpoints, insecure, remembered), expected = NODE_TRANSPORTS[case]
    if isinstance(expected, str):
        with pytest.raises(CliError) as refused:
            choose_node_transport(endpoints, insecure=insecure, remembered=remembered,
                                  verb="init")
        message = refused.value.format_message()
        assert expected in message and "\n" not in message
        if "no TLS" in message:
            assert "https://" in message and "kubeless certs" in message
        return
    got = choose_node_transport(endpoints, insecure=insecure, remembered=remembered,
                                verb="init")
    assert got.tls is expected
    if expected:
        assert got.warning is None
    else:  # up's words, naming who can reach that etcd
        assert got.warning is not None and got.warning.startswith("WARNING: --insecure")
        assert "10.0.0.1" in got.warning and "\n" not in got.warning


def test_an_endpoint_that_is_not_one_is_one_line() -> None:
    with pytest.raises(CliError):
        choose_node_transport("ftp://x", insecure=True, remembered=False, verb="join")


HOSTS = {
    "addresses and names, loopback added": ("10.0.0.1, etcd.example,10.0.0.1",
                                            ("10.0.0.1", "etcd.example", *LOOPBACK)),
    "IPv6 and a wildcard name": ("fd00::1,*.etcd.example",
                                 ("fd00::1", "*.etcd.example", *LOOPBACK)),
    "loopback given is not repeated": ("127.0.0.1", LOOPBACK),
}


@pytest.mark.parametrize("case", HOSTS)
def test_parse_hosts(case: str) -> None:
    text, expected = HOSTS[case]
    assert parse_hosts(text) == expected


@pytest.mark.parametrize("text", ["", " , ", "bad host", "a..b", "-x.example", "x/y"])
def test_parse_hosts_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="--hosts"):
        parse_hosts(text)


def test_etcd_flags_one_per_line() -> None:
    text = etcd_flags_text(["--cert-file", "/d/server.crt", "--client-cert-auth",
                            "--key-file", "/d i r/server.key"])
    assert text.splitlines() == ["      --cert-file /d/server.crt \\", "      --client-cert-auth \\",
                                 "      --key-file '/d i r/server.key'"]


JOIN_COMMANDS = {
    "plain etcd: the cluster's --insecure goes with it":
        (("/kubeless", "T", "http://h:2379"), "kubeless join --token T http://h:2379 --insecure"),
    "TLS etcd, another prefix": (("/p", "T", "https://h:2379"),
                                 "kubeless --prefix /p join --token T https://h:2379"),
}


@pytest.mark.parametrize("case", JOIN_COMMANDS)
def test_join_command(case: str) -> None:
    args, expected = JOIN_COMMANDS[case]
    assert join_command(*args) == expected


def test_join_address_brackets_ipv6() -> None:
    assert join_address("10.0.0.1", 2377) == "10.0.0.1:2377"
    assert join_address("fd00::1", 2377) == "[fd00::1]:2377"


def test_secrets_live_apart_from_what_nodes_read() -> None:
    keys = Keyspace("/k")
    assert keys.join_tokens() == "/k/v1/secrets/join-tokens"
    assert keys.join_tokens().startswith(keys.secrets_prefix())
    assert keys.parse(keys.join_tokens()) is None
