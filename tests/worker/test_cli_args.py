"""``banyan-worker`` refuses a wrong argument with one line and exit 2,
before it connects anywhere (the real console script, as a user runs it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(sys.executable).parent / "banyan-worker"


@pytest.mark.parametrize(
    ("value", "why"),
    [("-1", "must be 0 or more, not -1"), ("x", "not a whole number: 'x'"), ("1.5", "not a whole")],
)
def test_a_wrong_prefetch_is_refused_not_clamped(value: str, why: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(WORKER), "--prefetch", value],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 2
    assert f"argument --prefetch: {why}" in done.stderr.splitlines()[-1]
