"""Metrics of the secrets controller beyond the framework's reconcile counters."""

from __future__ import annotations

from prometheus_client import Counter

COPIES = Counter("kubeless_secret_copies_total",
                 "Nodes' copies of secrets and configs written (put: missing or stale) or "
                 "deleted (no task there uses it, its source or its node is gone).",
                 ["kind", "op"])
UNDELIVERABLE = Counter("kubeless_secret_copies_undeliverable_total",
                        "Secrets a node's task needs that could not be sealed to it (no CA key "
                        "in this process, or the stored value does not open), once per secret.")
