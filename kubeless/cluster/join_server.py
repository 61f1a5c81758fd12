"""The join endpoint a manager serves (Swarm's port 2377): a node trades a token for an identity.

    GET  /ca    the cluster CA certificate (PEM): the only unauthenticated call; the
                client checks its digest against the one its token carries (the pin)
    POST /join  JSON {token, csr, managerCsr, nodeName, labels, advertiseAddr,
                runtime, hostname}: the token's secret authorises the request and
                decides the role; the Node is registered (``bootstrap.join_cluster``,
                the one home of registration) and the CA signs:
                  csr         -> ``node:<id>``, client and server usage, SAN the
                                 node's advertise address (its own servers, later)
                  managerCsr  -> ``manager:<id>``, client usage (managers only)
                200 {nodeId, role, clusterId, certificate, ca, endpoints, prefix}
                    and for a manager also {managerCertificate, caKey}
                400 a request that is not one; 403 a wrong, rotated or foreign token;
                409 the node name is taken; 503 etcd cannot be read: {"error": "..."}
                and in every refusal nothing is written.
    POST /renew JSON {csr}, over mutual TLS: the client's certificate (from the
                cluster CA, still valid: the handshake refuses an expired or
                foreign one) names the identity renewed; only ``node:`` identities
                of Nodes in the cluster, and the request must ask for that same
                common name. The CA signs the certificate's own name, hosts and
                usages for the cluster's lifetime (``renewal.renewal_profile``).
                200 {certificate}; 401 no client certificate; 403 another identity,
                not a node, or a node that is not in the cluster.
    POST /promote JSON {managerCsr}, over mutual TLS with a node's certificate: a
                node whose Node is now a manager (``node promote``) gets its
                ``manager:<id>`` certificate and the CA key (what a manager's join
                returns), its etcd user made first. 200 {managerCertificate, caKey,
                ca}; 401 no client certificate; 403 not a node, another name, not
                in the cluster, or not a manager.

On a TLS etcd, the joining node's etcd users (``access.admit_node``: ``node:<id>``
with its own role, ``manager:<id>`` with root for a manager) are made after the
token is checked and before the Node is written and the certificate returned,
so a certificate is never handed out before etcd knows its user.

Every certificate is signed for the lifetime the cluster record says
(``certExpiry``, ``init``/``up --cert-expiry``), read at each request.

HTTPS only, with a server certificate the CA signs at start (SANs: the
advertise address, 127.0.0.1, localhost) and again at its renewal point
(loaded into the same context: new handshakes get it). Client certificates
are asked for but optional (``/ca`` and ``/join`` are anonymous). The keys of the joining node are
made on its side and never sent; the CA key goes only to a node the token
makes a manager (any manager can sign), never to etcd. Checking a request
(``parse_request``) is a pure function; making the Node resource is the
caller's (``make_node``: the agent's idea of a node lives above this layer).
The client is ``kubeless.cluster.join_client``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import logging
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeless.api.names import label_key_error, label_value_error
from kubeless.store import ResourceStore, StoreError

from . import access, bootstrap, identities, renewal, tokens
from .errors import (CAError, ClusterError, NoCluster, NodeNameTaken, TokenMalformed,
                     TokenRefused)
from .pki import (CA, DEFAULT_LIFETIME, USAGES, CertInfo, Profile, cert_info,
                  csr_common_name, issue_identity, key_pem)
from .state import DEFAULT_JOIN_PORT, StateDir

log = logging.getLogger(__name__)

DEFAULT_PORT = DEFAULT_JOIN_PORT
MAX_BODY = 64 * 1024
READ_TIMEOUT = 10.0  # seconds a client has to send its whole request
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}
_RUNTIME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz")

Resource = dict[str, Any]


class BadRequest(ValueError):
    """A request the endpoint cannot read (one sentence, returned with 400)."""


@dataclass(frozen=True)
class JoinRequest:
    """What ``POST /join`` carries, checked."""

    token: tokens.JoinToken
    csr: str
    node_name: str
    advertise_addr: str
    runtime: str
    manager_csr: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str = ""


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


# -- the pure half: reading a request ------------------------------------------------

def parse_request(body: bytes) -> JoinRequest:
    """The request in ``body`` (JSON); ``BadRequest`` naming the first field that is wrong."""
    data = _json_object(body)
    try:
        token = tokens.parse_token(_text(data, "token"))
    except TokenMalformed as err:
        raise BadRequest(str(err)) from None
    name = _text(data, "nodeName")
    problem = identities.identity_error("node", name)
    if problem is not None:
        raise BadRequest(f"nodeName: {problem}")
    return JoinRequest(token=token, csr=_pem(data, "csr", required=True), node_name=name,
                       advertise_addr=_address(_text(data, "advertiseAddr")),
                       runtime=_runtime(_text(data, "runtime")),
                       manager_csr=_pem(data, "managerCsr", required=False),
                       labels=_labels(data.get("labels") or {}),
                       hostname=_text(data, "hostname", required=False))


def _text(data: Mapping[str, Any], key: str, required: bool = True) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    if required and not value:
        raise BadRequest(f"{key} is missing")
    return value


def _pem(data: Mapping[str, Any], key: str, required: bool) -> str:
    text = _text(data, key, required)
    if text and "-----BEGIN CERTIFICATE REQUEST-----" not in text:
        raise BadRequest(f"{key} is not a PEM certificate request")
    return text


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise BadRequest(f"advertiseAddr {text!r} is not an IP address") from None


def _runtime(text: str) -> str:
    if len(text) > 32 or not set(text) <= _RUNTIME_CHARS:
        raise BadRequest(f"runtime {text!r} is not a runtime's name")
    return text


def _labels(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadRequest("labels must be an object of strings")
    for key, text in value.items():
        problem = label_key_error(key) or label_value_error(text)
        if problem:
            raise BadRequest(f"label {key!r}: {problem}")
    return dict(value)


def node_profiles(node_id: str, address: str, role: str,
                  lifetime: float = DEFAULT_LIFETIME) -> tuple[Profile, Profile | None]:
    """What the CA signs for a node: its own profile (client, and server on its address),
    and a manager's (client) when ``role`` is manager."""
    node = Profile(identities.node(node_id).common_name, (address,), USAGES, lifetime)
    if role != "manager":
        return node, None
    return node, manager_profile(node_id, lifetime)


