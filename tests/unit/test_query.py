"""The query language: ``where`` parsing and evaluation, projection, sort and paging."""

from __future__ import annotations

import calendar
from typing import Any

import pytest

from banyan.errors import BadRequest
from banyan.projection import (
    MAX_PAGE,
    Projection,
    parse_max_results,
    parse_page,
    parse_projection,
    parse_sort,
)
from banyan.query import And, Compare, Field, FieldKind, Op, Or, matches, parse_where

K = FieldKind
TASK_FIELDS: dict[str, Field] = {
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

ID_A = "65a1b2c3d4e5f60718293a4b"
ID_B = "65a1b2c3d4e5f60718293a4c"
DEC_1 = float(calendar.timegm((2026, 12, 1, 9, 38, 27)))


def where(value: Any, **limits: int) -> Any:
    return parse_where(value, TASK_FIELDS, **limits)


def rejects(value: Any, fragment: str, **limits: int) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_where(value, TASK_FIELDS, **limits)
    assert fragment in caught.value.message
    assert caught.value.status == 400


# --- accepted forms ------------------------------------------------------------------------


@pytest.mark.parametrize("empty", [None, "", "   ", "{}", {}])
def test_no_filter(empty: Any) -> None:
    assert where(empty) is None


def test_implicit_eq_from_text_and_from_object() -> None:
    expected = Compare("name", Op.EQ, "task 1")
    assert where('{"name": "task 1"}') == expected
    assert where({"name": "task 1"}) == expected


def test_several_keys_are_and() -> None:
    assert where({"state": "running", "queue": "gpu"}) == And(
        (Compare("state", Op.EQ, "running"), Compare("queue", Op.EQ, "gpu"))
    )


def test_operators_and_a_range() -> None:
    assert where('{"retry_count": {"$lt": 10}}') == Compare("retry_count", Op.LT, 10)
    assert where({"priority": {"$gt": 1, "$lte": 5}}) == And(
        (Compare("priority", Op.GT, 1), Compare("priority", Op.LTE, 5))
    )
    for op in ("$eq", "$ne", "$lt", "$lte", "$gt", "$gte"):
        assert where({"priority": {op: 3}}) == Compare("priority", Op(op), 3)


def test_and_or_nest() -> None:
    parsed = where({"$or": [{"state": "running"}, {"$and": [{"priority": 1}, {"queue": "q"}]}]})
    assert parsed == Or(
        (
            Compare("state", Op.EQ, "running"),
            And((Compare("priority", Op.EQ, 1), Compare("queue", Op.EQ, "q"))),
        )
    )
    # one alternative is just that alternative
    assert where({"$or": [{"state": "running"}]}) == Compare("state", Op.EQ, "running")


def test_in_nin_exists_and_null() -> None:
    assert where({"state": {"$in": ["a", "b", "a"]}}) == Compare("state", Op.IN, ("a", "b"))
    assert where({"name": {"$nin": [None, "x"]}}) == Compare("name", Op.NIN, (None, "x"))
    assert where({"state": {"$in": []}}) == Compare("state", Op.IN, ())
    assert where({"command": {"$exists": False}}) == Compare("command", Op.EXISTS, False)
    assert where('{"command": null}') == Compare("command", Op.EQ, None)
    assert where({"command": {"$ne": None}}) == Compare("command", Op.NE, None)


def test_dotted_and_custom_resource_paths() -> None:
    assert where({"requested_resources.memory": {"$gte": 1024}}) == Compare(
        "requested_resources.memory", Op.GTE, 1024
    )
    assert where({"execution.exit_status": "success"}).field == "execution.exit_status"
    assert where({"requested_resources.licenses": 2.5}).value == 2.5
    assert where({"requested_resources.scratch.gb": 1}).field == "requested_resources.scratch.gb"


def test_ids_and_lists_lowercase_their_ids() -> None:
    assert where({"_id": ID_A.upper()}) == Compare("_id", Op.EQ, ID_A)
    assert where({"continuations": ID_B}) == Compare("continuations", Op.EQ, ID_B)
    assert where({"continuations": {"$nin": [ID_A.upper()]}}).value == (ID_A,)


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("Tue, 01 Dec 2026 09:38:27 GMT", DEC_1),
        ("2026-12-01T09:38:27Z", DEC_1),
        ("2026-12-01T09:38:27", DEC_1),  # naive means UTC
        ("2026-12-01T11:38:27+02:00", DEC_1),
        ("2026-12-01T09:38:27.250Z", DEC_1 + 0.25),
        ("2026-12-01", DEC_1 - (9 * 3600 + 38 * 60 + 27)),
        (DEC_1, DEC_1),
        (int(DEC_1), DEC_1),
    ],
)
def test_dates_become_epoch_seconds(text: Any, epoch: float) -> None:
    parsed = where({"_created": {"$gte": text}})
    assert parsed.value == epoch
    assert isinstance(parsed.value, float)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_termination_time", 5),
        ("max_termination_time", 0.5),
        ("cancel_requested", True),
        ("requested_resources.cores", 2),
    ],
)
def test_values_of_the_right_type_pass_unchanged(field: str, value: Any) -> None:
    assert where({field: value}).value == value


