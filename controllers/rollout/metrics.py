"""Rollout metrics: rollouts by outcome, tasks replaced, rollout duration, tasks rebalanced."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ROLLOUTS = Counter("kubeless_rollouts_total",
                   "Rollouts by event: started, completed, paused, rolled_back "
                   "(a rollback began, manual or automatic).", ["event"])
TASKS_REPLACED = Counter("kubeless_rollout_tasks_replaced_total",
                         "Old-version tasks a rollout told to stop.")
TASKS_MOVED = Counter("kubeless_rebalance_tasks_moved_total",
                      "Tasks a rebalance moved to a node holding fewer of their service's.")
DURATION = Histogram("kubeless_rollout_duration_seconds",
                     "From a rollout's start to its completion (updates and rollbacks).",
                     buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600))
BATCH_SECONDS = Histogram("kubeless_rollout_pass_duration_seconds",
                          "Controller time of one rollout pass (decide and write), per service.",
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2))

for _event in ("started", "completed", "paused", "rolled_back"):
    ROLLOUTS.labels(_event)