def manager_profile(node_id: str, lifetime: float = DEFAULT_LIFETIME) -> Profile:
    """A manager's identity (client usage only): its controllers and join endpoint."""
    return Profile(identities.manager(node_id).common_name, (), frozenset({"client"}), lifetime)


def promote_refusal(peer: CertInfo | None, asked: str) -> Reply | None:
    """Why ``POST /promote`` from ``peer`` asking for ``asked`` is refused (None: it is
    not, as far as the certificates go; the Node's role is checked in etcd)."""
    if peer is None:
        return Reply(401, {"error": "no client certificate: present the node's own (tls/)"})
    holder = _node_identity(peer)
    if holder is None:
        return Reply(403, {"error": f"{peer.common_name} is not a node identity: only a "
                                    "promoted node asks for its manager identity here"})
    want = identities.manager(holder.name).common_name
    if asked != want:
        return Reply(403, {"error": f"the certificate of {peer.common_name} can only ask for "
                                    f"{want}, not {asked or 'a request without a name'}"})
    return None


def _node_identity(peer: CertInfo) -> identities.Identity | None:
    """The node a verified client certificate names (None: not a ``node:`` identity)."""
    try:
        holder = identities.parse_identity(peer.common_name)
    except identities.IdentityError:
        return None
    return holder if holder.kind == "node" else None