# --- rejected forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('{"nme": 1}', "unknown field 'nme' in where; did you mean 'name'?"),
        ({"requested_resources": {"memory": 1}}, "use a dotted path such as"),
        ({"execution": None}, "cannot be compared as a whole"),
        ({"requested_resources.bad key": 1}, "unknown field 'requested_resources.bad key'"),
        ({"requested_resources.*": 1}, "unknown field"),
        ({"requested_resources.": 1}, "unknown field"),
        ({"execution.nope": 1}, "unknown field 'execution.nope'"),
    ],
)
def test_unknown_fields(value: Any, fragment: str) -> None:
    rejects(value, fragment)


@pytest.mark.parametrize("op", ["$where", "$regex", "$text", "$expr"])
def test_dangerous_operators_are_named(op: str) -> None:
    rejects({op: "sleep(1000)"}, f"operator {op} is not allowed")
    rejects({"name": {op: ".*"}}, f"operator {op} is not allowed")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"name": {"$foo": 1}}, "unknown operator '$foo' for field 'name'"),
        ({"name": {"$not": {"$eq": 1}}}, "unknown operator '$not'"),
        ({"$nor": [{"name": "x"}]}, "unknown operator '$nor' at the top level"),
        ({"$eq": 1}, "operator $eq cannot be used at the top level"),
        ({"name": {"$or": []}}, "operator $or cannot be applied to field 'name'"),
        (
            {"cancel_requested": {"$lt": True}},
            "operator $lt cannot be used on 'cancel_requested', a boolean",
        ),
        (
            {"continuations": {"$gte": ID_A}},
            "operator $gte cannot be used on 'continuations', a list of ids",
        ),
        ({"continuations": {"$exists": True}}, "$exists cannot be used on list field"),
        ({"command": {"$exists": 1}}, "$exists on 'command' expects true or false"),
        ({"state": {"$in": "running"}}, "$in on 'state' expects a list"),
        ({"state": {"$nin": {"a": 1}}}, "$nin on 'state' expects a list"),
        ({"$and": {"name": "x"}}, "$and takes a non-empty list"),
        ({"$or": []}, "$or takes a non-empty list"),
        ({"$or": ["x"]}, "$or takes a list of documents"),
        ({"$and": [{}]}, "$and contains an empty document"),
        ({"name": {}}, "field 'name' has an empty operator document"),
        ({"name": {"first": "x"}}, "cannot be matched against an object"),
        ({"name": {"$eq": "x", "first": "x"}}, "cannot be matched against an object"),
        ({"state": None}, "field 'state' is never null"),
        ({"continuations": None}, "field 'continuations' is never null"),
        ({"priority": {"$in": [1, None]}}, "field 'priority' is never null"),
        ({"retry_count": {"$lt": None}}, "$lt on 'retry_count' needs a value, not null"),
        ({1: "x"}, "where keys must be strings"),
    ],
)
def test_malformed_queries(value: Any, fragment: str) -> None:
    rejects(value, fragment)


@pytest.mark.parametrize("value", ["[1]", "5", '"name"', "null", "true", [{"name": "x"}]])
def test_where_must_be_an_object(value: Any) -> None:
    rejects(value, "where must be a JSON object")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{name: 1}", "where is not valid JSON"),
        ('{"name": "x"', "where is not valid JSON"),
        ('{"estimated_runtime": NaN}', "NaN is not a JSON number"),
        ('{"estimated_runtime": {"$gt": -Infinity}}', "-Infinity is not a JSON number"),
        ('{"name": "x", "name": "y"}', "where has the key 'name' twice"),
        ("[" * 100_000, "where is nested too deeply"),
    ],
)
def test_bad_json(text: str, fragment: str) -> None:
    rejects(text, fragment)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("priority", 1.5, "expects an integer"),
        ("priority", True, "expects an integer"),
        ("priority", "1", "expects an integer"),
        ("priority", 2**63, "expects an integer"),
        ("max_termination_time", False, "expects a number"),
        ("max_termination_time", float("nan"), "expects a number"),
        ("max_termination_time", float("inf"), "expects a number"),
        ("requested_resources.licenses", "2", "expects a number"),
        ("cancel_requested", 1, "expects true or false"),
        ("name", 5, "expects a string"),
        ("name", ["a"], "expects a string"),
        ("name", "\ud800", "got a string that is not valid Unicode"),
        ("_id", "65a1b2", "expects a 24-hex id"),
        ("_id", "z" * 24, "expects a 24-hex id"),
        ("continuations", [ID_A], "expects a 24-hex id"),
        ("_created", "yesterday", "expects a date"),
        ("_created", "Tue, 31 Feb 2026 09:38:27 GMT", "expects a date"),
        ("_created", "Tue, 01 Dec 2026 09:38:27 UTC", "expects a date"),
        ("_created", True, "expects a date"),
    ],
)
def test_wrong_types_name_field_and_type(field: str, value: Any, expected: str) -> None:
    rejects({field: value}, f"field {field!r} {expected}")


def test_limits() -> None:
    rejects({"priority": 1, "queue": "q", "state": "s"}, "too many terms (at most 2)", max_terms=2)
    nested: dict[str, Any] = {"name": "x"}
    for _ in range(8):
        nested = {"$and": [nested]}
    rejects(nested, "nested too deeply (at most 8 levels)")
    assert where(nested, max_depth=9) == Compare("name", Op.EQ, "x")
    rejects({"state": {"$in": ["a"] * 4}}, "has 4 values (at most 3)", max_list=3)
    assert where({"state": {"$in": ["a"] * 3}}, max_list=3) is not None
    many = {"$or": [{"state": {"$in": [str(i) for i in range(50)]}} for _ in range(3)]}
    rejects(many, "too many values (at most 120 in total)", max_values=120)


# --- matches -------------------------------------------------------------------------------

DOC: dict[str, Any] = {
    "_id": ID_A,
    "name": "task 1",
    "command": None,
    "state": "running",
    "priority": 5,
    "retry_count": 1,
    "requested_resources": {"cores": 0.5, "memory": 1024, "scratch.gb": 3},
    "continuations": [ID_B],
    "execution": {"worker": "w1", "exit_code": None, "time_started": DEC_1},
    "_created": DEC_1 - 60,
}


def check(query: Any, doc: dict[str, Any] = DOC) -> bool:
    return matches(where(query), doc)


def test_matches_plain_values() -> None:
    assert check(None) and check({})
    assert check({"name": "task 1"}) and not check({"name": "task 2"})
    assert check({"priority": {"$gt": 4, "$lte": 5}}) and not check({"priority": {"$lt": 5}})
    assert check({"requested_resources.memory": 1024})
    assert check({"requested_resources.scratch.gb": {"$gte": 3}})
    assert check({"execution.time_started": "Tue, 01 Dec 2026 09:38:27 GMT"})
    assert check({"_created": {"$lt": "2026-12-01T09:38:27Z"}})
    assert check({"state": {"$in": ["running", "available"]}})
    assert not check({"state": {"$nin": ["running"]}})


def test_matches_missing_and_null_like_mongo() -> None:
    # command is null, cwd is absent, exit_code is null in a sub-object, gpus is an absent key
    samples = {"command": "x", "cwd": "x", "execution.exit_code": 7, "requested_resources.gpus": 7}
    for field, sample in samples.items():
        assert check({field: None})
        assert check({field: {"$exists": False}})
        assert not check({field: {"$exists": True}})
        assert check({field: {"$ne": sample}})
        assert check({field: {"$nin": [sample]}})
        assert not check({field: sample})
        assert not check({field: {"$in": [sample]}})
    assert not check({"execution.exit_code": {"$lt": 10}})
    assert not check({"execution.exit_code": {"$gte": 0}})
    assert check({"execution.exit_code": {"$nin": [1, 2]}})
    assert not check({"execution.exit_code": {"$in": [1, 2]}})
    assert check({"execution.exit_code": {"$in": [1, None]}})
    assert not check({"execution.exit_code": {"$nin": [None]}})
    assert check({"name": {"$ne": None}}) and not check({"name": None})
    assert check({"execution.worker": None}, {"_id": ID_A, "execution": None})
    assert check({"execution.worker": {"$ne": "w1"}}, {"_id": ID_A, "execution": "garbled"})


def test_matches_list_fields() -> None:
    assert check({"continuations": ID_B})
    assert not check({"continuations": ID_A})
    assert check({"continuations": {"$in": [ID_A, ID_B]}})
    assert not check({"continuations": {"$in": []}})
    assert check({"continuations": {"$ne": ID_A}}) and not check({"continuations": {"$ne": ID_B}})
    assert not check({"continuations": {"$nin": [ID_B]}})
    assert check({"continuations": {"$nin": []}})
    empty = {**DOC, "continuations": []}
    assert not check({"continuations": ID_B}, empty)
    assert check({"continuations": {"$nin": [ID_B]}}, empty)


def test_matches_and_or() -> None:
    assert check({"$or": [{"name": "nope"}, {"state": "running"}]})
    assert not check({"$and": [{"name": "task 1"}, {"state": "done"}]})
    assert check({"$or": [{"$and": [{"priority": 5}, {"retry_count": 1}]}, {"name": "x"}]})


def test_matches_never_crashes_on_a_wrongly_shaped_document() -> None:
    odd = {"priority": "high", "execution": [1, 2], "requested_resources": 5}
    assert not check({"priority": {"$gt": 1}}, odd)
    assert not check({"execution.exit_code": 1}, odd)
    assert not check({"requested_resources.memory": {"$lte": 1}}, odd)


# --- projection ----------------------------------------------------------------------------


def test_projection_include_keeps_id() -> None:
    projection = parse_projection('{"name": 1, "state": true}', TASK_FIELDS)
    assert projection.include == frozenset({"name", "state", "_id"})
    doc = {"_id": ID_A, "name": "n", "state": "s", "command": "c"}
    assert projection.apply(doc) == {"_id": ID_A, "name": "n", "state": "s"}
    assert parse_projection({"_id": 1}, TASK_FIELDS).apply(doc) == {"_id": ID_A}


def test_projection_exclude_and_top_level_names_of_dotted_fields() -> None:
    projection = parse_projection({"command": 0, "execution": False, "_id": 0}, TASK_FIELDS)
    assert projection == Projection(exclude=frozenset({"command", "execution"}))
    doc = {"_id": ID_A, "command": "c", "execution": {}, "requested_resources": {}}
    assert projection.apply(doc) == {"_id": ID_A, "requested_resources": {}}
    included = parse_projection({"requested_resources": 1}, TASK_FIELDS).include
    assert included == frozenset({"requested_resources", "_id"})


@pytest.mark.parametrize(
    ("document", "shown"),
    [
        ({"_id": 1}, {"_id"}),
        ({"_id": 1, "_created": 0}, {"_id", "name", "command"}),  # found by Hypothesis
        ({"_id": 0, "_created": 0}, {"_id", "name", "command"}),
        ({"_id": 0, "name": 1}, {"_id", "name"}),
        ({"_id": 1, "name": 1}, {"_id", "name"}),
    ],
)
def test_projection_id_never_decides_inclusion_unless_alone(
    document: dict[str, int], shown: set[str]
) -> None:
    doc = {"_id": ID_A, "_created": "c", "name": "n", "command": "c"}
    assert set(parse_projection(document, TASK_FIELDS).apply(doc)) == shown


@pytest.mark.parametrize("empty", [None, "", "{}", {}, {"_id": 0}])
def test_projection_of_everything(empty: Any) -> None:
    doc = {"_id": ID_A, "command": "c"}
    assert parse_projection(empty, TASK_FIELDS).apply(doc) == doc


