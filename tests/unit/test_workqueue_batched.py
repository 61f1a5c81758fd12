"""WorkQueue.add_batched: a burst of adds within the batch period is one hand-out."""

from __future__ import annotations

from controllers.framework import FakeClock, WorkQueue


async def test_a_burst_within_the_period_is_handed_out_once_after_it() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock)
    q.add_batched("svc", 0.1)
    clock.advance(0.05)
    q.add_batched("svc", 0.1)  # later: the earlier delay stands
    assert q.len() == 0
    clock.advance(0.05)
    assert q.len() == 1
    q.add_batched("svc", 0.1)  # already waiting, ready: nothing more
    assert await q.get() == "svc"
    q.done("svc")
    clock.advance(1)
    assert q.len() == 0


async def test_an_add_while_processing_waits_for_done_not_for_a_period() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock)
    q.add("svc")
    assert await q.get() == "svc"
    q.add("svc")              # changed while processed: re-queued at done
    q.add_batched("svc", 5)   # already due at done: no extra delayed hand-out
    q.done("svc")
    assert await q.get() == "svc"
    q.done("svc")
    clock.advance(10)
    assert q.len() == 0
