"""The rate limit of ``server.netlog`` on a fake clock: one line per kind per
period, the held-back ones counted and summed up."""

from __future__ import annotations

import logging

import pytest

from server.netlog import RateLimitedWarnings


def test_one_line_per_kind_per_period(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    warnings = RateLimitedWarnings(logging.getLogger("t.netlog"), period_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t.netlog"):
        for i in range(1000):
            now[0] = i * 0.005  # 1,000 in 5 s
            warnings.warn("reset", f"reset {i}")
            warnings.warn("long line", f"long {i}")
        assert [r.getMessage() for r in caplog.records] == ["reset 0", "long 0"]
        warnings.flush("reset")
        assert caplog.records[-1].getMessage().startswith("reset: 999 more in the last 10 s")
        warnings.flush("reset")  # nothing held back: nothing logged
        assert len(caplog.records) == 3
        now[0] = 20.0
        warnings.warn("reset", "reset again")
        assert caplog.records[-1].getMessage() == "reset again"
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in caplog.records)
