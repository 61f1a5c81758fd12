"""The Events a job's status change makes (pure)."""

from __future__ import annotations

from controllers.replication.job_runs import job_events


def test_a_run_starts_and_completes() -> None:
    started = {"run": 1, "trigger": "created", "state": "running", "total": 6, "succeeded": 0}
    assert job_events(None, started) == [("Normal", "JobRunStarted", "run 1 started (created)")]
    assert job_events(started, {**started, "succeeded": 3}) == []
    done = {**started, "state": "complete", "succeeded": 6}
    assert job_events(started, done) == [("Normal", "JobRunCompleted", "run 1 completed: 6/6 complete")]
    assert job_events(done, done) == []


def test_a_failed_run_and_a_new_one_by_force() -> None:
    failed = {"run": 2, "state": "failed", "total": 3, "succeeded": 1, "failed": 2}
    assert job_events({"run": 2, "state": "running"}, failed) == [
        ("Warning", "JobRunFailed", "run 2 failed: 1/3 complete, 2 failed")]
    again = {"run": 3, "trigger": "force", "state": "running"}
    assert job_events(failed, again) == [("Normal", "JobRunStarted", "run 3 started (force)")]


def test_skipped_ticks() -> None:
    before = {"run": 4, "state": "running", "skipped": 1}
    assert job_events(before, {**before, "skipped": 3}) == [
        ("Warning", "TickSkipped", "2 schedule tick(s) skipped: run 4 was still going")]
