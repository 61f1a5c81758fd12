"""Errors of the store layer.

    StoreError
    ├── Unavailable        etcd did not answer (retryable: the peer broke it)
    ├── Conflict           a compare failed: what we read is stale (retry after re-reading)
    │   ├── AlreadyExists  a create found the key taken
    │   └── KeptChanging   a guarded write planned again and again, and others kept
    │                      writing first (terminal for that command: try again later)
    ├── NotFound           the key is not there
    ├── Compacted          a watch or read asked for a compacted revision (list again)
    ├── CorruptValue       a value in etcd is not valid YAML/JSON (readers skip it)
    ├── TooLarge           etcd refused a request as too large (terminal for that request)
    ├── Forbidden          etcd's auth refused our identity: no permission for that key,
    │                      or no etcd user by our certificate's name (removed, revoked);
    │                      terminal for that request until a manager grants it
    ├── TlsError           no TLS connection: our files cannot be used, or a handshake
    │                      failed (unknown CA, expired, wrong host, client certificate
    │                      refused or missing); terminal until a certificate or flag changes
    └── LeaseLost          our lease expired or was revoked (we closed nothing: etcd did)

etcd and gRPC exceptions are translated here, at the boundary, and chained
with ``from`` so the cause stays visible in logs.
"""

from __future__ import annotations


class StoreError(Exception):
    """Any failure talking to, or reading from, etcd."""


class Unavailable(StoreError):
    """No endpoint answered in time; safe to retry later."""

    def __init__(self, message: str, endpoints: tuple[str, ...] = ()) -> None:
        self.endpoints = endpoints
        if endpoints:
            message = f"{message} (tried {', '.join(endpoints)})"
        super().__init__(message)


class Conflict(StoreError):
    """A transaction's compare failed: someone else wrote first."""


class AlreadyExists(Conflict):
    """A create found its key already present."""


class KeptChanging(Conflict):
    """A guarded Service write (``kubeless.store.services``) lost every attempt: other
    writers kept changing the services it read. Nothing was written."""


class NotFound(StoreError):
    """The resource or key does not exist."""


class Compacted(StoreError):
    """The requested revision was compacted away; list again."""

    def __init__(self, compact_revision: int) -> None:
        self.compact_revision = compact_revision
        super().__init__(f"revision compacted (oldest available is {compact_revision})")


class CorruptValue(StoreError):
    """A stored value does not decode or is not a valid resource.

    Readers that found it under a key set ``mod_revision`` and ``value`` (what
    was stored), so the value can be shown and deleted, compare-guarded.
    """

    def __init__(self, key: str, reason: str, *, mod_revision: int = 0,
                 value: bytes = b"") -> None:
        self.key = key
        self.reason = reason
        self.mod_revision = mod_revision
        self.value = value
        super().__init__(f"{key}: {reason}")


class TooLarge(StoreError):
    """etcd refused a request as larger than it accepts (its --max-request-bytes, or
    --max-txn-ops): retrying the same request can never succeed; a smaller one may."""

    def __init__(self, message: str, size: int = 0) -> None:
        self.size = size  # the request's encoded size in bytes, when known
        super().__init__(message)


class Forbidden(StoreError):
    """etcd's authentication or role-based access control refused the request: the
    identity has no permission for it, or etcd has no user by its certificate's common
    name (``node rm`` deleted it). One line; retrying the same request fails the same way."""


class TlsError(StoreError):
    """TLS to etcd cannot work as configured; the message names the file or host to fix
    (``kubeless.store.tls`` words it). Not retried: the same handshake fails again."""


class LeaseLost(StoreError):
    """The lease expired or was revoked; everything bound to it is gone."""
