"""The SQL compiler agrees with ``banyan.query.matches`` on a real SQLite table.

Thirty varied task rows live both as table rows (plain columns, JSON text, a link table) and as
the JSON-like documents the event feed filters; for random valid ``where`` documents the rows
``compile_where`` selects must be exactly the documents ``matches`` accepts.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from banyan.errors import BadRequest
from banyan.fields import TASK_FIELDS
from banyan.models import TaskCreate
from banyan.projection import parse_projection, parse_sort
from banyan.query import (
    Field,
    FieldKind,
    Node,
    Op,
    lookup,
    matches,
    parse_where,
    top_level_names,
)
from banyan.resources import Resources
from banyan.states import FAILURE, SUCCESS
from banyan.tokens import Caller, Role
from server.stores.base import Query
from server.stores.sqlite.querysql import (
    Column,
    ColumnKind,
    compile_order,
    compile_where,
    json_key,
    json_object,
    link,
    resolve_column,
    scalar,
)
from server.stores.sqlite.store import SqliteStore

K = FieldKind
FIELDS: dict[str, Field] = {
    "_id": Field(K.ID, nullable=False),
    "name": Field(K.STR),
    "command": Field(K.STR),
    "state": Field(K.STR, nullable=False),
    "queue": Field(K.STR, nullable=False),
    "priority": Field(K.INT, nullable=False),
    "max_retry_count": Field(K.INT, nullable=False),
    "retry_count": Field(K.INT, nullable=False),
    "pending_dependency_count": Field(K.INT, nullable=False),
    "owner": Field(K.STR, nullable=False),
    "cwd": Field(K.STR),
    "max_termination_time": Field(K.NUMBER, nullable=False),
    "estimated_runtime": Field(K.NUMBER),
    "cancel_requested": Field(K.BOOL),
    "requested_resources.cores": Field(K.NUMBER),
    "requested_resources.memory": Field(K.INT),
    "requested_resources.gpus": Field(K.INT),
    "requested_resources.*": Field(K.NUMBER),
    "continuations": Field(K.LIST, nullable=False, sortable=False),
    "execution.worker": Field(K.STR),
    "execution.exit_status": Field(K.STR),
    "execution.exit_code": Field(K.INT),
    "execution.time_started": Field(K.DATE),
    "_created": Field(K.DATE, nullable=False),
    "_updated": Field(K.DATE, nullable=False),
}

# Fields stored in a column of the same name.
PLAIN = [n for n in FIELDS if n.isidentifier() and n[0] != "_" and n != "continuations"]
COLUMNS: dict[str, Column] = {
    **{name: scalar(f"t.{name}") for name in PLAIN},
    "_id": scalar("t.id"),
    "requested_resources.cores": scalar("t.cores"),
    "requested_resources.memory": json_key("t.requested_resources", "memory"),
    "requested_resources.gpus": json_key("t.requested_resources", "gpus"),
    "requested_resources.*": json_object("t.requested_resources"),
    "continuations": link("continuations", owner="parent", element="child"),
    "execution.worker": scalar("t.worker"),
    "execution.exit_status": scalar("t.exit_status"),
    "execution.exit_code": scalar("t.exit_code"),
    "execution.time_started": scalar("t.time_started"),
    "_created": scalar("t.created"),
    "_updated": scalar("t.updated"),
}

SCHEMA = """
CREATE TABLE tasks (
    id TEXT PRIMARY KEY, name TEXT, command TEXT, state TEXT NOT NULL, queue TEXT NOT NULL,
    priority INTEGER NOT NULL, max_retry_count INTEGER NOT NULL, retry_count INTEGER NOT NULL,
    pending_dependency_count INTEGER NOT NULL, owner TEXT NOT NULL, cwd TEXT,
    max_termination_time REAL NOT NULL, estimated_runtime REAL, cancel_requested INTEGER,
    requested_resources TEXT NOT NULL, cores REAL NOT NULL,
    worker TEXT, exit_status TEXT, exit_code INTEGER, time_started REAL,
    created REAL NOT NULL, updated REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE continuations (
    parent TEXT NOT NULL, child TEXT NOT NULL, PRIMARY KEY (parent, child)
) WITHOUT ROWID;
"""

EVIL = "x'); DROP TABLE tasks; --"
BASE_TIME = 1_764_581_907.0  # 2025-12-01T09:38:27Z
IDS = [f"65a1b2c3d4e5f6{i:010x}" for i in range(30)]


def _make_docs() -> list[dict[str, Any]]:
    rng = random.Random(20261201)  # fixed: the table is part of the test's definition
    docs = []
    for i, task_id in enumerate(IDS):
        resources: dict[str, Any] = {"cores": rng.choice([0.5, 1, 2])}
        for key, pool in (
            ("memory", [1024, 2**30, 0]),
            ("gpus", [0, 1, 2]),
            ("licenses", [1, 2.5]),
            ("scratch.gb", [10, 0.25]),
        ):
            if rng.random() < 0.6:
                resources[key] = rng.choice(pool)
        execution = None
        if rng.random() < 0.7:
            execution = {
                "worker": rng.choice(["w1", "w2", None]),
                "exit_status": rng.choice([None, "success", "failure", "failure (SIGKILL)"]),
                "exit_code": rng.choice([None, 0, 1, 137]),
                "time_started": rng.choice([None, BASE_TIME + 0.5, BASE_TIME + 86400.25]),
            }
        created = BASE_TIME + i * 37.5
        docs.append(
            {
                "_id": task_id,
                "name": rng.choice([None, "task 1", "task 2", "build", "Build", "é", EVIL]),
                "command": rng.choice([None, "true", "sleep 1"]),
                "state": rng.choice(["inactive", "available", "running", "terminated"]),
                "queue": rng.choice(["default", "gpu", "io"]),
                "priority": rng.choice([-5, 0, 0, 1, 5, 10]),
                "max_retry_count": rng.randint(0, 3),
                "retry_count": rng.randint(0, 3),
                "pending_dependency_count": rng.randint(0, 2),
                "owner": rng.choice(["alice", "bob"]),
                "cwd": rng.choice([None, "/tmp", "/home/alice"]),
                "max_termination_time": rng.choice([600.0, 0.5, 30.0]),
                "estimated_runtime": rng.choice([None, 10.0, 3.5, 120.0]),
                "cancel_requested": rng.choice([None, True, False]),
                "requested_resources": resources,
                "continuations": sorted(
                    rng.sample([x for x in IDS if x != task_id], rng.randint(0, 3))
                ),
                "execution": execution,
                "_created": created,
                "_updated": created + rng.choice([0.0, 10.25]),
            }
        )
    return docs


DOCS = _make_docs()


def _row(doc: dict[str, Any]) -> dict[str, Any]:
    execution = doc["execution"] or {}
    flag = doc["cancel_requested"]
    return {
        **{k: doc[k] for k in PLAIN},
        "id": doc["_id"],
        "cancel_requested": None if flag is None else int(flag),
        "requested_resources": json.dumps(doc["requested_resources"]),
        "cores": doc["requested_resources"]["cores"],
        **{k: execution.get(k) for k in ("worker", "exit_status", "exit_code", "time_started")},
        "created": doc["_created"],
        "updated": doc["_updated"],
    }


@pytest.fixture(scope="module")
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    for doc in DOCS:
        row = _row(doc)
        names = ", ".join(row)
        conn.execute(
            f"INSERT INTO tasks ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values())
        )
        conn.executemany(
            "INSERT INTO continuations (parent, child) VALUES (?, ?)",
            [(doc["_id"], child) for child in doc["continuations"]],
        )
    yield conn
    conn.close()


def select(conn: sqlite3.Connection, node: Node | None) -> set[str]:
    sql, params = compile_where(node, COLUMNS)
    return {row[0] for row in conn.execute(f"SELECT t.id FROM tasks t WHERE {sql}", params)}


def accepted(node: Node | None) -> set[str]:
    return {doc["_id"] for doc in DOCS if matches(node, doc)}


# --- random where documents ----------------------------------------------------------------


def _pool(name: str) -> list[Any]:
    head, _, rest = name.partition(".")
    values: list[Any] = []
    for doc in DOCS:
        value = doc.get(name) if not rest else (doc.get(head) or {}).get(rest)
        values.extend(value if isinstance(value, list) else [value])
    return sorted({v for v in values if v is not None}, key=repr)


QUERY_NAMES = [name for name in FIELDS if not name.endswith("*")] + [
    "requested_resources.licenses",
    "requested_resources.scratch.gb",
    "requested_resources.absent",
]
INT64 = st.integers(-(2**63), 2**63 - 1)
GENERIC: dict[FieldKind, st.SearchStrategy[Any]] = {
    K.STR: st.text(max_size=4),
    K.INT: st.integers(-3, 12) | INT64,
    K.NUMBER: st.integers(-3, 12) | INT64 | st.floats(allow_nan=False, allow_infinity=False),
    K.BOOL: st.booleans(),
    K.ID: st.sampled_from(IDS) | st.from_regex(r"\A[0-9a-f]{24}\Z"),
    K.LIST: st.sampled_from(IDS),
    K.DATE: st.floats(BASE_TIME - 100, BASE_TIME + 100_000),
}


def _kind(name: str) -> Field:
    return FIELDS.get(name) or FIELDS["requested_resources.*"]


@st.composite
def _date_text(draw: st.DrawFn, epoch: float) -> Any:
    """One epoch time written the ways a client may write it."""
    moment = datetime.fromtimestamp(epoch, UTC)
    forms = [
        epoch,
        moment.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        moment.isoformat().replace("+00:00", "Z"),
        moment.replace(tzinfo=None).isoformat(),
        moment.astimezone(timezone(timedelta(hours=2))).isoformat(),
    ]
    return draw(st.sampled_from(forms))


def _value(name: str, *, null: bool) -> st.SearchStrategy[Any]:
    field = _kind(name)
    pool = _pool(name)
    values = GENERIC[field.kind]
    if pool:  # mostly values the table holds, so that queries select something
        values = st.one_of(*[st.sampled_from(pool)] * 3, values)
    if field.kind is K.DATE:
        values = values.flatmap(_date_text)
    if field.kind is K.ID:
        values = values | values.map(str.upper)
    if null and field.nullable and field.kind is not K.LIST:
        values = st.none() | values
    return values


@st.composite
def _condition(draw: st.DrawFn, name: str) -> Any:
    kind = _kind(name).kind
    ops = ["$eq", "$ne", "$in", "$nin"]
    ops += [] if kind is K.LIST else ["$exists"]
    ops += [] if kind in (K.LIST, K.BOOL) else ["$lt", "$lte", "$gt", "$gte"]
    if draw(st.booleans()):
        return draw(_value(name, null=True))  # implicit $eq
    chosen = draw(st.lists(st.sampled_from(ops), min_size=1, max_size=2, unique=True))
    condition: dict[str, Any] = {}
    for op in chosen:
        if op == "$exists":
            condition[op] = draw(st.booleans())
        elif op in ("$in", "$nin"):
            condition[op] = draw(st.lists(_value(name, null=True), max_size=4))
        else:
            condition[op] = draw(_value(name, null=op in ("$eq", "$ne")))
    return condition


@st.composite
def where_documents(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        key = draw(st.sampled_from(["field"] * 3 + (["$and", "$or"] if depth < 3 else [])))
        if key == "field":
            name = draw(st.sampled_from(QUERY_NAMES))
            document[name] = draw(_condition(name))
        else:
            document[key] = draw(st.lists(where_documents(depth + 1), min_size=1, max_size=3))
    return document


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where_documents())
def test_sql_selects_exactly_the_rows_matches_accepts(
    db: sqlite3.Connection, document: dict[str, Any]
) -> None:
    node = parse_where(json.dumps(document), FIELDS)
    assert select(db, node) == accepted(node)


# --- explicit cases ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [
        {"name": "task 1"},
        {"retry_count": {"$lt": 2}},
        {"name": None},
        {"name": {"$ne": "task 1"}},
        {"execution.exit_code": {"$nin": [0, None]}},
        {"execution.exit_code": {"$in": [None, 137]}},
        {"execution.worker": {"$exists": False}},
        {"requested_resources.memory": {"$gte": 1024}},
        {"requested_resources.scratch.gb": {"$exists": True}},
        {"requested_resources.licenses": {"$gt": 1}},
        {"cancel_requested": True},
        {"cancel_requested": {"$ne": False}},
        {"continuations": IDS[3]},
        {"continuations": {"$nin": IDS[:10]}},
        {"_created": {"$lt": "Mon, 01 Dec 2025 09:50:00 GMT"}},
        {"execution.time_started": {"$gt": "2025-12-01T09:38:27Z"}},
        {"$or": [{"state": "running", "queue": "gpu"}, {"priority": {"$gte": 5}}]},
    ],
)
def test_explicit_cases_select_something_and_agree(
    db: sqlite3.Connection, where: dict[str, Any]
) -> None:
    node = parse_where(where, FIELDS)
    rows = select(db, node)
    assert rows == accepted(node)
    assert 0 < len(rows) < len(DOCS)  # each case actually discriminates on this table


def test_sql_shapes_and_parameters() -> None:
    def compiled(where: dict[str, Any]) -> tuple[str, list[Any]]:
        return compile_where(parse_where(where, FIELDS), COLUMNS)

    assert compile_where(None, COLUMNS) == ("1", [])
    assert compiled({"name": {"$ne": "a"}}) == ("t.name IS NOT ?", ["a"])
    assert compiled({"name": None}) == ("t.name IS NULL", [])
    assert compiled({"name": {"$exists": True}}) == ("t.name IS NOT NULL", [])
    assert compiled({"name": {"$in": []}}) == ("0", [])
    assert compiled({"name": {"$nin": []}}) == ("1", [])
    assert compiled({"name": {"$nin": ["a", "b"]}}) == (
        "(t.name IS NULL OR t.name NOT IN (?, ?))",
        ["a", "b"],
    )
    assert compiled({"cancel_requested": True}) == ("t.cancel_requested = ?", [1])
    assert compiled({"_created": {"$gte": 5}}) == ("t.created >= ?", [5.0])
    assert compiled({"requested_resources.memory": 1}) == (
        "json_extract(t.requested_resources, '$.\"memory\"') = ?",
        [1],
    )
    sql, params = compiled({"continuations": {"$ne": IDS[0].upper()}})
    assert sql == (
        "NOT EXISTS (SELECT 1 FROM continuations link_ "
        "WHERE link_.parent = t.id AND link_.child = ?)"
    )
    assert params == [IDS[0]]


def test_a_malicious_value_is_only_a_bound_parameter(db: sqlite3.Connection) -> None:
    node = parse_where(json.dumps({"name": EVIL, "$or": [{"cwd": EVIL}, {"cwd": None}]}), FIELDS)
    sql, params = compile_where(node, COLUMNS)
    assert EVIL not in sql
    assert params == [EVIL, EVIL]
    assert select(db, node) == accepted(node)
    assert db.execute("SELECT count(*) FROM tasks").fetchone() == (len(DOCS),)


def test_column_helpers_refuse_what_could_break_out_of_the_sql() -> None:
    with pytest.raises(ValueError, match="not a valid JSON key"):
        json_key("t.requested_resources", "x'); DROP TABLE tasks; --")
    with pytest.raises(ValueError, match="not an SQL identifier"):
        json_object("t.requested_resources; DROP TABLE tasks")
    with pytest.raises(ValueError, match="not an SQL identifier"):
        link("continuations c", owner="parent", element="child")
    with pytest.raises(LookupError, match=r"no column for field 'requested_resources\.a b'"):
        resolve_column("requested_resources.a b", COLUMNS)
    with pytest.raises(LookupError, match="no column for field 'nope'"):
        resolve_column("nope", COLUMNS)
    custom = resolve_column("requested_resources.scratch.gb", COLUMNS)
    assert custom == Column("json_extract(t.requested_resources, '$.\"scratch.gb\"')")
    assert COLUMNS["continuations"].kind is ColumnKind.LINK


def test_order_always_ends_with_the_tiebreak() -> None:
    assert compile_order((), COLUMNS) == "t.id ASC"
    assert compile_order((("priority", -1),), COLUMNS) == "t.priority DESC, t.id ASC"
    assert compile_order((("priority", -1), ("_id", -1)), COLUMNS) == "t.priority DESC, t.id DESC"
    assert compile_order((("requested_resources.licenses", 1),), COLUMNS, tiebreak="t.created") == (
        "json_extract(t.requested_resources, '$.\"licenses\"') ASC, t.created ASC"
    )
    with pytest.raises(ValueError, match="cannot order by 'continuations'"):
        compile_order((("continuations", 1),), COLUMNS)
    with pytest.raises(ValueError, match="cannot order by 'priority' 2"):
        compile_order((("priority", 2),), COLUMNS)


def test_pages_are_stable_and_follow_the_sort(db: sqlite3.Connection) -> None:
    order = compile_order((("priority", -1), ("queue", 1)), COLUMNS)
    seen: list[str] = []
    for page in range(7):
        rows = db.execute(f"SELECT t.id FROM tasks t ORDER BY {order} LIMIT 5 OFFSET ?", [page * 5])
        seen.extend(row[0] for row in rows)
    expected = sorted(DOCS, key=lambda d: (-d["priority"], d["queue"], d["_id"]))
    assert seen == [doc["_id"] for doc in expected]


# --- hostile documents: a clean 400, or the same answer as matches() -----------------------
#
# The where documents above are valid by construction. These are not: random JSON in the
# shape of a query (field names, operators allowed and forbidden, values of every JSON type,
# numbers beyond 64 bits, NaN, dates, nesting), and random sort and projection texts. Each
# must either be refused with BadRequest (the 400 the views send) or be answered exactly as
# the pure-Python evaluation answers it; any other exception would be a 500.

HOSTILE_NAMES = [
    *QUERY_NAMES,
    "nope",
    "",
    "requested_resources",
    "execution",
    "continuations.x",
    "requested_resources.a b",
    "name.$eq",
    "_id.x",
]
HOSTILE_OPS = [op.value for op in Op] + ["$where", "$regex", "$not", "$elemMatch", "$", "eq"]
HOSTILE_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 12),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, -(10**30)]),
    st.floats(),  # NaN and infinities too: json.dumps writes NaN, Infinity
    st.text(max_size=6),
    st.sampled_from(["Mon, 01 Dec 2025 09:50:00 GMT", "2025-12-01T09:38:27Z", "2025-13-45", EVIL]),
    st.sampled_from([*IDS[:3], IDS[0].upper(), "g" * 24]),
)
hostile_values = st.recursive(
    HOSTILE_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(HOSTILE_NAMES + HOSTILE_OPS), inner, max_size=3)
    ),
    max_leaves=10,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document a value sits (the document itself included)."""
    out = [path]
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else []
    )
    for key, inner in items:
        out += _paths(inner, (*path, key))
    return out


