"""Compile ``banyan.query`` ASTs to parameterised SQLite SQL.

A store describes once, by hand, how each public field maps to SQL (a ``ColumnMap``); only
that trusted text and ``?`` placeholders ever reach the SQL, every value is a bound parameter.
The semantics are those of ``banyan.query.matches`` (Mongo's: ``$ne``/``$nin`` match missing
values, comparisons with NULL are false, list fields mean "contains");
``tests/store/test_querysql.py`` checks the two agree on random queries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from banyan.query import CUSTOM_KEY, And, Compare, Node, Op, Or, split_prefix


class ColumnKind(StrEnum):
    SCALAR = "scalar"  # ``sql`` is an expression giving the value (a column, a json_extract)
    JSON_OBJECT = "json_object"  # a ``"prefix.*"`` entry: ``sql`` is TEXT holding a JSON object
    LINK = "link"  # a list of ids in a link table: ``sql`` is a subquery, ``element`` its column


@dataclass(frozen=True)
class Column:
    """How one public field (or ``prefix.*`` rule) maps to SQL. Build with the helpers below."""

    sql: str
    kind: ColumnKind = ColumnKind.SCALAR
    element: str = ""


ColumnMap: TypeAlias = Mapping[str, Column]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", re.ASCII)


def _identifier(text: str) -> str:
    # Column maps are written by hand, but a typo here would be SQL; refuse anything odd early.
    if not _IDENTIFIER.fullmatch(text):
        raise ValueError(f"not an SQL identifier: {text!r}")
    return text


def scalar(sql: str) -> Column:
    """A field stored in a column or given by any trusted SQL expression (``"t.name"``)."""
    return Column(sql)


def json_key(document: str, key: str) -> Column:
    """A key of a JSON object kept in a TEXT column: ``json_extract(t.doc, '$."key"')``."""
    if not CUSTOM_KEY.fullmatch(key):
        raise ValueError(f"not a valid JSON key for a query: {key!r}")
    # The pattern admits no quote or backslash, so quoting the key cannot be escaped from.
    return Column(f"json_extract({_identifier(document)}, '$.\"{key}\"')")


def json_object(document: str) -> Column:
    """The column behind a ``"prefix.*"`` rule: any key of the JSON object it holds."""
    return Column(_identifier(document), ColumnKind.JSON_OBJECT)


def link(table: str, *, owner: str, element: str, owner_key: str = "t.id") -> Column:
    """A list field kept as rows ``(owner, element)`` of a link table, e.g. continuations."""
    alias = "link_"  # scoped to the subquery, so several list terms never clash
    subquery = (
        f"SELECT 1 FROM {_identifier(table)} {alias} "
        f"WHERE {alias}.{_identifier(owner)} = {_identifier(owner_key)}"
    )
    return Column(subquery, ColumnKind.LINK, f"{alias}.{_identifier(element)}")


def resolve_column(name: str, columns: ColumnMap) -> Column:
    """The column for a public field name, following ``prefix.*`` rules like the parser."""
    column = columns.get(name)
    if column is not None and column.kind is not ColumnKind.JSON_OBJECT:
        return column
    prefixed = split_prefix(name, columns)
    if prefixed is not None and columns[prefixed[0]].kind is ColumnKind.JSON_OBJECT:
        return json_key(columns[prefixed[0]].sql, prefixed[1])
    # The parser already refused unknown names: this is a field list / column map mismatch.
    raise LookupError(f"no column for field {name!r}")


def compile_where(node: Node | None, columns: ColumnMap) -> tuple[str, list[Any]]:
    """A boolean SQL expression for ``node`` (``"1"`` for no filter) and its parameters.

    Use it positively (``WHERE``, ``AND``): a term can be NULL where ``matches`` says False,
    which is the same outcome there but not under ``NOT``.
    """
    params: list[Any] = []
    return ("1" if node is None else _compile(node, columns, params)), params


def _compile(node: Node, columns: ColumnMap, params: list[Any]) -> str:
    if isinstance(node, And | Or):
        if not node.terms:
            return "1" if isinstance(node, And) else "0"
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(_compile(term, columns, params) for term in node.terms) + ")"
    column = resolve_column(node.field, columns)
    if column.kind is ColumnKind.LINK:
        return _link_term(node, column, params)
    return _scalar_term(node, column.sql, params)


def _bind(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value  # booleans are stored as 0/1


def _placeholders(values: Sequence[Any], params: list[Any]) -> str:
    params.extend(_bind(value) for value in values)
    return ", ".join("?" * len(values))


_ORDERED_SQL = {Op.LT: "<", Op.LTE: "<=", Op.GT: ">", Op.GTE: ">="}


def _scalar_term(node: Compare, sql: str, params: list[Any]) -> str:
    op, value = node.op, node.value
    if op is Op.EXISTS:
        return f"{sql} IS NOT NULL" if value else f"{sql} IS NULL"
    if op in (Op.EQ, Op.NE) and value is None:
        return f"{sql} IS NULL" if op is Op.EQ else f"{sql} IS NOT NULL"
    if op is Op.EQ:
        params.append(_bind(value))
        return f"{sql} = ?"
    if op is Op.NE:
        params.append(_bind(value))
        return f"{sql} IS NOT ?"  # unlike !=, true for NULL: $ne matches missing values
    if op in _ORDERED_SQL:
        params.append(_bind(value))
        return f"{sql} {_ORDERED_SQL[op]} ?"
    present = [item for item in value if item is not None]
    with_null = len(present) != len(value)  # null in the list stands for "missing"
    if op is Op.IN:
        if not present:
            return f"{sql} IS NULL" if with_null else "0"
        listed = f"{sql} IN ({_placeholders(present, params)})"
        return f"({listed} OR {sql} IS NULL)" if with_null else listed
    # $nin: whatever is not listed, NULL included unless null is listed
    if not present:
        return f"{sql} IS NOT NULL" if with_null else "1"
    unlisted = f"{sql} NOT IN ({_placeholders(present, params)})"
    return f"({sql} IS NOT NULL AND {unlisted})" if with_null else f"({sql} IS NULL OR {unlisted})"


def _link_term(node: Compare, column: Column, params: list[Any]) -> str:
    op, value = node.op, node.value
    if op in (Op.EQ, Op.NE):
        params.append(value)
        test = f"EXISTS ({column.sql} AND {column.element} = ?)"
    elif op in (Op.IN, Op.NIN):
        if not value:
            return "0" if op is Op.IN else "1"
        test = f"EXISTS ({column.sql} AND {column.element} IN ({_placeholders(value, params)}))"
    else:
        raise ValueError(f"operator {op} is not supported on list field {node.field!r}")
    return test if op in (Op.EQ, Op.IN) else f"NOT {test}"


def compile_order(
    sort: tuple[tuple[str, int], ...], columns: ColumnMap, *, tiebreak: str = "t.id"
) -> str:
    """The body of ``ORDER BY``; always ends with ``tiebreak`` so pages are stable."""
    terms: list[str] = []
    for name, direction in sort:
        column = resolve_column(name, columns)
        if column.kind is ColumnKind.LINK or direction not in (1, -1):
            raise ValueError(f"cannot order by {name!r} {direction!r}")
        terms.append(f"{column.sql} {'ASC' if direction == 1 else 'DESC'}")
    if not any(term.rsplit(" ", 1)[0] == tiebreak for term in terms):
        # Ascending: FIFO among equals, as claims order (the indexes match it).
        terms.append(f"{tiebreak} ASC")
    return ", ".join(terms)
