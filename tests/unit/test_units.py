"""Unit parsing and formatting: memory, durations, cores, and their pydantic types."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from banyan.units import (
    DURATION_PATTERN,
    MAX_CORES,
    MAX_DURATION_S,
    MAX_MEMORY_BYTES,
    MAX_QUANTITY_CHARS,
    MEMORY_PATTERN,
    Cores,
    Duration,
    Memory,
    format_duration,
    format_memory,
    parse_cores,
    parse_duration,
    parse_memory,
)

KIB, MIB, GIB, TIB, PIB = (1024**p for p in range(1, 6))

# --- memory --------------------------------------------------------------------

MEMORY_STRINGS = [
    ("512 MiB", 512 * MIB),
    ("1 GiB", GIB),
    ("2GB", 2_000_000_000),
    ("100 KiB", 100 * KIB),
    ("1.5 GiB", 1_610_612_736),
    ("100", 100),
    ("10 B", 10),
    ("10b", 10),
    ("0", 0),
    ("1 kb", 1000),
    ("1 KB", 1000),
    ("1 MB", 10**6),
    ("1 TB", 10**12),
    ("1 PB", 10**15),
    ("1 kib", KIB),
    ("3 TiB", 3 * TIB),
    ("2 PiB", 2 * PIB),
    ("4G", 4 * GIB),
    ("4g", 4 * GIB),
    ("16M", 16 * MIB),
    ("8K", 8 * KIB),
    ("1T", TIB),
    ("1P", PIB),
    ("512Mi", 512 * MIB),
    ("  7 KiB  ", 7 * KIB),
    ("\t1GiB\n", GIB),
    (".5 KiB", 512),
    ("5.", 5),
    ("1.0004 KiB", 1024),  # 1024.4096 bytes rounds down
    ("1.0006 KiB", 1025),  # 1024.6144 bytes rounds up
    ("0.5 B", 1),  # halves round up
    ("8191 PiB", 8191 * PIB),
]


@pytest.mark.parametrize(("text", "expected"), MEMORY_STRINGS)
def test_parse_memory_strings(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize(("text", "expected"), MEMORY_STRINGS)
def test_accepted_memory_strings_fit_the_schema_pattern(text: str, expected: int) -> None:
    assert re.search(MEMORY_PATTERN, text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (1, 1), (1024, 1024), (1024.0, 1024), (0.0, 0), (MAX_MEMORY_BYTES, MAX_MEMORY_BYTES)],
)
def test_parse_memory_numbers(value: float, expected: int) -> None:
    result = parse_memory(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -1.0,
        1024.5,
        math.nan,
        math.inf,
        -math.inf,
        True,
        False,
        None,
        [],
        [1024],
        {},
        {"bytes": 1},
        b"1 GiB",
        "",
        "   ",
        "12 XB",
        "1 EiB",
        "-1",
        "-1 GiB",
        "+1 GiB",
        "1e3",
        "nan",
        "inf",
        "abc",
        "GiB",
        "1 GiBB",
        "1 iB",
        "1 KBi",
        "1..5 GiB",
        "1,5 GiB",
        "1 GiB 2",
        "1 G iB",
        "\u0661\u0662",  # Arabic-Indic digits: int() would take them
        "1\u00a0GiB",  # a no-break space
        "1" * (MAX_QUANTITY_CHARS + 1),
        2**63,
        10**400,
        1e19,
        "8192 PiB",
        "9223372036854775808",
    ],
)
def test_parse_memory_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^invalid memory "):
        parse_memory(value)


def test_parse_memory_message_names_value_and_shows_example() -> None:
    with pytest.raises(ValueError) as info:
        parse_memory("12 XB")
    assert str(info.value) == (
        'invalid memory \'12 XB\': expected bytes or a number with a unit such as "512 MiB", "2 GB"'
    )


def test_parse_memory_message_is_bounded_for_huge_inputs() -> None:
    with pytest.raises(ValueError) as info:
        parse_memory("x" * 10_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (100 * KIB, "100 KiB"),
        (512 * MIB, "512 MiB"),
        (GIB, "1 GiB"),
        (1_610_612_736, "1.5 GiB"),
        (GIB + 1, "1 GiB"),
        (2_000_000_000, "1.863 GiB"),
        (TIB, "1 TiB"),
        (PIB, "1 PiB"),
        (4096 * PIB, "4096 PiB"),
        (MIB - 1, "1023.999 KiB"),
        (GIB - 1, "1 GiB"),  # 1023.9999990 MiB rounds to the next unit
        (MAX_MEMORY_BYTES, f"{MAX_MEMORY_BYTES} B"),  # "8192 PiB" would not parse
    ],
)
def test_format_memory(n_bytes: int, text: str) -> None:
    assert format_memory(n_bytes) == text


@pytest.mark.parametrize("value", [-1, True, 1.5, 1024.0, "1 GiB", None])
def test_format_memory_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="invalid byte count"):
        format_memory(value)


@given(st.integers(min_value=0, max_value=MAX_MEMORY_BYTES))
def test_memory_round_trip_within_a_tenth_of_a_percent(n_bytes: int) -> None:
    text = format_memory(n_bytes)
    assert re.search(MEMORY_PATTERN, text)
    assert abs(parse_memory(text) - n_bytes) <= n_bytes / 1000


@given(st.from_regex(MEMORY_PATTERN, fullmatch=True))
def test_strings_the_memory_schema_allows_parse_or_overflow(text: str) -> None:
    # The pattern is published in /openapi.json; anything it allows must be
    # accepted, except what is too long or too large.
    try:
        parse_memory(text)
    except ValueError as error:
        assert len(text) > MAX_QUANTITY_CHARS or "at most" in str(error)


# --- durations -----------------------------------------------------------------

DURATION_STRINGS = [
    ("90s", 90),
    ("90", 90),
    ("90.5", 90.5),
    ("0", 0),
    ("0s", 0),
    ("10 minutes", 600),
    ("1 minute", 60),
    ("1 hour 30 minutes", 5400),
    ("1h30m", 5400),
    ("1h 30m", 5400),
    ("1h, 30m", 5400),
    ("1 HOUR 30 Minutes", 5400),
    ("2 days", 172_800),
    ("1 day", 86_400),
    ("1d", 86_400),
    ("1.5h", 5400),
    ("500ms", 0.5),
    ("500 MS", 0.5),
    ("1 week", 604_800),
    ("2 weeks", 1_209_600),
    ("1w", 604_800),
    ("5 s", 5),
    ("5 sec", 5),
    ("5 secs", 5),
    ("5 second", 5),
    ("5 seconds", 5),
    ("2 m", 120),
    ("2 min", 120),
    ("2 mins", 120),
    ("2 hr", 7200),
    ("2 hrs", 7200),
    ("2 hours", 7200),
    ("1m30s", 90),
    ("1h 1ms", 3600.001),
    ("1d2h3m4s", 93_784),
    (".5m", 30),
    ("  90s  ", 90),
    ("01:30:00", 5400),
    ("1:30:00", 5400),
    ("30:15", 1815),
    ("90:00", 5400),  # only the leading field may exceed its range
    ("100:00:00", 360_000),
    ("01:30.5", 90.5),
    ("2-12:00:00", 216_000),
    ("2-12", 216_000),
    ("2-12:30", 217_800),
    ("0-00:00:01", 1),
    ("3652 days", 3652 * 86_400),
]


@pytest.mark.parametrize(("text", "expected"), DURATION_STRINGS)
def test_parse_duration_strings(text: str, expected: float) -> None:
    result = parse_duration(text)
    assert result == pytest.approx(expected)
    assert type(result) is float


@pytest.mark.parametrize(("text", "expected"), DURATION_STRINGS)
def test_accepted_duration_strings_fit_the_schema_pattern(text: str, expected: float) -> None:
    assert re.search(DURATION_PATTERN, text)


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 0.0), (90, 90.0), (0.25, 0.25), (MAX_DURATION_S, MAX_DURATION_S)]
)
def test_parse_duration_numbers(value: float, expected: float) -> None:
    result = parse_duration(value)
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.5,
        math.nan,
        math.inf,
        True,
        False,
        None,
        [],
        [90],
        {},
        {"seconds": 90},
        "",
        "  ",
        "abc",
        "-1",
        "-1s",
        "+1s",
        "10 parsecs",
        "11 years",
        "1 month",
        "1e3",
        "1h 30",  # a bare trailing number is ambiguous
        "30 1h",
        "h",
        "s 1",
        "1 h h",
        "1hh",
        "1msec",
        "1:60",
        "1:00:60",
        "1:60:00",
        "2-24:00:00",
        "2-24",
        "1-12:60",
        "1:2:3:4",
        "1.5:30",
        "3-",
        "-3",
        ":30",
        "1:",
        "1:::",
        "1 hour and 30 minutes",
        "\u0661s",
        "3653 days",
        "5300 weeks",
        MAX_DURATION_S + 1,
        10**400,
        "9" * (MAX_QUANTITY_CHARS + 1),
    ],
)
def test_parse_duration_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^invalid duration "):
        parse_duration(value)


def test_parse_duration_message_names_value_and_shows_example() -> None:
    with pytest.raises(ValueError, match=r"invalid duration '10 parsecs': .*\"90s\""):
        parse_duration("10 parsecs")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "0.5s"),
        (0.001, "0.001s"),
        (0.0004, "0s"),
        (1, "1s"),
        (59, "59s"),
        (60, "1m"),
        (90, "1m 30s"),
        (90.25, "1m 30.25s"),
        (3600, "1h"),
        (5400, "1h 30m"),
        (3601, "1h 1s"),
        (86_400, "1d"),
        (183_600, "2d 3h"),
        (604_800, "7d"),
        (93_784.5, "1d 2h 3m 4.5s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("value", [-1, math.nan, math.inf, True, "90s", None])
def test_format_duration_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        format_duration(value)


@given(st.floats(min_value=0, max_value=MAX_DURATION_S, allow_nan=False))
def test_duration_round_trip_to_the_millisecond(seconds: float) -> None:
    text = format_duration(seconds)
    assert re.search(DURATION_PATTERN, text)
    assert parse_duration(text) == pytest.approx(seconds, abs=0.0005, rel=1e-12)


@given(st.from_regex(DURATION_PATTERN, fullmatch=True))
def test_strings_the_duration_schema_allows_parse_or_are_out_of_range(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        # Beyond the pattern only range checks refuse: clock fields, ten years, length.
        assert (
            len(text) > MAX_QUANTITY_CHARS
            or ":" in text
            or "-" in text
            or "ten years" in str(error)
        )
    else:
        assert 0 <= seconds <= MAX_DURATION_S


# --- cores ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (1, 1.0),
        (0.5, 0.5),
        (2.25, 2.25),
        (MAX_CORES, MAX_CORES),
        ({"count": 2, "percent": 50}, 1.0),
        ({"count": 4, "percent": 25}, 1.0),
        ({"count": 3}, 3.0),
        ({"count": 1, "percent": 100}, 1.0),
        ({"count": 0.5, "percent": 10}, 0.05),
        ({"percent": 50, "count": 8}, 4.0),
    ],
)
def test_parse_cores(value: Any, expected: float) -> None:
    result = parse_cores(value)
    assert result == pytest.approx(expected)
    assert type(result) is float


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.1,
        math.nan,
        math.inf,
        True,
        None,
        "2",
        "0.5",
        [],
        [2],
        MAX_CORES + 1,
        10**400,
        {},
        {"count": 0},
        {"count": -1},
        {"count": True},
        {"count": "2"},
        {"count": math.nan},
        {"count": MAX_CORES + 1},
        {"percent": 50},
        {"count": 2, "percent": 0},
        {"count": 2, "percent": -10},
        {"count": 2, "percent": 101},
        {"count": 2, "percent": math.nan},
        {"count": 2, "percent": "50"},
        {"count": 2, "percent": None},
        {"count": 2, "extra": 1},
        {"cores": 2},
    ],
)
def test_parse_cores_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^invalid cores"):
        parse_cores(value)


def test_parse_cores_names_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown key.*extra"):
        parse_cores({"count": 2, "extra": 1})


# --- pydantic types ------------------------------------------------------------


class Limits(BaseModel):
    memory: Memory = 0
    timeout: Duration = 600.0
    cores: Cores = 1.0


def test_pydantic_types_parse_python_and_json() -> None:
    parsed = Limits.model_validate({"memory": "1 GiB", "timeout": "1h30m", "cores": 0.5})
    assert (parsed.memory, parsed.timeout, parsed.cores) == (GIB, 5400.0, 0.5)
    parsed = Limits.model_validate_json(
        '{"memory": 1024, "timeout": "01:00:00", "cores": {"count": 2, "percent": 50}}'
    )
    assert (parsed.memory, parsed.timeout, parsed.cores) == (1024, 3600.0, 1.0)
    assert Limits().model_dump() == {"memory": 0, "timeout": 600.0, "cores": 1.0}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("memory", "12 XB"),
        ("memory", -1),
        ("memory", True),
        ("memory", None),
        ("memory", [1]),
        ("timeout", "10 parsecs"),
        ("timeout", -5),
        ("timeout", {}),
        ("cores", "2"),
        ("cores", {"count": 2, "percent": 200}),
    ],
)
def test_pydantic_errors_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        Limits.model_validate({field: value})
    [error] = info.value.errors()
    assert error["loc"] == (field,)
    assert error["type"] == "value_error"
    assert "invalid" in error["msg"]


def test_memory_schema() -> None:
    schema = TypeAdapter(Memory).json_schema()
    assert schema["anyOf"] == [
        {"type": "integer", "minimum": 0, "maximum": MAX_MEMORY_BYTES},
        {"type": "string", "pattern": MEMORY_PATTERN, "maxLength": MAX_QUANTITY_CHARS},
    ]
    # What the server sends back is always a byte count.
    assert TypeAdapter(Memory).json_schema(mode="serialization") == {"type": "integer"}


def test_duration_schema() -> None:
    schema = TypeAdapter(Duration).json_schema()
    assert schema["anyOf"] == [
        {"type": "number", "minimum": 0, "maximum": MAX_DURATION_S},
        {"type": "string", "pattern": DURATION_PATTERN, "maxLength": MAX_QUANTITY_CHARS},
    ]
    assert TypeAdapter(Duration).json_schema(mode="serialization") == {"type": "number"}


def test_cores_schema() -> None:
    number, mapping = TypeAdapter(Cores).json_schema()["anyOf"]
    assert number == {"type": "number", "minimum": 0, "maximum": MAX_CORES}
    assert mapping["type"] == "object"
    assert mapping["required"] == ["count"]
    assert mapping["additionalProperties"] is False
    assert set(mapping["properties"]) == {"count", "percent"}
    assert TypeAdapter(Cores).json_schema(mode="serialization") == {"type": "number"}


@pytest.mark.parametrize("pattern", [MEMORY_PATTERN, DURATION_PATTERN])
@pytest.mark.parametrize(
    "text",
    ["1s " * 10_000 + "x", "1" + " " * 10_000 + "x", "1s, " * 5_000 + "x", "1" * 20_000 + "x"],
)
def test_published_patterns_do_not_backtrack_catastrophically(pattern: str, text: str) -> None:
    # Clients check these patterns without our length cap; an ambiguous pattern
    # would hang here (and hit the test timeout) instead of failing at once.
    assert re.match(pattern, text) is None


@pytest.mark.parametrize("value", ["-1", "-1 GiB", " -512MiB", "-2 GB", -1, -0.5])
def test_a_negative_memory_says_it_must_be_at_least_zero(value: object) -> None:
    with pytest.raises(ValueError, match=r"must be (a number )?≥ 0"):
        parse_memory(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["1-GiB", "--1", "-", "- GiB", "-abc"])
def test_a_minus_that_is_not_a_sign_is_not_called_negative(value: str) -> None:
    with pytest.raises(ValueError, match="expected bytes or a number with a unit"):
        parse_memory(value)
