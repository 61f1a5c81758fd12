"""asyncio helpers every kubeless process shares (controllers, agent, CLI).

    guard(name, aw, log)      await a long-lived task; log its crash with its name
                              before the TaskGroup escalates it (cancellation is
                              not a crash, and is never logged)
    unless_stopped(coro, stop)
                              await ``coro`` unless ``stop`` is set first (then
                              cancel it): True when it finished

Plain asyncio, nothing of kubeless: every layer may use them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def guard(name: str, aw: Awaitable[T], log: logging.Logger) -> T:
    """Await ``aw``; on a crash log ``"<name> crashed"`` with its traceback to ``log``,
    then let it escalate (a TaskGroup cancels the others and raises it)."""
    try:
        return await aw
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s crashed", name)
        raise


async def unless_stopped(coro: Coroutine[Any, Any, Any], stop: asyncio.Event) -> bool:
    """Await ``coro`` unless ``stop`` is set first (then cancel it); True when it finished.

    ``coro``'s exception, when it finished by raising, is raised here.
    """
    work = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if not work.done():
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        return False
    work.result()
    return True
