"""etcd access for every kubeless role.

    channel    the one place the gRPC channel is built (endpoints, insecure or TLS)
    tls        TLS to etcd: the files (TlsConfig), the name verified, failures worded
    etcd       a small etcd v3 client: ranges, paged lists, txns, watches, leases
    keys       the keyspace under the cluster prefix
    codec      YAML/JSON values
    resources  typed resource CRUD with optimistic concurrency, multi-key txns
    informer   list + watch into a local cache, resuming and relisting
    lease      a lease kept alive, that says when it was lost
    services   the one Service write path: guarded published ports, retried

gRPC's C core logs every refused handshake in lines of its own on stderr
(``E1202 ... ssl_transport_security_utils.cc] ...``); the failures reach
kubeless as one sentence each (``tls.describe``), so those lines are off for
every process that reaches etcd, unless the user sets ``GRPC_VERBOSITY``
(``GRPC_VERBOSITY=ERROR`` shows them). It must be set before grpc is imported.
"""

import os

os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from kubeless.api.selectors import matches_selector, parse_selector  # list(selector=) takes one

from .channel import DEFAULT_ENDPOINT, BadEndpoint, Endpoint, parse_endpoints
from .errors import (AlreadyExists, Compacted, Conflict, CorruptValue, Forbidden, KeptChanging,
                     LeaseLost, NotFound, StoreError, TlsError, TooLarge, Unavailable)
from .etcd import Compare, Delete, Etcd, KeyValue, Put, TxnResult, WatchBatch, WatchEvent
from .informer import Informer
from .keys import DEFAULT_PREFIX, Keyspace, ResourceKey
from .lease import KeptLease
from .resources import API_VERSION, ListResult, Resource, ResourceStore, ResourceTxn, now_rfc3339
from .tls import TlsConfig, add_tls_arguments
from .tls import check as check_tls


def connect(endpoints: str | list[str] | tuple[str, ...] = DEFAULT_ENDPOINT,
            prefix: str = DEFAULT_PREFIX, *, call_timeout: float = 2.0,
            retry_for: float = 5.0, tls: TlsConfig | None = None) -> ResourceStore:
    """A resource store on a new channel (call ``await store.etcd.close()`` when done);
    ``tls`` for https:// endpoints (``TlsError`` when its files cannot serve them)."""
    etcd = Etcd(parse_endpoints(endpoints), call_timeout=call_timeout, retry_for=retry_for,
                tls=tls)
    return ResourceStore(etcd, Keyspace(prefix))


__all__ = [
    "API_VERSION", "AlreadyExists", "BadEndpoint", "Compacted", "Compare", "Conflict",
    "CorruptValue", "DEFAULT_ENDPOINT", "DEFAULT_PREFIX", "Delete", "Endpoint", "Etcd", "Forbidden",
    "Informer", "KeptChanging", "KeptLease", "KeyValue", "Keyspace", "LeaseLost", "ListResult",
    "NotFound",
    "Put", "Resource", "ResourceKey", "ResourceStore", "ResourceTxn", "StoreError", "TlsConfig",
    "TlsError", "TooLarge", "TxnResult", "add_tls_arguments", "check_tls",
    "Unavailable", "WatchBatch", "WatchEvent", "connect", "matches_selector", "now_rfc3339",
    "parse_endpoints", "parse_selector",
]
