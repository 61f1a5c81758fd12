"""Writing Services whose published ports must be allocated or checked, race-free.

``kubeless.api.ports`` decides (numbers for ingress ports declared without
one, clashes with ports other services hold); this module gives it the
services stored now and commits what it decided so that no other writer
can slip in between: the services are listed at one revision R, and the
write's transaction also compares, over the whole ``spec/services/``
prefix, that no key there changed after R (``mod_revision < R + 1``). If
any did (another apply, a ``service create``), nothing is written and the
caller plans again from a fresh read, a few times with a short backoff, so
of two concurrent applies of clashing ports exactly one wins and the other
is refused with the holder's name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from kubeless_cli.context import CliError

Resource = dict[str, Any]
ATTEMPTS = 8


def has_ports(doc: Resource) -> bool:
    return doc.get("kind") == "Service" and bool((doc.get("spec") or {}).get("ports"))


async def services_now(rstore: Any) -> tuple[list[Resource], int]:
    """Every stored Service and the revision they were read at."""
    result = await rstore.list("Service")
    return result.items, result.revision


def numbered(docs: Sequence[Resource], live: Sequence[Resource], *,
             code: int = 1) -> list[Resource]:
    """The Service documents with every ingress port numbered; CliError on a clash."""
    from kubeless.api.ports import plan_ports

    filled, problems = plan_ports(docs, live)
    if problems:
        if len(problems) == 1:
            raise CliError(f"{problems[0]}; nothing was written", code=code)
        raise CliError(f"{len(problems)} published port problems; nothing was written\n"
                       + "\n".join(problems), code=code)
    return filled


async def commit_guarded(rstore: Any, txn: Any, revision: int) -> bool:
    """Commit ``txn`` only if no Service changed since ``revision``; False: plan again."""
    from kubeless.store import Compare

    if not txn.ops:
        return True
    guard = Compare(rstore.keys.kind_prefix("Service"), "mod", "<", revision + 1, prefix=True)
    res = await rstore.etcd.txn([*txn.compares, guard], txn.ops)
    return bool(res.succeeded)


async def backoff(attempt: int) -> None:
    await asyncio.sleep(0.02 * 2 ** attempt)


def kept_changing(what: str) -> CliError:
    return CliError(f"services kept changing while {what}; nothing was written, try again")
