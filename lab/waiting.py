"""Waiting for a condition with a deadline, or watching one hold for a window."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def _value(cond: Callable[[], Any]) -> Any:
    result = cond()
    if asyncio.iscoroutine(result):
        result = await result
    return result


async def until(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
                interval: float = 0.05) -> Any:
    """Poll ``cond`` (sync or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = await _value(cond)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout}s")
        await asyncio.sleep(interval)


def wait_until(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
               interval: float = 0.05) -> Any:
    """``until`` for code without an event loop (a test driving subprocesses)."""
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout}s")
        time.sleep(interval)


async def hold(seconds: float, cond: Callable[[], Any], what: str,
               interval: float = 0.1) -> None:
    """Assert ``cond`` stays truthy for ``seconds``: that nothing more happens is
    observed throughout the window, not sampled once after a sleep."""
    end = time.monotonic() + seconds
    while True:
        assert await _value(cond), f"{what}: stopped holding"
        if time.monotonic() >= end:
            return
        await asyncio.sleep(interval)
