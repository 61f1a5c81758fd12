"""The join endpoint's pure halves: reading a request, the join address, the pin, profiles."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubeless.cluster import tokens
from kubeless.cluster.ca import cert_der
from kubeless.cluster.errors import JoinFailed, NodeNameTaken, TokenRefused
from kubeless.cluster.join_client import check_pin, is_join_address, parse_join_address
from kubeless.cluster.join_server import BadRequest, node_profiles, parse_request, refusal
from kubeless.cluster.pki import CA, make_csr, new_key

CSR = make_csr(new_key(), "node:w1")
TOKEN = str(tokens.new_token("a" * tokens.DIGEST_LEN))


def body(**changes: Any) -> bytes:
    data: dict[str, Any] = {"token": TOKEN, "csr": CSR, "managerCsr": CSR, "nodeName": "w1",
                            "labels": {"zone": "eu"}, "advertiseAddr": "10.0.0.7",
                            "runtime": "fake", "hostname": "box"}
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return json.dumps(data).encode()


def test_a_valid_request_is_read() -> None:
    request = parse_request(body())
    assert request.node_name == "w1" and request.labels == {"zone": "eu"}
    assert request.advertise_addr == "10.0.0.7" and request.runtime == "fake"
    assert str(request.token) == TOKEN and request.csr == CSR and request.manager_csr == CSR
    assert parse_request(body(managerCsr=None, labels=None, hostname=None)).manager_csr == ""


BAD = {
    "not JSON": (b"{nope", "not JSON"),
    "not an object": (b"[1, 2]", "not a JSON object"),
    "no token": (body(token=None), "token is missing"),
    "malformed token": (body(token="SWMTKN-1-x-y"), "malformed"),
    "token not a string": (body(token=7), "token must be a string"),
    "no node name": (body(nodeName=None), "nodeName is missing"),
    "reserved name root": (body(nodeName="root"), "reserved"),
    "reserved name admin": (body(nodeName="admin"), "reserved"),
    "name with a colon": (body(nodeName="node:x"), "not a valid node name"),
    "uppercase name": (body(nodeName="W1"), "not a valid node name"),
    "no csr": (body(csr=None), "csr is missing"),
    "csr not PEM": (body(csr="hello"), "csr is not a PEM certificate request"),
    "manager csr not PEM": (body(managerCsr="x"), "managerCsr is not a PEM"),
    "address not IP": (body(advertiseAddr="box.example"), "not an IP address"),
    "no address": (body(advertiseAddr=None), "advertiseAddr is missing"),
    "runtime not a word": (body(runtime="../../x"), "not a runtime's name"),
    "labels not an object": (body(labels=["a"]), "labels must be an object"),
    "bad label key": (body(labels={"-x": "1"}), "label '-x'"),
    "label value not text": (body(labels={"x": 1}), "label 'x'"),
}


@pytest.mark.parametrize("raw, needle", BAD.values(), ids=BAD.keys())
def test_bad_requests_are_refused_with_the_field_named(raw: bytes, needle: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_request(raw)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_the_token_secret_is_never_echoed() -> None:
    secret = tokens.parse_token(TOKEN).secret
    for raw, _ in BAD.values():
        with pytest.raises(BadRequest) as err:
            parse_request(raw)
        assert secret not in str(err.value)


REFUSALS = {
    "wrong token": (TokenRefused("not valid"), 403),
    "bad request": (BadRequest("x"), 400),
    "name taken": (NodeNameTaken("taken"), 409),
}


@pytest.mark.parametrize("err, status", REFUSALS.values(), ids=REFUSALS.keys())
def test_refusals_have_their_status(err: Exception, status: int) -> None:
    reply = refusal(err)
    assert reply.status == status and reply.body == {"error": str(err)}


ADDRESSES = {
    "host and port": ("10.0.0.1:2377", ("10.0.0.1", 2377)),
    "default port": ("manager.example", ("manager.example", 2377)),
    "other port": ("m1:4000", ("m1", 4000)),
    "ipv6": ("[::1]:2400", ("::1", 2400)),
    "ipv6 default port": ("[::1]", ("::1", 2377)),
}


@pytest.mark.parametrize("text, expected", ADDRESSES.values(), ids=ADDRESSES.keys())
def test_join_addresses(text: str, expected: tuple[str, int]) -> None:
    assert is_join_address(text)
    assert parse_join_address(text) == expected


@pytest.mark.parametrize("text", ["a:b", "a:0", "a:70000", "a:1,b:2", ":2377", "[::1]x"])
def test_bad_join_addresses(text: str) -> None:
    with pytest.raises(JoinFailed):
        parse_join_address(text)


@pytest.mark.parametrize("text", ["http://10.0.0.1:2379", "https://e:2379,https://f:2379"])
def test_a_scheme_means_etcd(text: str) -> None:
    assert not is_join_address(text)


def test_the_pin_is_the_token_digest() -> None:
    ca, other = CA.make("one"), CA.make("two")
    token = tokens.new_token(tokens.ca_digest(cert_der(ca.cert_pem)))
    check_pin(ca.cert_pem, token, "m:2377")
    for served in (other.cert_pem, "not a certificate"):
        with pytest.raises(JoinFailed, match="does not belong to the cluster of this token"):
            check_pin(served, token, "m:2377")


def test_profiles_name_the_node_and_the_manager() -> None:
    node, manager = node_profiles("w1", "10.0.0.7", "worker")
    assert node.common_name == "node:w1" and node.hosts == ("10.0.0.7",)
    assert node.usages == {"client", "server"} and manager is None
    node, manager = node_profiles("m2", "10.0.0.8", "manager")
    assert manager is not None and manager.common_name == "manager:m2"
    assert manager.usages == {"client"}
