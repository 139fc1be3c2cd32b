"""banyan/logs.py: the JSON lines both banyan-server and banyan-worker write
with ``--log-format json``."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from banyan.logs import JsonFormatter, setup_logging


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.getLogger("server.gateway").makeRecord(
        "server.gateway", logging.INFO, __file__, 1, message, args, None, extra=extra
    )
    return rec


def test_a_json_line_has_the_four_fields_and_the_extras() -> None:
    line = json.loads(JsonFormatter().format(record("worker %s joined", "w1", worker="w1")))
    assert line["level"] == "INFO" and line["logger"] == "server.gateway"
    assert line["message"] == "worker w1 joined" and line["worker"] == "w1"
    assert line["time"].endswith("+00:00") and "T" in line["time"]
    assert set(line) == {"time", "level", "logger", "message", "worker"}


def test_a_json_line_is_one_line_even_with_a_traceback_and_odd_values() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        exc_info = sys.exc_info()
    rec = record("two\nlines", path=object())
    rec.exc_info = exc_info
    text = JsonFormatter().format(rec)
    assert "\n" not in text
    line = json.loads(text)
    assert line["message"] == "two\nlines" and "ValueError: bad" in line["exc"]
    assert line["path"].startswith("<object object")


def test_setup_logging_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="text, json"):
        setup_logging(log_format="xml")  # type: ignore[arg-type]
