"""Logging set-up shared by ``banyan-server`` and ``banyan-worker``: one
handler on stderr, in plain text or as JSON lines (``--log-format json``).

A JSON line is one object: ``time`` (ISO 8601, UTC, milliseconds),
``level``, ``logger``, ``message``, then every ``extra={...}`` field the call
passed (aiohttp's access log passes the request's fields this way), and
``exc`` with the traceback when there is one. Values that are not JSON are
written as their ``str()``. Standard library only: no aiohttp.web here.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def setup_logging(*, level: str | int = logging.INFO, log_format: LogFormat = "text") -> None:
    """Send every log record at ``level`` or above to stderr in ``log_format``.
    Replaces the root logger's handlers (so it can be called again)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}: {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


def version() -> str:
    """The installed version of Banyan (``"unknown"`` when run from a bare tree)."""
    try:
        return metadata.version("banyan")
    except metadata.PackageNotFoundError:
        return "unknown"
