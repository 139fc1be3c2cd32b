"""Dates on the wire: written in the configured ``date_format`` (Eve's RFC 1123
default), read in that or ISO 8601. Internally every time is float epoch seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from banyan.constants import DEFAULT_DATE_FORMAT


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
