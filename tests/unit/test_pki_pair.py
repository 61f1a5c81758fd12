"""Replacing a certificate and its key: a crash at any step leaves a pair that matches
(``pki.write_pair``, ``pki.finish_pending_pair``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubeless.cluster import pki

OLD, NEW = ("old-cert", "old-key"), ("new-cert", "new-key")


def identity(tmp_path: Path) -> Path:
    (tmp_path / "cert.pem").write_text(OLD[0])
    (tmp_path / "key.pem").write_text(OLD[1])
    return tmp_path


def pair(directory: Path) -> tuple[str, str]:
    return (directory / "cert.pem").read_text(), (directory / "key.pem").read_text()


def test_a_whole_write_replaces_both_and_leaves_nothing_pending(tmp_path: Path) -> None:
    d = identity(tmp_path)
    pki.write_pair(d, *NEW)
    assert pair(d) == NEW
    assert sorted(p.name for p in d.iterdir()) == ["cert.pem", "key.pem"]
    assert (d / "key.pem").stat().st_mode & 0o777 == 0o600


# Each step of write_pair, and the pair finish_pending_pair makes of a crash after it.
@pytest.mark.parametrize("done, expected", [
    pytest.param(["key.next"], OLD, id="crash-after-the-new-key-only: old pair kept"),
    pytest.param(["key.next", "cert.next"], NEW, id="crash-before-the-renames: both done"),
    pytest.param(["key.next", "cert.next", "key"], NEW, id="crash-between-the-renames"),
    pytest.param([], OLD, id="no-write-at-all"),
])
def test_finish_pending_pair_after_a_crash_at_each_step(tmp_path: Path, done: list[str],
                                                        expected: tuple[str, str]) -> None:
    d = identity(tmp_path)
    if "key.next" in done:
        (d / "key.pem.next").write_text(NEW[1])
    if "cert.next" in done:
        (d / "cert.pem.next").write_text(NEW[0])
    if "key" in done:
        os.replace(d / "key.pem.next", d / "key.pem")
    pki.finish_pending_pair(d)
    assert pair(d) == expected
    assert sorted(p.name for p in d.iterdir()) == ["cert.pem", "key.pem"]


def test_finish_pending_pair_on_a_missing_directory_does_nothing(tmp_path: Path) -> None:
    pki.finish_pending_pair(tmp_path / "none")
    assert not (tmp_path / "none").exists()
