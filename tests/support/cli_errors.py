"""What every refused CLI command must look like: one ``error:`` line, a non-zero exit."""

from __future__ import annotations

import subprocess


def assert_one_error_line(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Non-zero exit; stderr exactly one line starting ``error: ``, holding every needle;
    no traceback."""
    assert res.returncode != 0, res.stdout
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr
