"""A bulk POST's answer is written as JSON text, without a dict per task
(``render.metas_json``): it must be byte for byte what ``json_response``
would write for the documents ``render.meta`` makes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from banyan.constants import DEFAULT_DATE_FORMAT
from server import render
from tests.conftest import Api

DOCS: list[dict[str, Any]] = [
    {"_id": "0123456789abcdef01234567", "_etag": "ab" * 10, "_created": 1.7e9, "job": "0" * 24},
    {"_id": "0123456789abcdef01234568", "_etag": "cd" * 10, "_created": 1.7e9 + 0.5, "job": None},
    {"_id": 'odd"id\\é', "_etag": "e", "_created": 0.0, "job": 'j"ob'},
]


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    "date_format", [DEFAULT_DATE_FORMAT, '%Y-%m-%d "é" %H:%M:%S', "%s"], ids=["eve", "odd", "epoch"]
)
def test_metas_json_is_what_json_dumps_writes(date_format: str) -> None:
    expected = compact([render.meta(doc, date_format) for doc in DOCS])
    assert render.metas_json(DOCS, date_format) == expected
    assert render.metas_json([], date_format) == "[]"


async def test_a_bulk_answer_has_the_envelope_and_one_meta_per_task(api: Api) -> None:
    made = await api.post("/tasks", [{"command": "true"}] * 3, params={"job_name": "j"})
    assert made.status == 201, made
    # No worker is connected: the warning comes after the job, as a dict would put it.
    assert list(made.body) == ["_status", "_items", "job", "_warnings"]
    assert made.body["_status"] == "OK" and len(made.body["_warnings"]) == 1
    items = made.body["_items"]
    assert [list(i) for i in items] == [
        ["_id", "_etag", "_created", "_updated", "_links", "job", "_status"]
    ] * 3
    for item in items:
        doc = await api.task(item["_id"])
        assert (item["_etag"], item["_created"]) == (doc["_etag"], doc["_created"])
        assert item["_links"] == {"self": {"title": "Task", "href": f"tasks/{item['_id']}"}}
    assert {i["job"] for i in items} == {made.body["job"]} == {items[0]["_id"]}
