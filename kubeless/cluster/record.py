"""The cluster record: what ``<prefix>/v1/cluster`` holds, and checking a token against it.

    apiVersion: kubeless.io/v1
    kind: Cluster
    id: 3x0t6v9...                 25 base-36 characters, like Swarm's ids
    createdAt: "2025-01-01T00:00:00Z"
    caCertificate: |               the root CA certificate (PEM); its key stays
      -----BEGIN CERTIFICATE-----  in the first manager's state dir
    caDigest: 0a1b...              what tokens carry (informative: derived from the PEM)
    certExpiry: 2160h0m0s          the lifetime of the node and manager certificates the
                                   managers sign (``init``/``up --cert-expiry``; Swarm's 90 days)
    joinTokens:
      worker:  {sha256: <hex of the secret's sha256>, createdAt: ...}
      manager: {sha256: ..., createdAt: ...}
    secretsKey: 3q2+7w...          the public half of the cluster's secrets key (derived from
                                   the CA key: ``kubeless.cluster.secrets_key``), what
                                   ``secret create`` seals values to; absent in a cluster made
                                   before secrets until a manager holding the CA key adds it

Only hashes of the secrets are stored. Pure data and checks: the etcd side
is in ``bootstrap``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from kubeless.api.units import format_duration, parse_duration

from . import tokens
from .ca import cert_der
from .errors import ClusterError, TokenRefused

KIND = "Cluster"
DEFAULT_CERT_EXPIRY = 90 * 86400.0  # Swarm's node certificates: 90 days
API_VERSION = "kubeless.io/v1"


def new_cluster_id() -> str:
    return tokens.base36(secrets.randbits(128), 25)


@dataclass(frozen=True)
class ClusterRecord:
    id: str
    created_at: str
    ca_cert: str
    token_hashes: dict[str, str] = field(default_factory=dict)  # role -> sha256 hex
    token_times: dict[str, str] = field(default_factory=dict)  # role -> when made
    cert_expiry: float = DEFAULT_CERT_EXPIRY  # seconds: what the managers sign for
    secrets_key: str = ""  # the cluster's secrets key, public half ("": none yet)

    @property
    def ca_digest(self) -> str:
        return tokens.ca_digest(cert_der(self.ca_cert))

    def with_token(self, role: str, token: tokens.JoinToken, now: str) -> ClusterRecord:
        """This record with ``role``'s token replaced (the old one stops working)."""
        if role not in tokens.ROLES:
            raise ValueError(f"unknown role {role!r} (known: {', '.join(tokens.ROLES)})")
        return replace(self, token_hashes={**self.token_hashes, role: token.secret_hash},
                       token_times={**self.token_times, role: now})

    def role_of(self, token: tokens.JoinToken) -> str:
        """The role ``token`` grants here; TokenRefused when it grants none."""
        if token.digest != self.ca_digest:
            raise TokenRefused(
                f"the join token belongs to another cluster: its CA digest does not match the "
                f"root CA of cluster {self.id}")
        for role in tokens.ROLES:
            stored = self.token_hashes.get(role)
            if stored and token.matches_hash(stored):
                return role
        raise TokenRefused(
            f"the join token is not valid for cluster {self.id}: it is wrong or was rotated "
            "(on a manager, `kubeless join-token worker|manager` prints the current one)")

    def to_value(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": KIND, "id": self.id,
                "createdAt": self.created_at, "caCertificate": self.ca_cert,
                "caDigest": self.ca_digest, "certExpiry": format_duration(self.cert_expiry),
                "joinTokens": {role: {"sha256": self.token_hashes[role],
                                      "createdAt": self.token_times.get(role, self.created_at)}
                               for role in tokens.ROLES if role in self.token_hashes},
                **({"secretsKey": self.secrets_key} if self.secrets_key else {})}

    @classmethod
    def from_value(cls, key: str, data: Any) -> ClusterRecord:
        """The record from its decoded value; ClusterError naming the key when it is not one."""
        try:
            if not isinstance(data, dict) or data.get("kind") != KIND:
                raise ValueError(f"kind is not {KIND}")
            joins = data.get("joinTokens") or {}
            return cls(id=str(data["id"]), created_at=str(data.get("createdAt", "")),
                       ca_cert=str(data["caCertificate"]),
                       token_hashes={r: str(v["sha256"]) for r, v in joins.items()},
                       token_times={r: str(v.get("createdAt", "")) for r, v in joins.items()},
                       cert_expiry=parse_duration(str(data["certExpiry"]))
                       if data.get("certExpiry") else DEFAULT_CERT_EXPIRY,
                       secrets_key=str(data.get("secretsKey") or ""))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ClusterError(f"{key} does not hold a valid cluster record ({err})") from err