def issue_own_identities(state: StateDir, node_id: str, address: str, role: str,
                         lifetime: float = DEFAULT_LIFETIME) -> None:
    """A node on a host that holds the CA (``init``) issues its identities itself:
    ``tls/`` and, for a manager, ``manager-tls/``."""
    ca = CA.load(state.path)
    node, manager = node_profiles(node_id, address, role, lifetime)
    try:
        issue_identity(ca, state.tls_dir, node)
        if manager is not None:
            issue_identity(ca, state.manager_tls_dir, manager)
    except OSError as err:
        raise CAError(f"cannot write this node's identity in {state}: {err.strerror}") from None


def renew_refusal(peer: CertInfo | None, asked: str) -> Reply | None:
    """Why ``POST /renew`` from the verified client certificate ``peer`` (None: the
    client presented none) for a request naming ``asked`` is refused; None: allowed."""
    if peer is None:
        return Reply(401, {"error": "renewing needs this node's current certificate: "
                                    "present it as the client certificate"})
    if _node_identity(peer) is None:
        return Reply(403, {"error": f"{peer.common_name or 'a certificate without a name'} "
                                    "is not a node identity: only nodes renew here "
                                    "(managers sign their own)"})
    if asked != peer.common_name:
        return Reply(403, {"error": f"the certificate of {peer.common_name} cannot renew "
                                    f"{asked or 'a request without a name'}"})
    return None


def refusal(err: Exception) -> Reply:
    """The reply to a refused join (nothing was written)."""
    status = {TokenRefused: 403, TokenMalformed: 400, NodeNameTaken: 409, NoCluster: 503,
              BadRequest: 400, CAError: 400}.get(type(err), 503)
    return Reply(status, {"error": str(err)})


# -- the server -----------------------------------------------------------------------

