"""Parse and format the quantities users write: memory, durations and CPU cores.

Users type ``"512 MiB"``, ``"1h30m"`` or ``{"count": 2, "percent": 50}``; the
server stores plain numbers (bytes, seconds, cores). The pure functions here do
that conversion and raise ``ValueError`` with a message that names the value and
shows an example. ``Memory``, ``Duration`` and ``Cores`` wrap them as pydantic
types whose JSON schema says exactly which inputs are accepted: the string
patterns published in ``/openapi.json`` are the very regexes the parsers use, so
the schema and the validation cannot drift apart.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeGuard

MAX_MEMORY_BYTES: Final = 2**63 - 1  # what SQLite's INTEGER holds
MAX_DURATION_S: Final = 10 * 365.25 * 86_400  # ten years
MAX_CORES: Final = 100_000.0
# Longer strings are not a plausible quantity; the cap also bounds regex work.
MAX_QUANTITY_CHARS: Final = 64

# Patterns are written in the common subset of Python and ECMA-262 regexes (no
# flags, no named groups, ASCII classes) so they can go into the JSON schema
# verbatim. ``\d`` and ``\s`` would match non-ASCII digits and spaces in Python.
_WS = r"[ \t\n\r]*"
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"


def _any_case(word: str) -> str:
    return "".join(f"[{ch.lower()}{ch.upper()}]" if ch.isalpha() else ch for ch in word)


# --- memory --------------------------------------------------------------------

_MEMORY_MULTIPLIERS: Final[dict[str, int]] = {"": 1, "b": 1}
for _power, _prefix in enumerate("kmgtp", start=1):
    _MEMORY_MULTIPLIERS[_prefix + "b"] = 1000**_power  # SI, as disk vendors write it
    for _binary in (_prefix, _prefix + "i", _prefix + "ib"):  # Slurm "4G", Kubernetes "4Gi"
        _MEMORY_MULTIPLIERS[_binary] = 1024**_power

MEMORY_PATTERN: Final = rf"^{_WS}({_NUMBER})(?:{_WS}([kKmMgGtTpP](?:[iI])?(?:[bB])?|[bB]))?{_WS}$"
_MEMORY_RE = re.compile(MEMORY_PATTERN)
_MEMORY_HINT = 'expected bytes or a number with a unit such as "512 MiB", "2 GB"'
_BINARY_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value: object) -> TypeGuard[int | float]:
    # bool is an int subclass, but ``true`` is never a quantity.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_finite(value: int | float) -> bool:
    # math.isfinite() would overflow on a huge int; ints are always finite.
    return isinstance(value, int) or math.isfinite(value)


def parse_memory(value: int | float | str) -> int:
    """Bytes from an integer, an integral float or a string like ``"1.5 GiB"``.

    ``KB``…``PB`` are powers of 1000; ``KiB``…``PiB``, ``Ki``…``Pi`` and the bare
    ``K``…``P`` Slurm writes are powers of 1024. Case is ignored. Fractional byte
    counts round to the nearest byte.
    """
    if isinstance(value, str):
        match = _MEMORY_RE.match(value) if len(value) <= MAX_QUANTITY_CHARS else None
        if match is None:
            positive = value.strip().removeprefix("-")
            negative = positive != value.strip() and len(value) <= MAX_QUANTITY_CHARS
            if negative and _MEMORY_RE.match(positive):  # a quantity, only negative
                raise ValueError(f"invalid memory {_show(value)}: must be ≥ 0")
            raise ValueError(f"invalid memory {_show(value)}: {_MEMORY_HINT}")
        number, unit = match.group(1), (match.group(2) or "").lower()
        exact = Fraction(number) * _MEMORY_MULTIPLIERS[unit]
        n_bytes = math.floor(exact + Fraction(1, 2))
    elif _is_number(value):
        if not _is_finite(value) or value < 0:
            raise ValueError(f"invalid memory {_show(value)}: must be a number ≥ 0")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"invalid memory {_show(value)}: a byte count is a whole number")
        n_bytes = int(value)
    else:
        raise ValueError(f"invalid memory {_show(value)}: {_MEMORY_HINT}")
    if n_bytes > MAX_MEMORY_BYTES:
        raise ValueError(f"invalid memory {_show(value)}: at most {MAX_MEMORY_BYTES} bytes")
    return n_bytes


def format_memory(n_bytes: int) -> str:
    """``1610612736`` → ``"1.5 GiB"``: the largest binary unit, at most 3 decimals."""
    if not isinstance(n_bytes, int) or isinstance(n_bytes, bool) or n_bytes < 0:
        raise ValueError(f"invalid byte count {_show(n_bytes)}: expected an integer >= 0")
    exponent = 0
    while exponent + 1 < len(_BINARY_UNITS) and n_bytes >= 1024 ** (exponent + 1):
        exponent += 1
    shown = round(n_bytes / 1024**exponent, 3)
    if shown >= 1024 and exponent + 1 < len(_BINARY_UNITS):  # 1023.9999 KiB → 1 MiB
        exponent += 1
        shown = round(n_bytes / 1024**exponent, 3)
    text = f"{shown:.3f}".rstrip("0").rstrip(".") + " " + _BINARY_UNITS[exponent]
    try:
        parse_memory(text)
    except ValueError:  # rounded up past the limit: exact bytes still parse
        return f"{n_bytes} B"
    return text


# --- durations -----------------------------------------------------------------

_DURATION_SECONDS: Final[dict[str, float]] = {"ms": 0.001}
for _names, _seconds in (
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86_400.0),
    (("w", "week", "weeks"), 604_800.0),
):
    _DURATION_SECONDS.update(dict.fromkeys(_names, _seconds))

# Longest first, and never followed by a letter, so "1ms" is not "1m" + "s".
_UNIT = (
    "(?:"
    + "|".join(_any_case(u) for u in sorted(_DURATION_SECONDS, key=len, reverse=True))
    + ")(?![a-zA-Z])"
)
_TERM = rf"{_NUMBER}{_WS}{_UNIT}"
# One way only to split a separator: "[ ]*,?[ ]*" can split "  " several ways,
# and backtracks exponentially on a long "1s 1s 1s ... x" (ReDoS in any client
# that checks the published pattern).
_TERMS = rf"{_TERM}(?:{_WS}(?:,{_WS})?{_TERM})*"
# Slurm's clock forms: MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_CLOCK = r"[0-9]+:[0-9]{1,2}(?::[0-9]{1,2})?(?:\.[0-9]+)?"
_DAY_CLOCK = r"[0-9]+-[0-9]{1,2}(?::[0-9]{1,2}(?::[0-9]{1,2}(?:\.[0-9]+)?)?)?"
DURATION_PATTERN: Final = rf"^{_WS}(?:{_NUMBER}|{_TERMS}|{_CLOCK}|{_DAY_CLOCK}){_WS}$"

_DURATION_RE = re.compile(DURATION_PATTERN)
_TERM_RE = re.compile(rf"({_NUMBER}){_WS}([a-zA-Z]+)")
_NUMBER_RE = re.compile(_NUMBER)
_CLOCK_RE = re.compile(_CLOCK)
_DAY_CLOCK_RE = re.compile(_DAY_CLOCK)
_DURATION_HINT = 'expected seconds or a string such as "90s", "10 minutes", "1h30m" or "01:30:00"'


def _clock_seconds(text: str) -> float | None:
    """Seconds of a Slurm clock string, or None if a field is out of range."""
    days_text, _, clock = text.rpartition("-")
    fields = [float(f) for f in clock.split(":")]
    if days_text:
        fields += [0.0] * (3 - len(fields))  # D-HH and D-HH:MM leave the rest at zero
        if fields[0] >= 24:
            return None
    # Only the leading field may exceed its natural range ("90:00" is 90 minutes).
    if any(f >= 60 for f in fields[1:]):
        return None
    seconds = 0.0
    for field in fields:
        seconds = seconds * 60 + field
    return seconds + int(days_text or 0) * 86_400


def _string_seconds(text: str) -> float | None:
    core = text.strip(" \t\n\r")
    if _NUMBER_RE.fullmatch(core):
        return float(core)
    if _CLOCK_RE.fullmatch(core) or _DAY_CLOCK_RE.fullmatch(core):
        return _clock_seconds(core)
    return sum(
        float(number) * _DURATION_SECONDS[unit.lower()] for number, unit in _TERM_RE.findall(core)
    )


def parse_duration(value: int | float | str) -> float:
    """Seconds from a number or from ``"90s"``, ``"1 hour 30 minutes"``, ``"1h30m"``,
    ``"1.5h"``, ``"500ms"``, ``"2 days"`` or a clock ``"01:30:00"``, ``"2-12:00:00"``.

    A bare number (also as a string) is seconds, not Slurm's minutes: a job queue
    that reads ``"90"`` as an hour and a half would surprise everyone else.
    """
    if isinstance(value, str):
        valid = len(value) <= MAX_QUANTITY_CHARS and _DURATION_RE.match(value) is not None
        seconds = _string_seconds(value) if valid else None
        if seconds is None:
            raise ValueError(f"invalid duration {_show(value)}: {_DURATION_HINT}")
    elif _is_number(value):
        if not _is_finite(value) or value < 0:
            raise ValueError(f"invalid duration {_show(value)}: must be a number >= 0")
        if value > MAX_DURATION_S:  # compared before float() so huge ints cannot overflow
            raise ValueError(f"invalid duration {_show(value)}: at most ten years")
        seconds = float(value)
    else:
        raise ValueError(f"invalid duration {_show(value)}: {_DURATION_HINT}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"invalid duration {_show(value)}: at most ten years")
    return seconds


def format_duration(seconds: float) -> str:
    """``5400`` → ``"1h 30m"``, ``90`` → ``"1m 30s"``, ``0.5`` → ``"0.5s"``; to the millisecond."""
    if not _is_number(seconds) or not _is_finite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {_show(seconds)}: expected seconds >= 0")
    total_ms = round(seconds * 1000)
    parts: list[str] = []
    for suffix, unit_ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        count, total_ms = divmod(total_ms, unit_ms)
        if count:
            parts.append(f"{count}{suffix}")
    whole, millis = divmod(total_ms, 1000)
    if millis:
        parts.append(f"{whole}.{millis:03d}".rstrip("0") + "s")
    elif whole or not parts:
        parts.append(f"{whole}s")
    return " ".join(parts)


# --- cores ---------------------------------------------------------------------

_CORES_HINT = 'expected a number of cores such as 2 or 0.5, or {"count": 2, "percent": 50}'


def parse_cores(value: int | float | Mapping[str, Any]) -> float:
    """Cores from a number (fractions allowed) or ``{"count": n, "percent": p}``,
    meaning n cores each used at p percent (p defaults to 100)."""
    if isinstance(value, Mapping):
        unknown = sorted(str(key) for key in value if key not in ("count", "percent"))
        if unknown:
            raise ValueError(f"invalid cores: unknown key(s) {', '.join(unknown)}; {_CORES_HINT}")
        count, percent = value.get("count"), value.get("percent", 100)
        if not _is_number(count) or not 0 < count <= MAX_CORES:
            raise ValueError(f"invalid cores count {_show(count)}: expected a number > 0")
        if not _is_number(percent) or not 0 < percent <= 100:
            raise ValueError(f"invalid cores percent {_show(percent)}: expected 0 < percent <= 100")
        return float(count) * float(percent) / 100
    if not _is_number(value):
        raise ValueError(f"invalid cores {_show(value)}: {_CORES_HINT}")
    # ``not <=`` rather than ``>`` so that NaN is refused too.
    if not 0 <= value <= MAX_CORES:
        raise ValueError(f"invalid cores {_show(value)}: expected 0 <= cores <= {MAX_CORES:g}")
    return float(value)


# --- pydantic types --------------------------------------------------------------

# Built on first use (PEP 562): the CLI formats quantities without loading pydantic.
# mypy sees the plain types below; Annotated's extras mean nothing to it.
if TYPE_CHECKING:
    Memory = Annotated[int, "bytes"]
    Duration = Annotated[float, "seconds"]
    Cores = Annotated[float, "cores"]


def _pydantic_types() -> dict[str, Any]:
    from pydantic import BeforeValidator, WithJsonSchema

    # The schemas describe inputs only (mode="validation"); once parsed, the values
    # are plain integers or numbers and pydantic describes those itself.
    Memory = Annotated[
        int,
        BeforeValidator(parse_memory),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "integer", "minimum": 0, "maximum": MAX_MEMORY_BYTES},
                    {"type": "string", "pattern": MEMORY_PATTERN, "maxLength": MAX_QUANTITY_CHARS},
                ],
                "description": 'bytes, or a string such as "512 MiB", "1 GiB", "2GB"',
            },
            mode="validation",
        ),
    ]
    Duration = Annotated[
        float,
        BeforeValidator(parse_duration),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "number", "minimum": 0, "maximum": MAX_DURATION_S},
                    {
                        "type": "string",
                        "pattern": DURATION_PATTERN,
                        "maxLength": MAX_QUANTITY_CHARS,
                    },
                ],
                "description": 'seconds, or a string such as "90s", "10 minutes", "1h30m"',
            },
            mode="validation",
        ),
    ]
    Cores = Annotated[
        float,
        BeforeValidator(parse_cores),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "number", "minimum": 0, "maximum": MAX_CORES},
                    {
                        "type": "object",
                        "properties": {
                            "count": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "maximum": MAX_CORES,
                            },
                            "percent": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                        },
                        "required": ["count"],
                        "additionalProperties": False,
                    },
                ],
                "description": 'cores (fractions allowed), or {"count": n, "percent": p}',
            },
            mode="validation",
        ),
    ]
    return {"Memory": Memory, "Duration": Duration, "Cores": Cores}


def __getattr__(name: str) -> Any:
    if name in ("Memory", "Duration", "Cores"):
        globals().update(_pydantic_types())
        return globals()[name]
    raise AttributeError(f"module 'banyan.units' has no attribute {name!r}")
