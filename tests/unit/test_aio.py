"""kubeless.aio: the guard every long-lived task runs under, and waiting unless stopped."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kubeless.aio import guard, unless_stopped

log = logging.getLogger("test_aio")


async def test_a_crash_is_logged_with_the_tasks_name_then_escalates(
        caplog: pytest.LogCaptureFixture) -> None:
    async def crash() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await guard("agent task heartbeat", crash(), log)
    [record] = caplog.records
    assert record.name == "test_aio" and record.levelno == logging.ERROR
    assert record.getMessage() == "agent task heartbeat crashed"
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


async def test_cancelling_is_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    task = asyncio.create_task(guard("forever", asyncio.Event().wait(), log))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert caplog.records == []


async def test_a_guarded_result_is_returned(caplog: pytest.LogCaptureFixture) -> None:
    async def answer() -> int:
        return 42

    assert await guard("answer", answer(), log) == 42
    assert caplog.records == []


async def test_in_a_task_group_the_crash_cancels_the_others(
        caplog: pytest.LogCaptureFixture) -> None:
    async def crash() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("bug")

    other = asyncio.Event()
    with pytest.raises(ExceptionGroup) as group:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(guard("waiter", other.wait(), log))
            tg.create_task(guard("crasher", crash(), log))
    assert [type(e) for e in group.value.exceptions] == [RuntimeError]
    assert [r.getMessage() for r in caplog.records] == ["crasher crashed"]


async def test_work_that_finishes_first_is_true() -> None:
    async def work() -> str:
        return "done"

    assert await unless_stopped(work(), asyncio.Event()) is True


async def test_work_that_raises_raises() -> None:
    async def work() -> None:
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        await unless_stopped(work(), asyncio.Event())


async def test_a_stop_first_cancels_the_work_and_is_false() -> None:
    cancelled = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    stop = asyncio.Event()
    waiting = asyncio.create_task(unless_stopped(work(), stop))
    await asyncio.sleep(0)
    stop.set()
    assert await asyncio.wait_for(waiting, 5) is False
    assert cancelled.is_set()


async def test_already_stopped_is_false() -> None:
    stop = asyncio.Event()
    stop.set()
    assert await unless_stopped(asyncio.Event().wait(), stop) is False
