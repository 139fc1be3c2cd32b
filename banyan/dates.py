"""Dates on the wire: written in the configured ``date_format`` (Eve's RFC 1123
default), read in that or ISO 8601. Internally every time is float epoch seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from email.utils import parsedate_to_datetime

from banyan.constants import DEFAULT_DATE_FORMAT
from banyan.units import parse_duration


def format_date(epoch_s: float | None, date_format: str = DEFAULT_DATE_FORMAT) -> str | None:
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s, UTC).strftime(date_format)


def parse_date(value: str | float | int, date_format: str = DEFAULT_DATE_FORMAT) -> float:
    """Epoch seconds from a date string (``date_format``, RFC 1123 or ISO 8601) or a number.

    Raises ``ValueError`` with a message naming the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError("expected a date, not a boolean")
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    for attempt in (_custom(date_format), _rfc1123, _iso):
        try:
            return attempt(text)
        except (ValueError, TypeError, IndexError, OverflowError):
            continue
    raise ValueError(
        f"invalid date {value!r}: expected e.g. 'Tue, 01 Dec 2026 09:38:27 GMT' "
        "or ISO 8601 '2026-12-01T09:38:27Z'"
    )


def _custom(date_format: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        return datetime.strptime(text, date_format).replace(tzinfo=UTC).timestamp()

    return parse


def _rfc1123(text: str) -> float:
    parsed = parsedate_to_datetime(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _iso(text: str) -> float:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


# Slurm's ``--begin`` relative forms: ``now+10minutes``, ``now + 1 hour``.
_NOW_PLUS = "now"


_TIME_OF_DAY = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def next_time_of_day(text: str, now_s: float, tz: tzinfo = UTC) -> float | None:
    """Slurm's ``--begin 16:00``: the next moment the clock in ``tz`` shows
    ``HH:MM[:SS]`` (today, or tomorrow if that has passed); None if not such."""
    match = _TIME_OF_DAY.match(text)
    if match is None:
        return None
    hour, minute, second = (int(g) if g else 0 for g in match.groups())
    if hour > 23 or minute > 59 or second > 59:
        return None
    now = datetime.fromtimestamp(now_s, tz)
    at = now.replace(hour=hour, minute=minute, second=second, microsecond=0)
    if at.timestamp() <= now_s:
        at += timedelta(days=1)
    return at.timestamp()


def parse_begin(value: str | float | int, now_s: float) -> float:
    """Epoch seconds of a begin time (``not_before``, ``--begin``): a date as
    :func:`parse_date` reads it (a number is epoch seconds; no zone is UTC),
    ``"now"``, a time of day ``"16:00"`` (the next one, UTC), a duration from
    now (``"10 minutes"``, ``"90s"``) or Slurm's ``now+DURATION``
    (``"now+10minutes"``, ``"now+60"``: a bare number is seconds, as in Slurm)."""
    if isinstance(value, str):
        text = value.strip()
        lowered = text.lower()
        at = next_time_of_day(text, now_s)
        if at is not None:
            return at
        if lowered == _NOW_PLUS:
            return now_s
        if lowered.startswith(_NOW_PLUS):
            rest = lowered[len(_NOW_PLUS) :].lstrip()
            if rest.startswith("+"):
                return now_s + parse_duration(rest[1:].strip())
        try:
            return parse_date(text)
        except ValueError:
            pass
        try:
            return now_s + parse_duration(text)
        except ValueError:
            raise ValueError(
                f"invalid begin time {value!r}: expected a date such as "
                "'2026-12-01T02:00:00Z' or 'Tue, 01 Dec 2026 02:00:00 GMT', a duration "
                "from now such as '10 minutes', or 'now+10minutes'"
            ) from None
    return parse_date(value)
