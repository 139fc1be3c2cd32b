"""The ``where`` language of collection endpoints and the event feed (Eve's Mongo-style JSON).

``where`` is Mongo-style JSON restricted to a whitelist of fields (``Fields``) and to the
operators that SQL and Python can both evaluate exactly. It is parsed into a small typed AST
(``Compare`` / ``And`` / ``Or``) whose values are already checked and converted per field kind,
so nothing downstream ever sees raw request text. ``server/stores/sqlite/querysql.py``
compiles the AST to SQL; ``matches`` evaluates it against a plain document (the event feed
filter) with the same semantics (the AST and ``matches`` are in ``banyan.query_ast``,
re-exported here). ``projection``, ``sort`` and paging live in ``banyan.projection``, on top
of the field whitelist defined here. Every bad query raises ``BadRequest``.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeAlias

from banyan.errors import BadRequest
from banyan.query_ast import ORDERED_OPS, And, Compare, Node, Op, Or, lookup, matches


class FieldKind(StrEnum):
    """The type of a queryable field; the value is how error messages name it."""

    STR = "string"
    INT = "integer"
    NUMBER = "number"
    BOOL = "boolean"
    DATE = "date"
    ID = "id"
    LIST = "list of ids"  # matched Mongo-style: {"continuations": id} means "contains"


@dataclass(frozen=True)
class Field:
    """What a client may do with one public field; ``nullable=False`` makes ``null`` a 400."""

    kind: FieldKind
    nullable: bool = True
    sortable: bool = True


Fields: TypeAlias = Mapping[str, Field]

# Keys allowed under a "prefix.*" rule (custom resources); they end up quoted in JSON paths,
# so the pattern must never admit quotes, backslashes or spaces.
CUSTOM_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", re.ASCII)


def split_prefix(name: str, rules: Iterable[str]) -> tuple[str, str] | None:
    """``(rule, key)`` when a ``"prefix.*"`` rule in ``rules`` covers ``name``; longest wins."""
    covering = [rule for rule in rules if rule.endswith(".*") and name.startswith(rule[:-1])]
    if not covering:
        return None
    rule = max(covering, key=len)
    key = name[len(rule) - 1 :]
    return (rule, key) if CUSTOM_KEY.fullmatch(key) else None


def resolve_field(name: str, fields: Fields) -> Field | None:
    """The description of ``name``: its own entry, else a ``prefix.*`` rule, else ``None``."""
    if name.endswith(".*"):
        return None
    if name in fields:
        return fields[name]
    prefixed = split_prefix(name, fields)
    return fields[prefixed[0]] if prefixed else None


def top_level_names(fields: Fields) -> frozenset[str]:
    """First segments of all field names: what a document's top-level keys may be."""
    return frozenset(name.partition(".")[0] for name in fields)


def unknown_field(name: str, fields: Fields, place: str) -> BadRequest:
    """The error for a name outside the whitelist, with a spelling hint when one is close."""
    if "." not in name and name in top_level_names(fields) and place == "where":
        dotted = (k for k in fields if k.startswith(name + ".") and not k.endswith(".*"))
        example = next(dotted, f"{name}.<key>")
        return BadRequest(
            f"field {name!r} cannot be compared as a whole; use a dotted path such as {example!r}"
        )
    known = [k for k in fields if not k.endswith(".*")]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return BadRequest(f"unknown field {name!r} in {place}{hint}")