def test_projection_keep_can_be_widened_for_eve_meta_fields() -> None:
    keep = ("_id", "_etag", "_links")
    projection = parse_projection({"name": 1, "_etag": 0}, TASK_FIELDS, keep=keep)
    doc = {"_id": ID_A, "_etag": "e", "_links": {}, "name": "n", "state": "s"}
    assert projection.apply(doc) == {"_id": ID_A, "_etag": "e", "_links": {}, "name": "n"}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"name": 1, "command": 0}, "cannot mix inclusion (1) and exclusion (0)"),
        ({"nme": 1}, "unknown field 'nme' in projection; did you mean 'name'?"),
        ({"execution.worker": 1}, "use 'execution' rather than 'execution.worker'"),
        ({"bogus.worker": 1}, "unknown field 'bogus.worker' in projection"),
        ({"name": 2}, "projection value for 'name' must be 0 or 1"),
        ({"name": 1.0}, "must be 0 or 1"),
        ({"name": "1"}, "must be 0 or 1"),
        ('["name"]', "projection must be a JSON object"),
        ("{name: 1}", "projection is not valid JSON"),
        ('{"name": 1, "name": 0}', "projection has the key 'name' twice"),
        ({3: 1}, "projection keys must be strings"),
    ],
)
def test_projection_rejections(value: Any, fragment: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_projection(value, TASK_FIELDS)
    assert fragment in caught.value.message


# --- sort ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ()),
        ("", ()),
        ('[("priority", -1), ("_id", 1)]', (("priority", -1), ("_id", 1))),
        ("[('priority', -1)]", (("priority", -1),)),
        ('[["priority", -1], ["_created", 1]]', (("priority", -1), ("_created", 1))),
        ("(('name', 1),)", (("name", 1),)),
        ("-priority,_id", (("priority", -1), ("_id", 1))),
        (" priority ", (("priority", 1),)),
        ("-requested_resources.memory", (("requested_resources.memory", -1),)),
        ("requested_resources.licenses", (("requested_resources.licenses", 1),)),
    ],
)
def test_sort_forms(text: str | None, expected: tuple[tuple[str, int], ...]) -> None:
    assert parse_sort(text, TASK_FIELDS) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("-nme", "unknown field 'nme' in sort"),
        ("continuations", "cannot sort by 'continuations'"),
        ('[("priority", 2)]', "sort direction for 'priority' must be 1 or -1, got 2"),
        ('[("priority", True)]', "must be 1 or -1"),
        ('[("priority", 1.0)]', "must be 1 or -1"),
        ('[("priority", "desc")]', "must be 1 or -1"),
        ('[("priority",)]', "each sort item must be a pair"),
        ("[(1, 1)]", "each sort item must be a pair"),
        ("[('priority', -1)", "sort is not a list"),
        ("[__import__('os').system('true')]", "sort is not a list"),
        ("('priority', -1)", "each sort item must be a pair"),
        ("priority,,_id", "sort has an empty key"),
        ("-", "sort has an empty key"),
        ("priority,-priority", "sort names 'priority' twice"),
        ("a," * 3000, "sort is too long"),
        (",".join(f"execution.worker{i}" for i in range(3)), "unknown field"),
    ],
)
def test_sort_rejections(text: str, fragment: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_sort(text, TASK_FIELDS)
    assert fragment in caught.value.message


def test_sort_key_limit() -> None:
    names = ["name", "state", "queue", "priority"]
    assert len(parse_sort(",".join(names), TASK_FIELDS, max_keys=4)) == 4
    with pytest.raises(BadRequest, match="too many keys"):
        parse_sort(",".join(names), TASK_FIELDS, max_keys=3)


# --- paging --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 25),
        ("", 25),
        ("10", 10),
        (" 7 ", 7),
        ("1000", 1000),
        ("5000", 1000),
        ("0", 1),
        ("-3", 1),
        ("9" * 40, 1000),
        ("-" + "9" * 40, 1),
    ],
)
def test_max_results_is_clamped(value: str | None, expected: int) -> None:
    assert parse_max_results(value, default=25, limit=1000) == expected


def test_max_results_default_never_exceeds_the_limit() -> None:
    assert parse_max_results(None, default=25, limit=10) == 10


@pytest.mark.parametrize("value", ["ten", "1.5", "1e3", "1_000", "١٢", "0x10"])
def test_max_results_must_be_an_integer(value: str) -> None:
    with pytest.raises(BadRequest, match="max_results must be an integer"):
        parse_max_results(value, default=25, limit=1000)


def test_page() -> None:
    assert parse_page(None) == 1
    assert parse_page("") == 1
    assert parse_page("3") == 3
    assert parse_page(str(MAX_PAGE)) == MAX_PAGE
    for bad in ("0", "-1", str(MAX_PAGE + 1), "9" * 40):
        with pytest.raises(BadRequest, match="page must be between 1 and 1000000000"):
            parse_page(bad)
    for bad in ("two", "2.0", "+", "1 000"):
        with pytest.raises(BadRequest, match="page must be an integer"):
            parse_page(bad)
