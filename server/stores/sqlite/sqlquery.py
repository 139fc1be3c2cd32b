"""How each collection's public fields map to SQL, and the paged SELECT/COUNT
pair a collection request runs."""

from __future__ import annotations

from typing import Any

from server.stores.base import Query
from server.stores.columns import MEMORY_COLUMNS as MEMORY_COLUMNS  # re-exported
from server.stores.columns import TASK_QUERY_COLUMNS as TASK_QUERY_COLUMNS
from server.stores.querysql import ColumnMap, compile_order, compile_where


def page_sql(
    query: Query, column_map: ColumnMap, *, table: str, columns: str
) -> tuple[str, str, list[Any]]:
    """``(select, count, params)``; ``count`` takes ``params[:-2]`` (no LIMIT/OFFSET)."""
    where, params = compile_where(query.where, column_map)
    order = compile_order(query.sort, column_map, tiebreak="t.id")
    select_cols = ", ".join(f"t.{c.strip()}" for c in columns.split(","))
    select = f"SELECT {select_cols} FROM {table} t WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
    count = f"SELECT count(*) FROM {table} t WHERE {where}"
    offset = (query.page - 1) * query.max_results
    return select, count, [*params, query.max_results, offset]
