"""Certificates renewed before they expire, while everything keeps running.

    parse_cert_expiry   ``--cert-expiry``'s words: a Go duration (``2160h``) or days
                        (``90d``), at least ``MIN_CERT_EXPIRY`` (pure)
    renewal_point       when a certificate is renewed: at ``fraction`` of its validity,
                        a fraction drawn per certificate in ``RENEW_WINDOW`` (Swarm's
                        random 50-80%, so a cluster's nodes do not renew at once) (pure)
    seconds_to_wait     how long the loop sleeps: to the renewal point, or after a failed
                        attempt a backoff bounded by a tenth of what is left (pure)
    renewal_profile     what the CA signs for a renewal: the current certificate's
                        name, hosts and usages, the cluster's lifetime (the CA decides
                        from the certificate it verified, never from the request)
    join_endpoints      the managers' join endpoints from the heartbeats alone
                        (``joinPort``, which a manager's node process advertises while
                        it serves one, and ``address``): a node may read every
                        heartbeat, never ``spec/nodes/`` (pure)
    renew_identity      one renewal of an identity directory (``ca.pem``, ``cert.pem``,
                        ``key.pem``): a new key made here, a request for the same common
                        name, the signed certificate checked, then ``key.pem`` and
                        ``cert.pem`` replaced as a pair (``pki.write_pair``: a crash never
                        leaves a mismatched one), the certificate last
                        (``Etcd.follow_tls_files`` keys on it)
    LocalSigner         a manager signs with the CA key it holds
    RemoteSigner        any other node asks a manager's join endpoint (``POST /renew``,
                        mutual TLS with its current certificate: ``join_client.post_renew``)
    Renewal             the loop: sleep to the renewal point, renew, tell the users of
                        the files (``on_renewed``), again; failures are logged and retried
                        until the certificate expires (and after: a manager may come back)

Who renews what: the agent its node identity ``tls/`` (``kubeless_agent.main``), a
manager's node process its ``manager-tls/`` and the join endpoint its own server
certificate (``join_server``). The etcd channel and the logs server take a new
certificate for new connections without a restart; no container is touched.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kubeless.api.units import parse_duration
from kubeless.store import ResourceStore, StoreError

from . import bootstrap
from .errors import CAError, ClusterError, JoinFailed
from .record import DEFAULT_CERT_EXPIRY

log = logging.getLogger(__name__)

MIN_CERT_EXPIRY = 10.0  # seconds: short enough for tests, long enough to renew within
RENEW_WINDOW = (0.5, 0.8)  # Swarm renews at a random point in 50-80% of the validity
MAX_RETRY = 30.0  # seconds between failed attempts, at most


# -- the pure decisions -----------------------------------------------------------------

def parse_cert_expiry(text: str) -> float:
    """Seconds in ``--cert-expiry``: a Go duration (``2160h``, ``10s``) or whole days
    (``90d``); ``ValueError`` in one sentence for anything else or below the minimum."""
    words = text.strip()
    try:
        seconds = float(words[:-1]) * 86400 if words.endswith("d") else parse_duration(words)
    except ValueError:
        raise ValueError(f"--cert-expiry {text!r}: expected a duration such as 2160h, 90d "
                         "or 30s") from None
    if not seconds >= MIN_CERT_EXPIRY:
        raise ValueError(f"--cert-expiry {text!r}: certificates must live at least "
                         f"{MIN_CERT_EXPIRY:g}s (they are renewed at 50-80% of their life)")
    return seconds


def draw_fraction(rng: random.Random | None = None) -> float:
    """A renewal point within ``RENEW_WINDOW``, drawn once per certificate."""
    return (rng or random).uniform(*RENEW_WINDOW)  # noqa: S311 - spreading, not secrecy


def renewal_point(not_before: datetime.datetime, not_after: datetime.datetime,
                  fraction: float) -> datetime.datetime:
    """When a certificate valid from ``not_before`` to ``not_after`` is renewed."""
    return not_before + (not_after - not_before) * fraction


def seconds_to_wait(now: datetime.datetime, not_before: datetime.datetime,
                    not_after: datetime.datetime, fraction: float, failures: int) -> float:
    """Seconds until the next attempt: to the renewal point while none failed; after
    ``failures`` failed attempts, 1, 2, 4 ... seconds, at most ``MAX_RETRY`` and a
    tenth of the validity left (never under 0.2 s: an expired one is retried too)."""
    if failures <= 0:
        return max((renewal_point(not_before, not_after, fraction) - now).total_seconds(), 0.0)
    left = (not_after - now).total_seconds()
    return max(0.2, min(2.0 ** (failures - 1), MAX_RETRY, left / 10))


def join_endpoints(heartbeats: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(host, port) of every manager serving a join endpoint, in node name order: a live
    heartbeat (not stopped) that says ``joinPort`` and ``address``. Only a manager's node
    process serves a join endpoint (it holds the CA key) and says its port."""
    found: list[tuple[str, int]] = []
    for name in sorted(heartbeats):
        beat = heartbeats[name]
        if not isinstance(beat, Mapping):
            continue
        port, address = beat.get("joinPort"), beat.get("address")
        if isinstance(port, int) and 0 < port < 65536 and isinstance(address, str) \
                and address and not beat.get("stoppedAt"):
            found.append((address, port))
    return found