def show(value: Any, limit: int = 60) -> str:
    """A short JSON-ish rendering of client input for error messages."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _DuplicateKey(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of repeated keys silently; a query that says two things is an error.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def decode_json(text: str, what: str) -> Any:
    """Strict JSON: no NaN/Infinity, no repeated keys; every failure is a ``BadRequest``."""
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        raise BadRequest(f"{what} has the key {exc.args[0]!r} twice") from None
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None


# --- values --------------------------------------------------------------------------------

_INT64_MAX = 2**63 - 1
_HEX24 = re.compile(r"[0-9a-fA-F]{24}", re.ASCII)
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_RFC1123 = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (" + "|".join(_MONTHS) + r") (\d{4}) "
    r"(\d{2}):(\d{2}):(\d{2}) GMT",
    re.ASCII,
)
_EXPECTED = {
    FieldKind.STR: "a string",
    FieldKind.INT: "an integer",
    FieldKind.NUMBER: "a number",
    FieldKind.BOOL: "true or false",
    FieldKind.DATE: "a date (RFC 1123, ISO 8601 or epoch seconds)",
    FieldKind.ID: "a 24-hex id",
    FieldKind.LIST: "a 24-hex id",
}


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_INT64_MAX - 1 <= value <= _INT64_MAX  # what SQLite can bind
    return isinstance(value, float) and math.isfinite(value)


def _parse_date(text: str) -> float | None:
    found = _RFC1123.fullmatch(text)
    try:
        if found:
            day, month, year, hh, mm, ss = found.groups()
            moment = datetime(
                int(year), _MONTHS.index(month) + 1, int(day), int(hh), int(mm), int(ss), tzinfo=UTC
            )
        else:
            moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # naive times are UTC, as the store keeps them
        return moment.timestamp()
    except (ValueError, OverflowError):
        return None


def _as_date(value: Any) -> float | None:
    if _is_number(value):
        return float(value)
    return _parse_date(value) if isinstance(value, str) else None


def _as_id(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and _HEX24.fullmatch(value) else None


# Each returns the converted value, or None when the value has the wrong type.
_CONVERT: dict[FieldKind, Callable[[Any], Any]] = {
    FieldKind.STR: lambda v: v if isinstance(v, str) else None,
    FieldKind.INT: lambda v: v if isinstance(v, int) and _is_number(v) else None,
    FieldKind.NUMBER: lambda v: v if _is_number(v) else None,
    FieldKind.BOOL: lambda v: v if isinstance(v, bool) else None,
    FieldKind.DATE: _as_date,
    FieldKind.ID: _as_id,
    FieldKind.LIST: _as_id,
}


def convert_value(name: str, field: Field, value: Any) -> Any:
    """``value`` checked against the field's kind and converted to what the store compares."""
    converted = _CONVERT[field.kind](value)
    if converted is None:
        raise BadRequest(f"field {name!r} expects {_EXPECTED[field.kind]}, got {show(value)}")
    if isinstance(converted, str):
        try:
            converted.encode("utf-8")  # lone surrogates would make SQLite refuse the parameter
        except UnicodeEncodeError:
            raise BadRequest(f"field {name!r} got a string that is not valid Unicode") from None
    return converted


# --- where ---------------------------------------------------------------------------------

_FORBIDDEN_OPS = frozenset({"$where", "$regex", "$text", "$expr", "$function", "$accumulator"})
_FIELD_OPS = frozenset(op.value for op in Op)
_ALLOWED_LIST = ", ".join(op.value for op in Op)


@dataclass
class _Budget:
    fields: Fields
    max_terms: int
    max_depth: int
    max_list: int
    max_values: int
    terms: int = 0
    values: int = 0

    def spend(self, values: int) -> None:
        self.terms += 1
        self.values += values
        if self.terms > self.max_terms:
            raise BadRequest(f"where has too many terms (at most {self.max_terms})")
        if self.values > self.max_values:
            raise BadRequest(f"where has too many values (at most {self.max_values} in total)")


def _operator_error(key: str, name: str | None) -> BadRequest:
    if key in _FORBIDDEN_OPS:
        return BadRequest(f"operator {key} is not allowed")
    if name is None and key in _FIELD_OPS:
        return BadRequest(
            f"operator {key} cannot be used at the top level of where (only $and, $or)"
        )
    if key in ("$and", "$or"):
        return BadRequest(
            f"operator {key} cannot be applied to field {name!r}; use it at top level"
        )
    if name is None:
        return BadRequest(f"unknown operator {key!r} at the top level of where; use $and or $or")
    return BadRequest(f"unknown operator {key!r} for field {name!r}; allowed: {_ALLOWED_LIST}")


def parse_where(
    where: str | Mapping[str, Any] | None,
    fields: Fields,
    *,
    max_terms: int = 200,
    max_depth: int = 8,
    max_list: int = 1000,
    max_values: int = 10_000,
) -> Node | None:
    """Parse ``?where=`` (JSON text or a decoded object); ``None`` means "everything".

    ``max_values`` bounds the values of the whole query (``$in`` lists included), which keeps
    the compiled SQL well under SQLite's limit on bound parameters.
    """
    if where is None or (isinstance(where, str) and not where.strip()):
        return None
    document = decode_json(where, "where") if isinstance(where, str) else where
    if not isinstance(document, Mapping):
        raise BadRequest(f"where must be a JSON object, got {show(document)}")
    budget = _Budget(fields, max_terms, max_depth, max_list, max_values)
    terms = _document(document, budget, 1)
    return _join(terms) if terms else None


