"""Documents as the API writes them: dates in ``date_format``, Eve's ``_links``,
projections, and the collection envelope."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from banyan.dates import format_date
from banyan.projection import Projection
from banyan.tokens import Caller
from server.domain.secrets import redact_env

TASK_DATE_FIELDS = ("_created", "_updated")
EXECUTION_DATE_FIELDS = ("time_started", "time_terminated")


def task(
    doc: dict[str, Any],
    date_format: str,
    projection: Projection | None = None,
    *,
    viewer: Caller,
) -> dict[str, Any]:
    """A task document as ``viewer`` may see it (``env`` values redacted by
    ``server.domain.secrets`` unless the viewer owns the task or is an admin)."""
    out = dict(redact_env(doc, viewer))
    for key in TASK_DATE_FIELDS:
        out[key] = format_date(out[key], date_format)
    if "not_before" in out:
        out["not_before"] = format_date(out["not_before"], date_format)
    if out.get("execution"):
        out["execution"] = _dates(out["execution"], EXECUTION_DATE_FIELDS, date_format)
    out["_links"] = {"self": {"title": "Task", "href": f"tasks/{doc['_id']}"}}
    if projection is not None:
        out = projection.apply(out)
        out["_links"] = {"self": {"title": "Task", "href": f"tasks/{doc['_id']}"}}
    return out


def _dates(doc: dict[str, Any], keys: tuple[str, ...], date_format: str) -> dict[str, Any]:
    out = dict(doc)
    for key in keys:
        if key in out:
            out[key] = format_date(out[key], date_format)
    return out


def attempt(doc: dict[str, Any], date_format: str) -> dict[str, Any]:
    return _dates(doc, EXECUTION_DATE_FIELDS, date_format)


def memory_usage(doc: dict[str, Any], date_format: str) -> dict[str, Any]:
    return _dates(doc, ("time",), date_format)


def meta(doc: Mapping[str, Any], date_format: str) -> dict[str, Any]:
    """What POST returns per item (Eve's bandwidth saver): ids, dates, etag, links."""
    created = _date_once(doc["_created"], date_format)
    return {
        "_id": doc["_id"],
        "_etag": doc["_etag"],
        "_created": created,
        "_updated": created,
        "_links": {"self": {"title": "Task", "href": f"tasks/{doc['_id']}"}},
        "job": doc.get("job"),
        "_status": "OK",
    }


def metas_json(docs: Sequence[Mapping[str, Any]], date_format: str) -> str:
    """``[meta(doc) ...]`` as compact JSON (UTF-8 kept, as ``json_response``
    writes it), made without a dict per item: a bulk POST of 100,000 tasks
    answers with 100,000 of them. Ids, etags and jobs are hex; each distinct
    value is encoded once."""
    encoded: dict[Any, str] = {}

    def text(value: Any) -> str:
        out = encoded.get(value)
        if out is None:
            out = encoded[value] = json.dumps(value, ensure_ascii=False)
        return out

    def plain(value: Any) -> str:  # a hex id needs no escaping
        if isinstance(value, str) and value.isascii() and value.isalnum():
            return f'"{value}"'
        return json.dumps(value, ensure_ascii=False)

    parts = []
    for doc in docs:
        task_id = plain(doc["_id"])  # '"…"': the link is '"tasks/…"'
        created = text(_date_once(doc["_created"], date_format))
        parts.append(
            f'{{"_id":{task_id},"_etag":{plain(doc["_etag"])},"_created":{created},'
            f'"_updated":{created},"_links":{{"self":{{"title":"Task","href":'
            f'"tasks/{task_id[1:]}}}}},'
            f'"job":{text(doc.get("job"))},"_status":"OK"}}'
        )
    return "[" + ",".join(parts) + "]"


def job(doc: Mapping[str, Any], date_format: str) -> dict[str, Any]:
    """A job document (``/jobs``): its dates formatted, its link."""
    out = dict(doc)
    for key in ("_created", "time_started", "time_ended"):
        out[key] = format_date(out[key], date_format)
    out["_links"] = {
        "self": {"title": "Job", "href": f"jobs/{doc['_id']}"},
        "tasks": {"title": "tasks", "href": f'tasks?where={{"job":"{doc["_id"]}"}}'},
    }
    return out


@functools.lru_cache(maxsize=64)
def _date_once(epoch_s: float, date_format: str) -> str | None:
    # Every item of a bulk POST shares one creation time.
    return format_date(epoch_s, date_format)


def collection(
    items: list[dict[str, Any]],
    *,
    resource: str,
    title: str,
    page: int,
    max_results: int,
    total: int,
    args: dict[str, str],
) -> dict[str, Any]:
    last = max(1, -(-total // max_results))

    def href(p: int) -> str:
        query = {k: v for k, v in args.items() if k != "page"}
        if p > 1:
            query["page"] = str(p)
        return f"{resource}?{urlencode(query)}" if query else resource

    links: dict[str, Any] = {
        "parent": {"title": "home", "href": "/"},
        "self": {"title": title, "href": href(page)},
    }
    if page < last:
        links["next"] = {"title": "next page", "href": href(page + 1)}
        links["last"] = {"title": "last page", "href": href(last)}
    if page > 1:
        links["prev"] = {"title": "previous page", "href": href(page - 1)}
    return {
        "_items": items,
        "_meta": {"page": page, "max_results": max_results, "total": total},
        "_links": links,
    }