def renewal_profile(cert_pem: str, lifetime: float) -> Any:
    """The ``pki.Profile`` of a renewal of ``cert_pem``: same name, hosts and usages."""
    from .pki import Profile, cert_info, cert_usages

    info = cert_info(cert_pem)
    return Profile(info.common_name, info.hosts, cert_usages(cert_pem), lifetime)


# -- signing ----------------------------------------------------------------------------

class Signer(Protocol):
    """Signs a request for a renewal of the identity whose certificate is ``current``."""

    async def sign(self, csr_pem: str, current: str) -> str: ...


async def cluster_cert_expiry(rstore: ResourceStore) -> float:
    """The certificate lifetime the cluster record says (its default when none)."""
    found = await bootstrap.read_record(rstore)
    return found.record.cert_expiry if found is not None else DEFAULT_CERT_EXPIRY


@dataclass
class LocalSigner:
    """A manager's own signer: the CA key it holds, the cluster's lifetime from etcd."""

    ca: Any  # pki.CA
    rstore: ResourceStore

    async def sign(self, csr_pem: str, current: str) -> str:
        lifetime = await cluster_cert_expiry(self.rstore)
        signed: str = self.ca.sign(csr_pem, renewal_profile(current, lifetime))
        return signed


@dataclass
class RemoteSigner:
    """Asks the managers' join endpoints in turn, with the identity in ``directory``."""

    directory: Path
    endpoints: Callable[[], Awaitable[Sequence[tuple[str, int]]]]

    async def sign(self, csr_pem: str, current: str) -> str:
        from .join_client import post_renew

        found = list(await self.endpoints())
        if not found:
            raise JoinFailed("no manager advertises a join endpoint to renew through")
        errors: list[str] = []
        for host, port in found:
            try:
                return await asyncio.to_thread(post_renew, host, port, self.directory, csr_pem)
            except JoinFailed as err:
                errors.append(str(err))
        raise JoinFailed("; ".join(errors))


async def find_join_endpoints(rstore: ResourceStore) -> list[tuple[str, int]]:
    """The join endpoints the managers advertise now (their heartbeats)."""
    from kubeless.store.nodes import heartbeats

    return join_endpoints(await heartbeats(rstore))


# -- one renewal of a directory ---------------------------------------------------------

async def renew_identity(directory: Path, signer: Signer) -> Any:
    """Renew the identity in ``directory`` through ``signer``; the new ``CertInfo``.
    ``CAError``/``JoinFailed`` (nothing written) when it cannot be."""
    from .pki import (cert_info, finish_pending_pair, key_pem, load_cert, make_csr, new_key,
                      same_public_key, write_pair)

    try:
        finish_pending_pair(directory)
        current = (directory / "cert.pem").read_text()
        ca_pem = (directory / "ca.pem").read_text()
    except OSError as err:
        raise CAError(f"cannot read the identity in {directory}: {err.strerror}") from None
    name = cert_info(current).common_name
    key = new_key()
    cert = await signer.sign(make_csr(key, name), current)
    new_key_pem = key_pem(key)
    try:
        load_cert(cert).verify_directly_issued_by(load_cert(ca_pem))
    except (ValueError, TypeError) as err:
        raise CAError(f"the renewed certificate is not signed by the cluster CA: {err}") \
            from None
    info = cert_info(cert)
    if info.common_name != name or not same_public_key(cert, new_key_pem):
        raise CAError(f"the renewed certificate is for {info.common_name}, not {name} and "
                      "this key")
    try:
        write_pair(directory, cert, new_key_pem)
    except OSError as err:
        raise CAError(f"cannot write the renewed identity in {directory}: {err.strerror}") \
            from None
    return info


# -- the loop ---------------------------------------------------------------------------

OnRenewed = Callable[[], Awaitable[None]]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass
class Renewal:
    """Keeps the identity in ``directory`` renewed; ``on_renewed`` after each renewal."""

    directory: Path
    signer: Signer
    on_renewed: OnRenewed | None = None
    what: str = "identity"
    draw: Callable[[], float] = draw_fraction
    renewals: int = 0
    failures: int = 0
    last_error: str = ""
    renewed: asyncio.Event = field(default_factory=asyncio.Event)  # set at each renewal

    async def run(self) -> None:
        """Renew forever; returns only when cancelled."""
        from .pki import cert_info

        fraction = self.draw()
        while True:
            try:
                info = cert_info((self.directory / "cert.pem").read_bytes())
            except (OSError, CAError) as err:
                log.warning("renewing the %s in %s: %s", self.what, self.directory, err)
                await asyncio.sleep(MAX_RETRY)
                continue
            await asyncio.sleep(seconds_to_wait(_now(), info.not_before, info.not_after,
                                                fraction, self.failures))
            if await self.renew_once():
                fraction = self.draw()

    async def renew_once(self) -> bool:
        """One attempt; whether it renewed (a failure is logged and counted)."""
        try:
            info = await renew_identity(self.directory, self.signer)
            if self.on_renewed is not None:
                await self.on_renewed()
        except (CAError, JoinFailed, ClusterError, StoreError) as err:
            self.failures += 1
            self.last_error = str(err)
            log.warning("renewing the %s in %s failed (attempt %d): %s", self.what,
                        self.directory, self.failures, err)
            return False
        self.failures = 0
        self.renewals += 1
        self.renewed.set()
        log.info("renewed the %s %s in %s: valid until %s", self.what, info.common_name,
                 self.directory, info.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return True