def _join(terms: list[Node]) -> Node:
    return terms[0] if len(terms) == 1 else And(tuple(terms))


def _document(document: Mapping[Any, Any], budget: _Budget, depth: int) -> list[Node]:
    if depth > budget.max_depth:
        raise BadRequest(f"where is nested too deeply (at most {budget.max_depth} levels)")
    terms: list[Node] = []
    for key, value in document.items():
        if not isinstance(key, str):
            raise BadRequest(f"where keys must be strings, got {show(key)}")
        if key in ("$and", "$or"):
            terms.append(_logical(key, value, budget, depth))
        elif key.startswith("$"):
            raise _operator_error(key, None)
        else:
            terms.extend(_field_terms(key, value, budget))
    return terms


def _logical(key: str, value: Any, budget: _Budget, depth: int) -> Node:
    if not isinstance(value, list | tuple) or not value:
        raise BadRequest(f"{key} takes a non-empty list of documents, got {show(value)}")
    parts: list[Node] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise BadRequest(f"{key} takes a list of documents, got {show(item)}")
        terms = _document(item, budget, depth + 1)
        if not terms:
            raise BadRequest(f"{key} contains an empty document")
        parts.append(_join(terms))
    if len(parts) == 1:
        return parts[0]
    return And(tuple(parts)) if key == "$and" else Or(tuple(parts))


def _field_terms(name: str, value: Any, budget: _Budget) -> list[Node]:
    field = resolve_field(name, budget.fields)
    if field is None:
        raise unknown_field(name, budget.fields, "where")
    if not isinstance(value, Mapping):
        return [_compare(name, field, "$eq", value, budget)]
    if not value:
        raise BadRequest(f"field {name!r} has an empty operator document")
    if not all(isinstance(key, str) and key.startswith("$") for key in value):
        raise BadRequest(
            f"field {name!r} cannot be matched against an object; use operators ($eq, $in, ...) "
            "or dotted paths"
        )
    return [_compare(name, field, key, operand, budget) for key, operand in value.items()]


def _compare(name: str, field: Field, key: str, value: Any, budget: _Budget) -> Compare:
    try:
        op = Op(key)
    except ValueError:
        raise _operator_error(key, name) from None
    kind = field.kind
    if op is Op.EXISTS:
        budget.spend(0)
        if kind is FieldKind.LIST:
            raise BadRequest(f"operator $exists cannot be used on list field {name!r}")
        if not isinstance(value, bool):
            raise BadRequest(f"$exists on {name!r} expects true or false, got {show(value)}")
        return Compare(name, op, value)
    if op in ORDERED_OPS and kind in (FieldKind.BOOL, FieldKind.LIST):
        raise BadRequest(f"operator {op} cannot be used on {name!r}, a {kind}")
    if op in (Op.IN, Op.NIN):
        if not isinstance(value, list | tuple):
            raise BadRequest(f"{op} on {name!r} expects a list, got {show(value)}")
        if len(value) > budget.max_list:
            raise BadRequest(
                f"{op} on {name!r} has {len(value)} values (at most {budget.max_list})"
            )
        budget.spend(len(value))
        items = (_operand(name, field, op, item) for item in value)
        return Compare(name, op, tuple(dict.fromkeys(items)))  # drop repeats, keep order
    budget.spend(1)
    return Compare(name, op, _operand(name, field, op, value))


def _operand(name: str, field: Field, op: Op, value: Any) -> Any:
    if value is not None:
        return convert_value(name, field, value)
    if op in ORDERED_OPS:
        raise BadRequest(f"{op} on {name!r} needs a value, not null")
    if not field.nullable or field.kind is FieldKind.LIST:
        raise BadRequest(f"field {name!r} is never null")
    return None


__all__ = [
    "CUSTOM_KEY",
    "ORDERED_OPS",
    "And",
    "Compare",
    "Field",
    "FieldKind",
    "Fields",
    "Node",
    "Op",
    "Or",
    "convert_value",
    "decode_json",
    "lookup",
    "matches",
    "parse_where",
    "resolve_field",
    "show",
    "split_prefix",
    "top_level_names",
    "unknown_field",
]
