"""``--cert-expiry`` (``init``, ``up``): the lifetime of the certificates the managers sign.

Swarm's ``docker swarm init --cert-expiry`` (default 90 days). The value goes
into the new cluster's record (``certExpiry``), which every manager's signer
reads at each signing: the join endpoint, renewals, a manager's own. A Go
duration (``2160h``, ``30s``) or whole days (``90d``), at least 10 seconds
(``kubeless.cluster.renewal.parse_cert_expiry``). Only a new cluster takes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def _parse(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    from kubeless.cluster.renewal import parse_cert_expiry

    if value is None:
        return None
    try:
        return parse_cert_expiry(value)
    except ValueError as err:
        raise click.BadParameter(str(err).removeprefix(f"--cert-expiry {value!r}: ")) \
            from None


def cert_expiry_option() -> Callable[[Any], Any]:
    return click.option("--cert-expiry", metavar="DURATION", callback=_parse,
                        help="A new cluster's certificate lifetime (node and manager "
                             "identities; renewed at 50-80% of it), e.g. 2160h, 90d, 30s; "
                             "at least 10s [default: 90d]")