@dataclass
class JoinServer:
    """Serves ``/ca`` and ``/join`` for the cluster in ``rstore`` with ``ca``."""

    rstore: ResourceStore
    ca: CA
    make_node: Callable[[JoinRequest, str], Resource]  # (request, role) -> Node resource
    endpoints: str  # the etcd endpoints and prefix a joined node is told
    prefix: str
    hosts: tuple[str, ...]  # addresses to listen on (and the server certificate's SANs)
    port: int = DEFAULT_PORT
    lifetime: float = DEFAULT_LIFETIME  # its own certificate's when etcd cannot say
    _server: asyncio.Server | None = None
    _context: ssl.SSLContext | None = None
    _cert: str = ""  # the server certificate presented now (PEM)
    _renewing: asyncio.Task[None] | None = None
    renewals: int = 0  # of the server certificate

    async def start(self) -> int:
        """Listen with a fresh server certificate, kept renewed; the bound port."""
        hosts = tuple(dict.fromkeys(self.hosts))
        context = self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_OPTIONAL  # /renew's client; /ca and /join are anonymous
        context.load_verify_locations(cadata=self.ca.cert_pem)
        self._load_server_cert(await self._lifetime())
        self._server = await asyncio.start_server(self._serve, list(hosts), self.port,
                                                  ssl=context)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._renewing = asyncio.create_task(self._keep_server_cert(), name="join-server-cert")
        log.info("serving the join endpoint on %s port %d", ", ".join(hosts), self.port)
        return self.port

    async def close(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    @property
    def server_cert(self) -> str:
        return self._cert

    async def _lifetime(self) -> float:
        """The cluster's certificate lifetime (the default when etcd cannot say)."""
        try:
            return await renewal.cluster_cert_expiry(self.rstore)
        except (StoreError, ClusterError) as err:
            log.warning("join endpoint: reading the cluster's certificate lifetime: %s", err)
            return self.lifetime

    def _load_server_cert(self, lifetime: float) -> None:
        """A new server certificate into the context (new handshakes present it)."""
        assert self._context is not None
        hosts = tuple(dict.fromkeys(self.hosts))
        key, cert = self.ca.issue(Profile("kubeless-join", (*hosts, "localhost"),
                                          frozenset({"server"}), lifetime))
        with tempfile.TemporaryDirectory(prefix="kubeless-join-") as tmp:
            (Path(tmp) / "key.pem").write_text(key)
            (Path(tmp) / "cert.pem").write_text(cert + self.ca.cert_pem)
            self._context.load_cert_chain(Path(tmp) / "cert.pem", Path(tmp) / "key.pem")
        self._cert = cert

    async def _keep_server_cert(self) -> None:
        """Sign a new server certificate at each renewal point (the CA is here)."""
        while True:
            info = cert_info(self._cert)
            now = datetime.datetime.now(datetime.timezone.utc)
            await asyncio.sleep(renewal.seconds_to_wait(now, info.not_before, info.not_after,
                                                        renewal.draw_fraction(), 0))
            self._load_server_cert(await self._lifetime())
            self.renewals += 1
            log.info("join endpoint: renewed its server certificate")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, ctype, body = await asyncio.wait_for(
                self._handle(reader, _peer_cert(writer)), READ_TIMEOUT)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError, ssl.SSLError):
            status, ctype, body = 400, "text/plain", b"incomplete request\n"
        except Exception:
            log.exception("serving the join endpoint")
            status, ctype, body = 500, "text/plain", b"internal error\n"
        with contextlib.suppress(Exception):
            writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                         f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader,
                      peer: str | None) -> tuple[int, str, bytes]:
        method, path, body = await _read_request(reader)
        if path == "/ca" and method == "GET":
            return 200, "application/x-pem-file", self.ca.cert_pem.encode()
        if path == "/join" and method == "POST":
            if body is None:
                return 413, "text/plain", b"request too large\n"
            reply = await self.join(body)
            return reply.status, "application/json", json.dumps(reply.body).encode()
        if path == "/renew" and method == "POST":
            if body is None:
                return 413, "text/plain", b"request too large\n"
            reply = await self.renew(peer, body)
            return reply.status, "application/json", json.dumps(reply.body).encode()
        if path == "/promote" and method == "POST":
            if body is None:
                return 413, "text/plain", b"request too large\n"
            reply = await self.promote(peer, body)
            return reply.status, "application/json", json.dumps(reply.body).encode()
        if path in ("/ca", "/join", "/renew", "/promote"):
            return 405, "text/plain", b"GET /ca, POST /join, /renew or /promote\n"
        return 404, "text/plain", b"not found: GET /ca, POST /join, /renew or /promote\n"

    async def renew(self, peer: str | None, body: bytes) -> Reply:
        """Answer one ``POST /renew`` body from the verified client certificate ``peer``
        (PEM; None when the client presented none)."""
        try:
            csr = _pem(_json_object(body), "csr", required=True)
            refused = renew_refusal(cert_info(peer) if peer else None, csr_common_name(csr))
            if refused is not None:
                return refused
            assert peer is not None
            node_id = identities.parse_identity(cert_info(peer).common_name).name
            if await self.rstore.get("Node", node_id) is None:
                return Reply(403, {"error": f"node {node_id} is not in the cluster"})
            lifetime = await renewal.cluster_cert_expiry(self.rstore)
            cert = self.ca.sign(csr, renewal.renewal_profile(peer, lifetime))
        except (BadRequest, ClusterError) as err:
            return refusal(err)
        except StoreError as err:
            return Reply(503, {"error": f"the manager cannot reach etcd: {err}"})
        log.info("renewed the certificate of node %s", node_id)
        return Reply(200, {"certificate": cert})

    async def promote(self, peer: str | None, body: bytes) -> Reply:
        """Answer one ``POST /promote`` body: a node whose Node is now a manager (``node
        promote``) trades its node certificate for its manager identity and the CA key."""
        try:
            csr = _pem(_json_object(body), "managerCsr", required=True)
            info = cert_info(peer) if peer else None
            refused = promote_refusal(info, csr_common_name(csr))
            if refused is not None:
                return refused
            assert info is not None
            node_id = identities.parse_identity(info.common_name).name
            stored = await self.rstore.get("Node", node_id)
            if stored is None:
                return Reply(403, {"error": f"node {node_id} is not in the cluster"})
            if (stored.get("spec") or {}).get("role") != "manager":
                return Reply(403, {"error": f"node {node_id} is not a manager (`kubeless node "
                                            f"promote {node_id}` makes it one)"})
            if access.keeps_users(self.rstore.etcd):
                await access.admit_node(self.rstore.etcd, self.rstore.keys, node_id, "manager")
            lifetime = await renewal.cluster_cert_expiry(self.rstore)
            cert = self.ca.sign(csr, manager_profile(node_id, lifetime))
        except (BadRequest, ClusterError) as err:
            return refusal(err)
        except StoreError as err:
            return Reply(503, {"error": f"the manager cannot reach etcd: {err}"})
        log.info("node %s promoted: its manager identity signed", node_id)
        return Reply(200, {"managerCertificate": cert, "caKey": key_pem(self.ca.key),
                           "ca": self.ca.cert_pem})

    async def join(self, body: bytes) -> Reply:
        """Answer one ``POST /join`` body."""
        try:
            request = parse_request(body)
            return await self._join(request)
        except (BadRequest, ClusterError) as err:
            return refusal(err)
        except StoreError as err:
            return Reply(503, {"error": f"the manager cannot reach etcd: {err}"})

    async def _join(self, request: JoinRequest) -> Reply:
        found = await bootstrap.read_record(self.rstore)
        if found is None:
            raise NoCluster("the manager's etcd holds no cluster")
        role = found.record.role_of(request.token)  # TokenRefused before anything is signed
        if role == "manager" and not request.manager_csr:
            raise BadRequest("managerCsr is missing (a manager token needs a manager identity)")
        node_profile, manager_profile = node_profiles(request.node_name, request.advertise_addr,
                                                      role, found.record.cert_expiry)
        cert = self.ca.sign(request.csr, node_profile)
        manager_cert = self.ca.sign(request.manager_csr, manager_profile) \
            if manager_profile is not None else ""

        await self._admit(request.node_name, role)

        def node(granted: str) -> Resource:
            if granted != role:  # rotated meanwhile: what was signed is for another role
                raise TokenRefused("the join token changed while joining; try again")
            return self.make_node(request, role)

        record, _ = await bootstrap.join_cluster(self.rstore, str(request.token), node,
                                                 "the manager's etcd")
        log.info("node %s joined as a %s through the join endpoint", request.node_name, role)
        body: dict[str, Any] = {"nodeId": request.node_name, "role": role,
                                "clusterId": record.id, "certificate": cert,
                                "ca": self.ca.cert_pem, "endpoints": self.endpoints,
                                "prefix": self.prefix}
        if role == "manager":
            body.update(managerCertificate=manager_cert, caKey=key_pem(self.ca.key))
        return Reply(200, body)


    async def _admit(self, node_id: str, role: str) -> None:
        """The joining node's etcd users (``node:<id>``, and ``manager:<id>`` for a
        manager) before its certificate is returned, on a TLS etcd (where auth is on
        or will be). Not when the name is taken: the users are that node's."""
        if not access.keeps_users(self.rstore.etcd):
            return
        if await self.rstore.get("Node", node_id) is not None:
            return  # join_cluster refuses it (NodeNameTaken): leave its users alone
        await access.admit_node(self.rstore.etcd, self.rstore.keys, node_id, role)


def _peer_cert(writer: asyncio.StreamWriter) -> str | None:
    """The client's verified certificate (PEM), or None when it presented none."""
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return ssl.DER_cert_to_PEM_cert(der) if der else None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"the request is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise BadRequest("the request is not a JSON object")
    return data


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes | None]:
    """(method, path, body); body None when it is larger than ``MAX_BODY``."""
    line = (await reader.readline()).decode("latin-1").split()
    method, path = (line[0], line[1].split("?")[0]) if len(line) >= 2 else ("", "")
    length = 0
    while True:
        header = (await reader.readline()).decode("latin-1").strip()
        if not header:
            break
        name, _, value = header.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip()) if value.strip().isdigit() else 0
    if length > MAX_BODY:
        return method, path, None
    body = await reader.readexactly(length) if length else b""
    return method, path, body