@st.composite
def _mutated_where(draw: st.DrawFn) -> dict[str, Any]:
    """A valid where document with one value replaced, or one key added, by hostile input."""
    document = draw(where_documents())
    path = draw(st.sampled_from(_paths(document)[1:]))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()) or not isinstance(parent, dict):
        parent[path[-1]] = draw(HOSTILE_LEAVES | hostile_values)
    else:
        parent[draw(st.sampled_from(HOSTILE_NAMES + HOSTILE_OPS))] = draw(HOSTILE_LEAVES)
    return document


hostile_where = (
    st.dictionaries(st.sampled_from(HOSTILE_NAMES + HOSTILE_OPS), hostile_values, max_size=3)
    | _mutated_where()
    | _mutated_where()
)


def parsed_or_refused(parse: Any, *args: Any, **kwargs: Any) -> Any:
    """``parse(...)``, or ``None`` when it refused with a 400 that says why."""
    try:
        return parse(*args, **kwargs)
    except BadRequest as exc:
        assert exc.status == 400 and str(exc), exc
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_where)
def test_hostile_where_is_a_400_or_agrees_with_matches(
    db: sqlite3.Connection, document: dict[str, Any]
) -> None:
    text = json.dumps(document)
    node = parsed_or_refused(parse_where, text, FIELDS)
    if node is not None:
        assert select(db, node) == accepted(node), text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40) | hostile_where.map(lambda d: json.dumps(d)[: len(json.dumps(d)) // 2]))
def test_where_text_that_is_not_json_is_a_400(db: sqlite3.Connection, text: str) -> None:
    node = parsed_or_refused(parse_where, text, FIELDS)
    if node is not None:
        assert select(db, node) == accepted(node), text


SORT_NAMES = [n for n in HOSTILE_NAMES if n not in ("name.$eq",)] + ["-priority", " name"]
sort_items = st.tuples(
    st.sampled_from(SORT_NAMES), st.sampled_from([1, -1, 1, -1, 0, 2, True, 1.0, "1"])
)


@st.composite
def sort_texts(draw: st.DrawFn) -> str:
    items = draw(st.lists(sort_items, max_size=4))
    form = draw(st.sampled_from(["tuples", "lists", "comma", "text"]))
    if form == "tuples":
        return repr(items)
    if form == "lists":
        return json.dumps([list(item) for item in items])
    if form == "comma":
        return ",".join(("-" if d == -1 else "") + name for name, d in items)
    return draw(st.text(alphabet="[]()\"', -_aeimnoprty1", max_size=30))


def _sort_value(doc: dict[str, Any], name: str) -> Any:
    head, _, rest = name.partition(".")
    return doc.get(name) if not rest else (doc.get(head) or {}).get(rest)


def python_order(keys: tuple[tuple[str, int], ...]) -> list[str]:
    """SQLite's order, computed in Python: NULL below every value, ties by ``_id``."""
    docs = sorted(DOCS, key=lambda d: d["_id"])
    for name, direction in reversed(keys):
        docs.sort(
            key=lambda d, n=name: (_sort_value(d, n) is not None, _sort_value(d, n) or 0),
            reverse=direction == -1,
        )
    return [d["_id"] for d in docs]


@settings(max_examples=300, deadline=None)
@given(sort_texts(), st.integers(1, 7), st.integers(1, 8))
def test_sort_is_a_400_or_the_order_python_computes(
    db: sqlite3.Connection, text: str, page: int, per_page: int
) -> None:
    keys = parsed_or_refused(parse_sort, text, FIELDS)
    if keys is None:
        return
    order = compile_order(keys, COLUMNS)  # parse_sort accepted it: compiling may not fail
    rows = db.execute(
        f"SELECT t.id FROM tasks t ORDER BY {order} LIMIT ? OFFSET ?",
        [per_page, (page - 1) * per_page],
    )
    expected = python_order(keys)
    assert [r[0] for r in rows] == expected[(page - 1) * per_page : page * per_page], (text, keys)


PROJECTION_NAMES = [*sorted(top_level_names(FIELDS)), "nope", "execution.worker", "", "_etag"]


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(PROJECTION_NAMES),
        st.sampled_from([0, 1, 1, 0, True, False, 1.0, "1", None, 2, -1]),
        max_size=4,
    )
)
@example({"_id": 1, "_created": 0})  # an exclusion: _id does not make it an inclusion
@example({"_id": 1})
def test_projection_is_a_400_or_exactly_what_it_names(document: dict[str, Any]) -> None:
    projection = parsed_or_refused(parse_projection, json.dumps(document), FIELDS)
    valid_names = top_level_names(FIELDS) | {"_id"}
    flags = {k: v for k, v in document.items() if k != "_id"}
    well_formed = all(k in valid_names for k in document) and all(
        type(v) in (int, bool) and v in (0, 1) for v in document.values()
    )
    mixed = {bool(v) for v in flags.values()} == {True, False}
    assert (projection is not None) == (well_formed and not mixed), document
    if projection is None:
        return
    # MongoDB's rule: _id never decides whether a projection includes or excludes, unless it is
    # the only name. So {"_id": 1, "x": 0} excludes x, and {"_id": 1} alone shows only _id.
    included = {k for k, v in flags.items() if v}
    excluded = {k for k, v in flags.items() if not v}
    only_id = not flags and bool(document.get("_id"))
    for doc in DOCS:
        shown = projection.apply(doc)
        if included or only_id:
            assert set(shown) == {"_id"} | (included & set(doc)), document
        else:
            assert set(shown) == {"_id"} | (set(doc) - excluded), document
        assert all(shown[k] == doc[k] for k in shown)


