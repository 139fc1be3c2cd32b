"""Compile ``banyan.query`` ASTs to parameterised SQL, for every SQL backend:
a :class:`Dialect` says how it spells truth, "is not" and a key of a JSON
object (SQLite: ``json_extract`` on TEXT; PostgreSQL: ``->`` on ``jsonb``).
The placeholders are ``?`` in both; the PostgreSQL store numbers them.

A store describes once, by hand, how each public field maps to SQL (a ``ColumnMap``); only
that trusted text and ``?`` placeholders ever reach the SQL, every value is a bound parameter.
The semantics are those of ``banyan.query.matches`` (Mongo's: ``$ne``/``$nin`` match missing
values, comparisons with NULL are false, list fields mean "contains");
``tests/store/test_querysql.py`` checks the two agree on random queries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
    # A key of a JSON object, bound as the dialect binds JSON (implied by ``sql``).
    json: bool = field(default=False, compare=False)


def _sqlite_json_key(document: str, key: str) -> str:
    return f"json_extract({document}, '$.\"{key}\"')"


@dataclass(frozen=True)
class Dialect:
    """How one SQL backend spells what the compiler writes."""

    true: str = "1"
    false: str = "0"
    is_not: str = "IS NOT"  # true when the sides differ, NULL included
    json_key: Callable[[str, str], str] = _sqlite_json_key
    # How a value compared with a JSON key is bound, and its placeholder.
    json_param: Callable[[Any], Any] | None = None
    json_placeholder: str = "?"
    # Where NULLs go in a sort: SQLite's (NULL is the smallest value) for every dialect.
    nulls_asc: str = ""
    nulls_desc: str = ""


SQLITE = Dialect()
POSTGRES = Dialect(
    true="TRUE",
    false="FALSE",
    is_not="IS DISTINCT FROM",
    # JSON null reads as missing, as json_extract gives NULL for it.
    json_key=lambda document, key: f"nullif({document} -> '{key}', 'null'::jsonb)",
    json_param=lambda value: json.dumps(value),
    json_placeholder="?::jsonb",
    nulls_asc=" NULLS FIRST",
    nulls_desc=" NULLS LAST",
)


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


def json_key(document: str, key: str, dialect: Dialect = SQLITE) -> Column:
    """A key of a JSON object kept in a column: ``json_extract(t.doc, '$."key"')`` on SQLite."""
    if not CUSTOM_KEY.fullmatch(key):
        raise ValueError(f"not a valid JSON key for a query: {key!r}")
    # The pattern admits no quote or backslash, so quoting the key cannot be escaped from.
    return Column(dialect.json_key(_identifier(document), key), json=True)


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


def resolve_column(name: str, columns: ColumnMap, dialect: Dialect = SQLITE) -> Column:
    """The column for a public field name, following ``prefix.*`` rules like the parser."""
    column = columns.get(name)
    if column is not None and column.kind is not ColumnKind.JSON_OBJECT:
        return column
    prefixed = split_prefix(name, columns)
    if prefixed is not None and columns[prefixed[0]].kind is ColumnKind.JSON_OBJECT:
        return json_key(columns[prefixed[0]].sql, prefixed[1], dialect)
    # The parser already refused unknown names: this is a field list / column map mismatch.
    raise LookupError(f"no column for field {name!r}")


def compile_where(
    node: Node | None, columns: ColumnMap, dialect: Dialect = SQLITE
) -> tuple[str, list[Any]]:
    """A boolean SQL expression for ``node`` (``"1"`` for no filter) and its parameters.

    Use it positively (``WHERE``, ``AND``): a term can be NULL where ``matches`` says False,
    which is the same outcome there but not under ``NOT``.
    """
    params: list[Any] = []
    if node is None:
        return dialect.true, params
    return _compile(node, columns, params, dialect), params


def _compile(node: Node, columns: ColumnMap, params: list[Any], dialect: Dialect) -> str:
    if isinstance(node, And | Or):
        if not node.terms:
            return dialect.true if isinstance(node, And) else dialect.false
        joiner = " AND " if isinstance(node, And) else " OR "
        terms = (_compile(term, columns, params, dialect) for term in node.terms)
        return "(" + joiner.join(terms) + ")"
    column = resolve_column(node.field, columns, dialect)
    if column.kind is ColumnKind.LINK:
        return _link_term(node, column, params, dialect)
    return _Terms(column, params, dialect).term(node)


def _bind(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value  # booleans are stored as 0/1


def _placeholders(values: Sequence[Any], params: list[Any]) -> str:
    params.extend(_bind(value) for value in values)
    return ", ".join("?" * len(values))


_ORDERED_SQL = {Op.LT: "<", Op.LTE: "<=", Op.GT: ">", Op.GTE: ">="}


class _Terms:
    """The terms on one scalar column (a JSON key binds its values as the dialect says)."""

    def __init__(self, column: Column, params: list[Any], dialect: Dialect) -> None:
        self.sql, self.params, self.dialect = column.sql, params, dialect
        self.json = column.json and dialect.json_param is not None

    def bind(self, value: Any) -> str:
        if self.json:
            assert self.dialect.json_param is not None
            self.params.append(self.dialect.json_param(value))
            return self.dialect.json_placeholder
        self.params.append(_bind(value))
        return "?"

    def listed(self, values: Sequence[Any]) -> str:
        return ", ".join(self.bind(value) for value in values)

    def term(self, node: Compare) -> str:
        op, value, sql, d = node.op, node.value, self.sql, self.dialect
        if op is Op.EXISTS:
            return f"{sql} IS NOT NULL" if value else f"{sql} IS NULL"
        if op in (Op.EQ, Op.NE) and value is None:
            return f"{sql} IS NULL" if op is Op.EQ else f"{sql} IS NOT NULL"
        if op is Op.EQ:
            return f"{sql} = {self.bind(value)}"
        if op is Op.NE:
            # unlike !=, true for NULL: $ne matches missing values
            return f"{sql} {d.is_not} {self.bind(value)}"
        if op in _ORDERED_SQL:
            return f"{sql} {_ORDERED_SQL[op]} {self.bind(value)}"
        present = [item for item in value if item is not None]
        with_null = len(present) != len(value)  # null in the list stands for "missing"
        if op is Op.IN:
            if not present:
                return f"{sql} IS NULL" if with_null else d.false
            listed = f"{sql} IN ({self.listed(present)})"
            return f"({listed} OR {sql} IS NULL)" if with_null else listed
        # $nin: whatever is not listed, NULL included unless null is listed
        if not present:
            return f"{sql} IS NOT NULL" if with_null else d.true
        unlisted = f"{sql} NOT IN ({self.listed(present)})"
        if with_null:
            return f"({sql} IS NOT NULL AND {unlisted})"
        return f"({sql} IS NULL OR {unlisted})"


def _link_term(node: Compare, column: Column, params: list[Any], dialect: Dialect) -> str:
    op, value = node.op, node.value
    if op in (Op.EQ, Op.NE):
        params.append(value)
        test = f"EXISTS ({column.sql} AND {column.element} = ?)"
    elif op in (Op.IN, Op.NIN):
        if not value:
            return dialect.false if op is Op.IN else dialect.true
        test = f"EXISTS ({column.sql} AND {column.element} IN ({_placeholders(value, params)}))"
    else:
        raise ValueError(f"operator {op} is not supported on list field {node.field!r}")
    return test if op in (Op.EQ, Op.IN) else f"NOT {test}"


def compile_order(
    sort: tuple[tuple[str, int], ...],
    columns: ColumnMap,
    *,
    tiebreak: str = "t.id",
    dialect: Dialect = SQLITE,
) -> str:
    """The body of ``ORDER BY``; always ends with ``tiebreak`` so pages are stable."""
    terms: list[str] = []
    ordered: list[str] = []
    for name, direction in sort:
        column = resolve_column(name, columns, dialect)
        if column.kind is ColumnKind.LINK or direction not in (1, -1):
            raise ValueError(f"cannot order by {name!r} {direction!r}")
        ordered.append(column.sql)
        way = "ASC" if direction == 1 else "DESC"
        if column.sql != tiebreak:  # the key is never NULL: plain, so its index serves
            way += dialect.nulls_asc if direction == 1 else dialect.nulls_desc
        terms.append(f"{column.sql} {way}")
    if tiebreak not in ordered:
        # Ascending: FIFO among equals, as claims order (the indexes match it).
        terms.append(f"{tiebreak} ASC")
    return ", ".join(terms)
