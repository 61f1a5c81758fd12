"""Joining through a manager's join endpoint: ``kubeless join --token T HOST:PORT``.

    is_join_address   an address with no scheme is a join endpoint (``HOST[:PORT]``);
                      one with ``http://``/``https://`` is etcd, as before
    join_address, parse_join_address   ``HOST:PORT`` made and read
    join_through      the whole exchange, nothing written:
                        1. GET /ca without verification (nothing secret goes out)
                        2. its sha256 digest must be the token's (the pin), else
                           "the manager at X does not belong to the cluster of this token"
                        3. keys made here (never sent) and their requests
                        4. POST /join over TLS verified against that CA, for HOST
    post_renew        ``POST /renew`` with mutual TLS: the node's current certificate
                      authenticates it, the reply is its renewed certificate
                      (``kubeless.cluster.renewal`` drives it)
    save_identity     what a join returned, into the state dir (``StateDir`` names the
                      places): the node identity in ``tls/``, a manager's own in
                      ``manager-tls/`` and the CA key (``ca.key``, 0600)

The server is ``kubeless.cluster.join_server`` (its docstring has the
protocol). Failures are ``JoinFailed``: one sentence, nothing written.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import tokens
from .ca import cert_der
from .errors import CAError, JoinFailed
from .state import DEFAULT_JOIN_PORT as DEFAULT_PORT
from .state import StateDir

TIMEOUT = 15.0


def is_join_address(text: str) -> bool:
    """Whether a join argument names a join endpoint (no scheme) rather than etcd."""
    return "://" not in text


def join_address(host: str, port: int) -> str:
    """``HOST:PORT`` as ``kubeless join`` takes it (``parse_join_address``'s inverse; an
    IPv6 host in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_join_address(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` or ``[IPv6][:PORT]`` -> (host, port); ``JoinFailed`` otherwise."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    else:
        host, _, port_text = text.partition(":")
    if not host or "," in text or "/" in text:
        raise JoinFailed(f"{text!r} is not a join endpoint: use HOST:PORT (a manager's address "
                         f"and join port, {DEFAULT_PORT} by default), or http://HOST:PORT for "
                         "etcd itself")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise JoinFailed(f"{text!r}: the port {port_text!r} is not a port number")
    return host, int(port_text)


@dataclass(frozen=True)
class NodeRequest:
    """What the joining node says of itself."""

    node_name: str
    advertise_addr: str
    runtime: str
    labels: dict[str, str]
    hostname: str = ""


@dataclass(frozen=True)
class Joined:
    """What a successful join returned, with the keys made here."""

    node_id: str
    role: str
    cluster_id: str
    endpoints: str
    prefix: str
    ca: str
    certificate: str
    key: str
    manager_certificate: str = ""
    manager_key: str = ""
    ca_key: str = ""


def join_through(address: str, token_text: str, node: NodeRequest) -> Joined:
    """Join the cluster of the manager at ``address``; ``JoinFailed`` (or
    ``TokenMalformed``) with nothing written."""
    from .pki import key_pem, make_csr, new_key

    token = tokens.parse_token(token_text)
    host, port = parse_join_address(address)
    where = f"{host}:{port}"
    ca = fetch_ca(host, port, where)
    check_pin(ca, token, where)
    node_key, manager_key = new_key(), new_key()
    body = {"token": str(token), "nodeName": node.node_name, "labels": node.labels,
            "advertiseAddr": node.advertise_addr, "runtime": node.runtime,
            "hostname": node.hostname,
            "csr": make_csr(node_key, f"node:{node.node_name}"),
            "managerCsr": make_csr(manager_key, f"manager:{node.node_name}")}
    reply = post_join(host, port, where, ca, body)
    joined = read_reply(reply, ca, where, key_pem(node_key), key_pem(manager_key))
    check_joined(joined, node.node_name, where)
    return joined


def fetch_ca(host: str, port: int, where: str) -> str:
    """``GET /ca`` without verifying the server (the caller pins what comes back)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    status, text = _call(host, port, where, context, "GET", "/ca", None)
    if status != 200:
        raise JoinFailed(f"the join endpoint at {where} answered {status} to GET /ca: "
                         "is it a kubeless manager's join port?")
    return text


def check_pin(ca_pem: str, token: tokens.JoinToken, where: str) -> None:
    """The CA served must be the one whose digest the token carries."""
    try:
        digest = tokens.ca_digest(cert_der(ca_pem))
    except CAError:
        digest = ""
    if digest != token.digest:
        raise JoinFailed(f"the manager at {where} does not belong to the cluster of this token")


def post_join(host: str, port: int, where: str, ca_pem: str,
              body: dict[str, Any]) -> dict[str, Any]:
    """``POST /join`` over TLS verified against ``ca_pem`` for ``host``; the reply's JSON."""
    context = ssl.create_default_context(cadata=ca_pem)
    status, reply = _post_json(host, port, where, context, "/join", body)
    if status != 200:
        raise JoinFailed(f"the manager at {where} refused to join this node: "
                         f"{reply.get('error', status)}")
    return reply


def read_reply(reply: dict[str, Any], ca: str, where: str, key: str,
               manager_key: str) -> Joined:
    try:
        role = str(reply["role"])
        manager = role == "manager"
        return Joined(node_id=str(reply["nodeId"]), role=role,
                      cluster_id=str(reply["clusterId"]), endpoints=str(reply["endpoints"]),
                      prefix=str(reply["prefix"]), ca=ca, certificate=str(reply["certificate"]),
                      key=key, manager_certificate=str(reply["managerCertificate"])
                      if manager else "", manager_key=manager_key if manager else "",
                      ca_key=str(reply["caKey"]) if manager else "")
    except KeyError as err:
        raise JoinFailed(f"the join endpoint at {where} answered without {err}") from None


def check_joined(joined: Joined, node_name: str, where: str) -> None:
    """The certificates name this node and were signed by the pinned CA."""
    from .pki import cert_info, load_cert, load_key

    try:
        ca = load_cert(joined.ca)
        for pem, name in ((joined.certificate, f"node:{node_name}"),
                          (joined.manager_certificate, f"manager:{node_name}")):
            if not pem:
                continue
            load_cert(pem).verify_directly_issued_by(ca)
            if cert_info(pem).common_name != name:
                raise JoinFailed(f"the join endpoint at {where} returned a certificate for "
                                 f"{cert_info(pem).common_name}, not {name}")
        if joined.ca_key and _public(load_key(joined.ca_key)) != _public(ca):
            raise JoinFailed(f"the join endpoint at {where} returned a CA key that is not "
                             "the cluster CA's")
    except (CAError, ValueError, TypeError) as err:
        raise JoinFailed(f"the join endpoint at {where} returned a certificate the cluster "
                         f"CA did not sign: {err}") from None


def post_renew(host: str, port: int, directory: Path, csr_pem: str) -> str:
    """``POST /renew`` to the join endpoint at ``host:port``, presenting the identity in
    ``directory`` (``ca.pem``, ``cert.pem``, ``key.pem``) and verifying the manager
    against that CA; the renewed certificate (PEM). ``JoinFailed`` otherwise."""
    where = f"{host}:{port}"
    context = _identity_context(directory, "to renew")
    status, reply = _post_json(host, port, where, context, "/renew", {"csr": csr_pem})
    if status != 200 or not isinstance(reply.get("certificate"), str):
        raise JoinFailed(f"the manager at {where} refused to renew: "
                         f"{reply.get('error', status)}")
    return str(reply["certificate"])


def post_promote(host: str, port: int, state: StateDir, node_id: str) -> bool:
    """``POST /promote`` to the join endpoint at ``host:port`` with the node's own
    identity (``tls/``): when its Node is now a manager, the manager identity and the CA
    key are written in ``state`` (True); False when the manager says it is not one.
    ``JoinFailed`` for anything else (nothing written)."""
    from .pki import CA, key_pem, load_cert, load_key, make_csr, new_key, write_cert_dir

    where = f"{host}:{port}"
    context = _identity_context(state.tls_dir)
    key = new_key()
    status, reply = _post_json(host, port, where, context, "/promote",
                               {"managerCsr": make_csr(key, f"manager:{node_id}")})
    if status == 403 and "is not a manager" in str(reply.get("error")):
        return False
    if status != 200 or not all(isinstance(reply.get(k), str)
                                for k in ("managerCertificate", "caKey", "ca")):
        raise JoinFailed(f"the manager at {where} refused the manager identity: "
                         f"{reply.get('error', status)}")
    try:
        write_cert_dir(state.manager_tls_dir, reply["ca"], reply["managerCertificate"],
                       key_pem(key))
        CA(load_key(reply["caKey"]), load_cert(reply["ca"])).save(state.path)
    except OSError as err:
        raise JoinFailed(f"cannot write the manager identity in {state}: {err.strerror}") \
            from None
    return True


def save_identity(state: StateDir, joined: Joined) -> None:
    """Write what the join returned into ``state`` (keys 0600)."""
    from .pki import CA, load_cert, load_key, write_cert_dir

    state.ensure()
    try:
        write_cert_dir(state.tls_dir, joined.ca, joined.certificate, joined.key)
        if joined.role == "manager":
            write_cert_dir(state.manager_tls_dir, joined.ca, joined.manager_certificate,
                           joined.manager_key)
            CA(load_key(joined.ca_key), load_cert(joined.ca)).save(state.path)
    except OSError as err:
        raise JoinFailed(f"cannot write this node's identity in {state}: {err.strerror}") \
            from None


def _public(holder: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = holder.public_key()
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def _identity_context(directory: Path, purpose: str = "") -> ssl.SSLContext:
    """A client context presenting the identity in ``directory`` (``cert.pem``, ``key.pem``)
    and verifying the manager against its ``ca.pem`` (mutual TLS: /renew, /promote)."""
    try:
        context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
        context.load_cert_chain(str(directory / "cert.pem"), str(directory / "key.pem"))
    except (OSError, ValueError) as err:
        raise JoinFailed(f"cannot use the identity in {directory}"
                         f"{' ' + purpose if purpose else ''}: {err}") from None
    return context


def _post_json(host: str, port: int, where: str, context: ssl.SSLContext, path: str,
               body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST ``body`` as JSON; the status and the reply's JSON object (``JoinFailed`` when
    the reply is not one)."""
    status, text = _call(host, port, where, context, "POST", path, json.dumps(body).encode())
    try:
        reply = json.loads(text)
    except json.JSONDecodeError:
        reply = None
    if not isinstance(reply, dict):
        raise JoinFailed(f"the join endpoint at {where} answered {status} without JSON")
    return status, reply


def _call(host: str, port: int, where: str, context: ssl.SSLContext, method: str,
          path: str, body: bytes | None) -> tuple[int, str]:
    conn = http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=context)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(1 << 20).decode("utf-8", "replace")
    except ssl.SSLCertVerificationError as err:
        raise JoinFailed(f"the manager at {where} presented a certificate the cluster CA "
                         f"does not vouch for at that address: {err.verify_message}") from None
    except (OSError, http.client.HTTPException) as err:
        raise JoinFailed(f"cannot reach the join endpoint at {where}: "
                         f"{getattr(err, 'strerror', None) or err}") from None
    finally:
        conn.close()