# --- the production column map, on the real store ------------------------------------------
#
# The tests above use this file's own table. This one runs random where/sort/page queries
# through SqliteStore.find_tasks (the real schema and server/sqlite/sqlquery.py's column map,
# TASK_FIELDS' whitelist) and compares with matches() over the documents get_task returns.


def _store_tasks() -> list[TaskCreate]:
    rng = random.Random(6)
    out = []
    for i in range(24):
        resources: dict[str, Any] = {"cores": rng.choice([0.5, 1, 2])}
        if rng.random() < 0.5:
            resources["memory"] = rng.choice(["1 GiB", 1024, 0])
        if rng.random() < 0.3:
            resources["gpus"] = rng.choice([1, [{"memory": "8 GiB"}], [{}, {}]])
        if rng.random() < 0.4:
            resources[rng.choice(["licenses", "scratch.gb"])] = rng.choice([1, 2.5])
        out.append(
            TaskCreate.model_validate(
                {
                    "name": rng.choice([None, "task 1", "build", "é", EVIL]),
                    "command": rng.choice([None, "true", "true"]),
                    "state": rng.choice(["inactive", "available", "available"]),
                    "queue": rng.choice(["default", "gpu"]),
                    "priority": rng.choice([-1, 0, 3]),
                    "max_retry_count": rng.randint(0, 2),
                    "estimated_runtime": rng.choice([None, 10, "2 minutes"]),
                    "env": rng.choice([None, {"A": "1"}, {"A": "2", "B": ""}]),
                    "cwd": rng.choice([None, "/tmp"]),
                    "requested_resources": resources,
                    "_id": f"{i + 1:024x}",
                    "continuations": [
                        f"{j:024x}" for j in (i + 2, i + 3) if j <= 24 and i % 4 == 0
                    ],
                }
            )
        )
    return out


