"""The query compiler, shared by the SQL backends since the PostgreSQL store
(``server.stores.querysql``); kept here under its old name for SQLite code
and tests."""

from server.stores.querysql import (
    SQLITE,
    Column,
    ColumnKind,
    ColumnMap,
    Dialect,
    compile_order,
    compile_where,
    json_key,
    json_object,
    link,
    resolve_column,
    scalar,
)

__all__ = [
    "SQLITE",
    "Column",
    "ColumnKind",
    "ColumnMap",
    "Dialect",
    "compile_order",
    "compile_where",
    "json_key",
    "json_object",
    "link",
    "resolve_column",
    "scalar",
]
