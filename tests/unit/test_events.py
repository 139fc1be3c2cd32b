"""The event union: derived type and filter lists, wire form, round trip."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from banyan import events as ev
from banyan.query import FieldKind
from server.domain import events as build


def test_event_types_come_from_the_union() -> None:
    assert set(ev.EVENT_TYPES) == {
        "task.created",
        "task.state",
        "task.progress",
        "task.usage",
        "worker.joined",
        "worker.heartbeat",
        "worker.lost",
        "worker.left",
    }


def test_where_whitelist_comes_from_the_marked_fields() -> None:
    kinds = {name: f.kind for name, f in ev.EVENT_FIELDS.items()}
    assert kinds == {
        "_id": FieldKind.ID,
        "name": FieldKind.STR,
        "state": FieldKind.STR,
        "previous": FieldKind.STR,
        "queue": FieldKind.STR,
        "owner": FieldKind.STR,
        "worker": FieldKind.STR,
        "exit_status": FieldKind.STR,
        "attempt": FieldKind.INT,
        "priority": FieldKind.INT,
        "percent": FieldKind.NUMBER,
    }


def test_state_data_keeps_a_null_name_and_drops_unset_extras() -> None:
    event = build.task_state("t1", "running", "available", name=None, queue="q", attempt=2)
    assert ev.encode_data(event) == (
        '{"_id":"t1","state":"running","previous":"available","name":null,"queue":"q","attempt":2}'
    )


def test_a_retry_flag_is_sent_only_when_true() -> None:
    kept = build.task_state("t", "available", "running", name="n", queue="q", retry=True)
    dropped = build.task_state("t", "available", "running", name="n", queue="q", retry=False)
    assert json.loads(ev.encode_data(kept))["retry"] is True
    assert "retry" not in json.loads(ev.encode_data(dropped))


def test_a_frame_decodes_to_its_model_and_encodes_back() -> None:
    frame = {
        "seq": 7,
        "time": "Mon, 07 Dec 2026 10:00:00 GMT",
        "timestamp": 1.5,
        "type": "worker.lost",
        "data": {"name": "w1", "abandoned": ["t1"]},
    }
    event = ev.decode(json.dumps(frame))
    assert isinstance(event, ev.WorkerLost)
    assert event.data.abandoned == ["t1"]
    assert json.loads(ev.encode(event)) == frame


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValidationError):
        ev.decode({"seq": 1, "type": "task.nope", "data": {}})


def test_a_worker_event_is_about_no_task() -> None:
    assert build.task_id_of(build.worker_heartbeat("w")) is None
    assert build.task_id_of(build.task_usage("t", attempt=1, time=2.0, rss=3)) == "t"
