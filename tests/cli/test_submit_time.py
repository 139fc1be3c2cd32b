"""``banyan submit --time-limit/--begin/--max-abandons``: the bodies it builds."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from banyan.cli.context import UsageError
from banyan.cli.submit import begin_time, build_tasks
from tests.cli.test_cli_offline import submit_args


def test_time_limit_begin_and_abandons_reach_the_body() -> None:
    (task,) = build_tasks(
        submit_args(
            "--time-limit",
            "2 hours",
            "--begin",
            "2026-12-08T02:00:00Z",
            "--max-abandons",
            "5",
            "--",
            "true",
        )
    )
    assert task["time_limit"] == 7200
    assert task["not_before"] == datetime.fromisoformat("2026-12-08T02:00:00+00:00").timestamp()
    assert task["max_abandon_count"] == 5


def test_an_array_shares_one_begin_time() -> None:
    tasks = build_tasks(submit_args("--array", "1-3", "--begin", "now+10minutes", "--", "true"))
    assert len({t["not_before"] for t in tasks}) == 1
    assert tasks[0]["not_before"] == pytest.approx(time.time() + 600, abs=30)


def test_a_time_of_day_is_local_time() -> None:
    at = datetime.fromisoformat(begin_time("23:59")).astimezone()
    assert (at.hour, at.minute) == (23, 59)


def test_a_bad_begin_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--begin"):
        build_tasks(submit_args("--begin", "someday", "--", "true"))
