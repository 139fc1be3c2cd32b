"""What a collection request gets back: which fields, in which order, which slice.

Eve's ``projection``, ``sort``, ``max_results`` and ``page`` parameters, parsed against the same
field whitelist as ``where`` (``banyan.query.Fields``). Every bad value raises ``BadRequest``
with a message naming the problem; nothing here touches a database.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from banyan.errors import BadRequest
from banyan.query import Fields, decode_json, resolve_field, show, top_level_names, unknown_field


@dataclass(frozen=True)
class Projection:
    """Top-level keys to return: only ``include`` (when set), else all but ``exclude``.

    Names in ``keep`` (``_id`` by default) are returned whatever the projection says, as Eve
    always returns the id.
    """

    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()
    keep: frozenset[str] = frozenset({"_id"})

    def apply(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """A new dict holding the projected top-level keys of ``doc``."""
        if self.include is not None:
            return {k: v for k, v in doc.items() if k in self.include or k in self.keep}
        return {k: v for k, v in doc.items() if k not in self.exclude or k in self.keep}


def parse_projection(
    projection: str | Mapping[str, Any] | None,
    fields: Fields,
    *,
    keep: Iterable[str] = ("_id",),
) -> Projection:
    """``{"name": 1, "state": 1}`` includes, ``{"command": 0}`` excludes; mixing is a 400.

    Names are top-level keys: ``execution`` is valid when any ``execution.*`` field exists.
    A ``keep`` name (``_id``) may appear with either value and never decides whether the
    projection includes or excludes (MongoDB's rule): ``{"_id": 1, "command": 0}`` excludes
    ``command``; only ``{"_id": 1}`` alone, with no other name set to 1, shows just the kept
    names.
    """
    kept = frozenset(keep)
    if projection is None or (isinstance(projection, str) and not projection.strip()):
        return Projection(keep=kept)
    document = decode_json(projection, "projection") if isinstance(projection, str) else projection
    if not isinstance(document, Mapping):
        raise BadRequest(
            f'projection must be a JSON object such as {{"name": 1}}, got {show(document)}'
        )
    known = top_level_names(fields) | kept
    includes: set[str] = set()
    excludes: set[str] = set()
    for name, flag in document.items():
        if not isinstance(name, str):
            raise BadRequest(f"projection keys must be strings, got {show(name)}")
        head = name.partition(".")[0]
        if head not in known:
            raise unknown_field(name, fields, "projection")
        if head != name:
            raise BadRequest(f"projection takes top-level names: use {head!r} rather than {name!r}")
        if not isinstance(flag, int) or flag not in (0, 1):  # bools are ints; 1.0 is not
            raise BadRequest(f"projection value for {name!r} must be 0 or 1, got {show(flag)}")
        if flag:
            includes.add(name)
        elif name not in kept:
            excludes.add(name)
    if excludes and includes - kept:
        raise BadRequest("projection cannot mix inclusion (1) and exclusion (0)")
    if excludes:
        return Projection(exclude=frozenset(excludes), keep=kept)
    if includes:
        return Projection(include=frozenset(includes | kept), keep=kept)
    return Projection(keep=kept)


_MAX_SORT_CHARS = 4096
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)  # int() would also take "1_0" and non-ASCII digits


def parse_sort(
    sort: str | None, fields: Fields, *, max_keys: int = 8
) -> tuple[tuple[str, int], ...]:
    """``[("priority", -1), ("_id", 1)]``, ``[["priority", -1]]`` or ``-priority,_id``."""
    if sort is None or not sort.strip():
        return ()
    text = sort.strip()
    if len(text) > _MAX_SORT_CHARS:
        raise BadRequest(f"sort is too long (at most {_MAX_SORT_CHARS} characters)")
    pairs = _literal_sort(text) if text[0] in "[(" else _comma_sort(text)
    if len(pairs) > max_keys:
        raise BadRequest(f"sort has too many keys (at most {max_keys})")
    seen: set[str] = set()
    for name, _ in pairs:
        field = resolve_field(name, fields)
        if field is None:
            raise unknown_field(name, fields, "sort")
        if not field.sortable:
            raise BadRequest(f"cannot sort by {name!r}")
        if name in seen:
            raise BadRequest(f"sort names {name!r} twice")
        seen.add(name)
    return tuple(pairs)


def _literal_sort(text: str) -> list[tuple[str, int]]:
    try:
        # literal_eval builds constants only: nothing is called or looked up.
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise BadRequest(f'sort is not a list such as [("priority", -1)]: {show(text)}') from None
    if not isinstance(value, list | tuple):
        raise BadRequest(f'sort must be a list such as [("priority", -1)], got {show(text)}')
    pairs: list[tuple[str, int]] = []
    for item in value:
        if not (isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise BadRequest(
                f'each sort item must be a pair such as ("priority", -1), got {item!r}'
            )
        name, direction = item
        if type(direction) is not int or direction not in (1, -1):  # not True, not 1.0
            raise BadRequest(f"sort direction for {name!r} must be 1 or -1, got {direction!r}")
        pairs.append((name, int(direction)))
    return pairs


def _comma_sort(text: str) -> list[tuple[str, int]]:
    pairs: list[tuple[str, int]] = []
    for part in text.split(","):
        key = part.strip()
        name = key.removeprefix("-")
        if not name:
            raise BadRequest(f"sort has an empty key: {show(text)}")
        pairs.append((name, -1 if key.startswith("-") else 1))
    return pairs


def _integer(value: str, what: str) -> int:
    text = value.strip()
    if not _INTEGER.fullmatch(text):
        raise BadRequest(f"{what} must be an integer, got {show(value)}")
    digits = text.lstrip("+-")
    if len(digits) > 18:  # saturate instead of building a huge int; callers clamp or reject
        return -(10**18) if text.startswith("-") else 10**18
    return int(text)


def parse_max_results(value: str | None, *, default: int, limit: int) -> int:
    """``?max_results=``: absent gives ``default``; anything else is clamped to [1, limit]."""
    if value is None or not value.strip():
        return max(1, min(default, limit))
    return max(1, min(_integer(value, "max_results"), limit))


MAX_PAGE = 10**9


def parse_page(value: str | None) -> int:
    """``?page=``: 1-based; absent gives 1."""
    if value is None or not value.strip():
        return 1
    page = _integer(value, "page")
    if not 1 <= page <= MAX_PAGE:
        raise BadRequest(f"page must be between 1 and {MAX_PAGE}, got {show(value)}")
    return page
