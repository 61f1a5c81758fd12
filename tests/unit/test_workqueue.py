"""WorkQueue semantics with a FakeClock: nothing here sleeps for real."""

from __future__ import annotations

import asyncio

import pytest

from controllers.framework import FakeClock, QueueShutDown, WorkQueue


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def queue(clock: FakeClock | None = None) -> WorkQueue[str]:
    return WorkQueue(clock or FakeClock())


async def test_duplicates_are_dropped() -> None:
    q = queue()
    for key in ["a", "b", "a", "a", "b", "c"]:
        q.add(key)
    assert q.len() == 3 and q.depth == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    assert q.len() == 0


async def test_a_key_is_never_handed_to_two_workers() -> None:
    q = queue()
    q.add("a")
    assert await q.get() == "a"
    q.add("a")  # changed while being processed
    assert q.len() == 0  # held back, not handed out
    second = asyncio.create_task(q.get())
    await settle()
    assert not second.done()
    q.done("a")  # ... and queued again once the first worker is done
    assert await asyncio.wait_for(second, 1) == "a"
    q.done("a")
    assert q.len() == 0


async def test_done_without_a_new_add_does_not_requeue() -> None:
    q = queue()
    q.add("a")
    await q.get()
    q.done("a")
    assert q.len() == 0


async def test_other_keys_flow_while_one_is_processing() -> None:
    q = queue()
    q.add("a")
    q.add("b")
    assert await q.get() == "a"
    q.add("a")
    assert await q.get() == "b"


async def test_waiting_getter_wakes_on_add() -> None:
    q = queue()
    getter = asyncio.create_task(q.get())
    await settle()
    assert not getter.done()
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_add_after_orders_by_deadline_and_waits_for_the_clock() -> None:
    clock = FakeClock()
    q = queue(clock)
    q.add_after("late", 3)
    q.add_after("early", 1)
    q.add_after("mid", 2)
    assert q.len() == 0 and q.waiting == 3
    got: list[str] = []

    async def drain() -> None:
        while True:
            key = await q.get()
            got.append(key)
            q.done(key)

    worker = asyncio.create_task(drain())
    await settle()
    assert got == []
    await clock.step(1)
    assert got == ["early"]
    await clock.step(1)
    assert got == ["early", "mid"]
    await clock.step(5)
    assert got == ["early", "mid", "late"]
    worker.cancel()


async def test_add_after_keeps_the_earliest_delay_and_dedupes() -> None:
    clock = FakeClock()
    q = queue(clock)
    q.add_after("a", 5)
    q.add_after("a", 1)
    q.add_after("a", 10)
    assert q.waiting == 1
    clock.advance(1)
    assert q.len() == 1
    clock.advance(20)
    assert q.len() == 1  # the superseded delays do not add it again
    assert await q.get() == "a"


async def test_earlier_delay_wakes_a_getter_sleeping_on_a_later_one() -> None:
    clock = FakeClock()
    q = queue(clock)
    q.add_after("slow", 10)
    getter = asyncio.create_task(q.get())
    await settle()
    q.add_after("fast", 1)
    await settle()
    await clock.step(1)
    assert await asyncio.wait_for(getter, 1) == "fast"


async def test_add_after_zero_is_add() -> None:
    q = queue()
    q.add_after("now", 0)
    assert q.len() == 1


async def test_rate_limited_backoff_doubles_to_the_cap_and_forget_resets() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock, backoff_base=0.05, backoff_max=30)
    delays = [q.backoff.when("probe") for _ in range(12)]
    assert delays[:4] == pytest.approx([0.05, 0.1, 0.2, 0.4])
    assert all(b == pytest.approx(min(2 * a, 30)) for a, b in zip(delays, delays[1:]))
    assert delays[-1] == 30
    assert q.backoff.when("other") == pytest.approx(0.05)  # per key

    q.add_rate_limited("k")
    q.add_rate_limited("k")  # deduped while waiting; counts a second failure
    assert q.num_requeues("k") == 2
    clock.advance(0.049)
    assert q.len() == 0
    clock.advance(0.001)
    assert q.len() == 1  # the earliest delay (0.05) wins
    q.forget("k")
    assert q.num_requeues("k") == 0
    assert q.backoff.when("k") == pytest.approx(0.05)


async def test_rate_limited_key_comes_back_after_its_backoff() -> None:
    clock = FakeClock()
    q = queue(clock)
    q.add("k")
    key = await q.get()
    q.add_rate_limited(key)  # the reconcile failed
    q.done(key)
    q.add_rate_limited("k")
    assert q.len() == 0
    clock.advance(0.05)
    assert await q.get() == "k"


async def test_shutdown_wakes_every_getter_and_refuses_work() -> None:
    clock = FakeClock()
    q = queue(clock)
    q.add_after("later", 5)
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await settle()
    q.shutdown()
    for g in getters:
        with pytest.raises(QueueShutDown):
            await asyncio.wait_for(g, 1)
    q.add("x")
    assert q.len() == 0
    with pytest.raises(QueueShutDown):
        await q.get()
    assert q.shutting_down


async def test_cancelled_getter_leaves_no_trace() -> None:
    clock = FakeClock()
    q = queue(clock)
    q.add_after("x", 1)
    getter = asyncio.create_task(q.get())
    await settle()
    assert clock.sleepers == 1
    getter.cancel()
    await settle()
    assert clock.sleepers == 0
    clock.advance(1)
    assert await q.get() == "x"


async def test_many_workers_never_overlap_on_a_key() -> None:
    q = queue()
    active: set[str] = set()
    overlaps = 0
    handled = 0

    async def worker() -> None:
        nonlocal overlaps, handled
        while True:
            try:
                key = await q.get()
            except QueueShutDown:
                return
            overlaps += key in active
            active.add(key)
            await asyncio.sleep(0)
            q.add(key if handled % 3 else "a")  # churn: re-add while processing
            active.discard(key)
            handled += 1
            q.done(key)
            if handled > 200:
                q.shutdown()

    for key in "abcde":
        q.add(key)
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(4))), 5)
    assert overlaps == 0 and handled > 200


def test_fake_clock_wall_time_moves_with_it() -> None:
    clock = FakeClock(start=5.0, wall=1_000.0)
    assert (clock.now(), clock.wall()) == (5.0, 1_000.0)
    clock.advance(2.5)
    assert (clock.now(), clock.wall()) == (7.5, 1_002.5)