def _as_queried(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as where sees it: ``requested_resources.gpus`` (an INT field) is the
    GPU count also when the task asked for a list of GPU specs."""
    gpus = doc["requested_resources"].get("gpus")
    if isinstance(gpus, list):
        doc["requested_resources"] = {**doc["requested_resources"], "gpus": len(gpus)}
    return doc


@pytest.fixture(scope="module")
def real_store(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    loop = asyncio.new_event_loop()
    store = SqliteStore(tmp_path_factory.mktemp("query") / "store.db")

    async def populate() -> list[dict[str, Any]]:
        await store.open()
        await store.create_tasks(_store_tasks(), Caller("alice", Role.PROVIDER))
        big = Resources(cores=64, memory=2**40, gpus=8)
        claimed = await store.claim(
            worker="w1", token="w1", free=big, queues=["default", "gpu"], limit=6
        )
        for attempt, status in zip(claimed, [SUCCESS, FAILURE, SUCCESS, FAILURE], strict=False):
            await store.finish(
                attempt["task"],
                attempt["execution_key"],
                exit_status=status,
                exit_code=0 if status == SUCCESS else 1,
                usage=None,
                caller=Caller("w1", Role.WORKER),
            )
        page = await store.find_tasks(Query(max_results=1000))
        return [_as_queried(await store.get_task(doc["_id"])) for doc in page.items]

    docs = loop.run_until_complete(populate())
    yield loop, store, docs
    loop.run_until_complete(store.close())
    loop.close()


def _doc_values(docs: list[dict[str, Any]], name: str) -> list[Any]:
    values = []
    for doc in docs:
        value = lookup(doc, name)
        values.extend(value if isinstance(value, list) else [value])
    return sorted({json.dumps(v) for v in values if v is not None and not isinstance(v, dict)})


@st.composite
def store_where(draw: st.DrawFn, docs: list[dict[str, Any]]) -> dict[str, Any]:
    names = [n for n in TASK_FIELDS if not n.endswith("*")]
    names += ["requested_resources.licenses", "requested_resources.scratch.gb", "env.A", "env.B"]
    document: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(names))
        pool = [json.loads(v) for v in _doc_values(docs, name)]
        values = st.sampled_from(pool) if pool else HOSTILE_LEAVES
        value = draw(HOSTILE_LEAVES if draw(st.integers(0, 9)) == 0 else values)
        op = draw(st.sampled_from(["$eq", "$ne", "$lt", "$gte", "$in", "$nin", "$exists", None]))
        if op is None:
            document[name] = value
        elif op in ("$in", "$nin"):
            document[name] = {op: [value, draw(values)]}
        else:
            document[name] = {op: draw(st.booleans()) if op == "$exists" else value}
    if draw(st.booleans()):
        return {"$or": [document, draw(store_where(docs))]} if len(document) < 3 else document
    return document


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_real_store_queries_agree_with_matches(
    real_store: tuple[Any, Any, list[dict[str, Any]]], data: st.DataObject
) -> None:
    loop, store, docs = real_store
    document = data.draw(store_where(docs))
    node = parsed_or_refused(parse_where, json.dumps(document), TASK_FIELDS)
    if node is None and document:
        return
    sort = parsed_or_refused(parse_sort, data.draw(sort_texts()), TASK_FIELDS) or ()
    page = loop.run_until_complete(store.find_tasks(Query(where=node, sort=sort, max_results=1000)))
    wanted = {doc["_id"] for doc in docs if matches(node, doc)}
    assert {doc["_id"] for doc in page.items} == wanted, (document, sort)
    assert page.total == len(wanted)


# Found by test_real_store_queries_agree_with_matches: a group task that succeeded is
# shown with execution.attempt 0, but the column was nullif(attempt, 0), so
# {"execution.attempt": null} found it and {"execution.attempt": 0} did not.
async def test_execution_attempt_queries_what_the_document_shows(store: SqliteStore) -> None:
    alice = Caller("alice", Role.PROVIDER)
    group, waiting = (f"{i:024x}" for i in (1, 2))
    await store.create_tasks(
        [TaskCreate.model_validate({"_id": group, "state": "available"})], alice
    )
    await store.create_tasks([TaskCreate.model_validate({"_id": waiting, "command": "x"})], alice)
    assert (await store.get_task(group))["execution"]["attempt"] == 0
    assert (await store.get_task(waiting))["execution"] is None

    async def ids(where: dict[str, Any]) -> list[str]:
        node = parse_where(where, TASK_FIELDS)
        return [d["_id"] for d in (await store.find_tasks(Query(where=node))).items]

    assert await ids({"execution.attempt": 0}) == [group]
    assert await ids({"execution.attempt": None}) == [waiting]
    assert await ids({"execution.attempt": {"$exists": True}}) == [group]
