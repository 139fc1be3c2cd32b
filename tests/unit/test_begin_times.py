"""``not_before`` / ``--begin`` parsing (``banyan.dates.parse_begin``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from banyan.dates import next_time_of_day, parse_begin

# Tue, 01 Dec 2026 10:00:00 UTC
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("now+10minutes", NOW + 600),
        ("NOW + 1 hour", NOW + 3600),
        ("now+60", NOW + 60),  # seconds, as in Slurm
        ("10 minutes", NOW + 600),
        ("90s", NOW + 90),
        ("2026-12-08T02:00:00Z", datetime(2026, 12, 8, 2, tzinfo=UTC).timestamp()),
        ("2026-12-08T02:00:00", datetime(2026, 12, 8, 2, tzinfo=UTC).timestamp()),
        ("Tue, 08 Dec 2026 02:00:00 GMT", datetime(2026, 12, 8, 2, tzinfo=UTC).timestamp()),
        ("16:30", NOW + 6.5 * 3600),  # later today
        ("09:00", NOW + 23 * 3600),  # tomorrow: 09:00 has passed
        (1_900_000_000, 1_900_000_000.0),  # a number is epoch seconds
    ],
)
def test_begin_forms(text: str | int, expected: float) -> None:
    assert parse_begin(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["next tuesday", "now+", "now-5m", "25:00x", ""])
def test_bad_begin_times_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        parse_begin(text, NOW)


def test_a_time_of_day_in_a_time_zone() -> None:
    plus_two = timezone(timedelta(hours=2))  # 12:00 there now
    assert next_time_of_day("13:00", NOW, plus_two) == NOW + 3600
    assert next_time_of_day("24:00", NOW) is None
    assert next_time_of_day("soon", NOW) is None
