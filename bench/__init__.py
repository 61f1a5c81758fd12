"""Benchmarks: ``make bench`` (``python -m bench``) prints figures; no pass/fail."""
