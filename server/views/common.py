"""What every view shares: reading and validating a JSON body, parsing the
collection query arguments, and writing JSON."""

from __future__ import annotations

import asyncio
import gc
import io
import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from banyan.errors import BadRequest, InvalidInput, NotFound, PayloadTooLarge
from banyan.ids import is_id
from banyan.projection import (
    Projection,
    parse_max_results,
    parse_page,
    parse_projection,
    parse_sort,
)
from banyan.query import Fields, parse_where
from banyan.validation import from_validation
from server import render
from server.domain.idempotency import Encoded
from server.keys import SETTINGS
from server.settings import Settings
from server.stores.base import Query

T = TypeVar("T")
# As Eve, a projection never hides the id and the meta fields.
EVE_META = ("_id", "_created", "_updated", "_etag")


def settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def task_id(request: web.Request) -> str:
    value = request.match_info["task_id"].lower()
    if not is_id(value):
        raise NotFound(f"no task with id {request.match_info['task_id']} (ids are 24 hex digits)")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def body(request: web.Request) -> Any:
    """The request's JSON body, parsed strictly (no NaN/Infinity, valid UTF-8): 400 if not.

    413 at once when ``Content-Length`` is over ``max_body_bytes`` (aiohttp alone
    would buffer that much first); 408 when the body takes over ``body_timeout_s``.
    """
    conf = settings(request)
    if request.content_length is not None and request.content_length > conf.max_body_bytes:
        raise PayloadTooLarge(
            f"the request body is {request.content_length} bytes; "
            f"at most {conf.max_body_bytes} are accepted"
        )
    try:
        async with asyncio.timeout(conf.body_timeout_s):
            raw = await request.read()
    except TimeoutError as exc:
        raise web.HTTPRequestTimeout(
            reason=f"the request body did not arrive within {conf.body_timeout_s:g} s"
        ) from exc
    if not raw.strip():
        raise BadRequest("the request needs a JSON body")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise BadRequest("malformed JSON: nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from exc


def body_kind(data: Any) -> str:
    """``"object"`` or ``"list"``: decides between single and bulk forms."""
    if isinstance(data, dict):
        return "object"
    if isinstance(data, list):
        return "list"
    raise InvalidInput(
        "the body must be a JSON object or a list of objects", issues={"body": "wrong type"}
    )


def expect_kind(data: Any, kind: str) -> None:
    """422 unless the body is a JSON ``kind`` (``"object"`` or ``"list"``)."""
    if body_kind(data) != kind:
        article = "an" if kind == "object" else "a"
        raise InvalidInput(
            f"the body must be a JSON {kind}", issues={"body": f"expected {article} {kind}"}
        )


def validate(adapter: TypeAdapter[T], data: Any, *, what: str, prefix: str = "") -> T:
    # Validating a large bulk body allocates ~10 objects per item; the cyclic
    # GC would rescan them over and over (about 40% of the time at 100k items).
    # Nothing here makes cycles, and this is one synchronous step.
    pause_gc = isinstance(data, list) and len(data) > 1000 and gc.isenabled()
    if pause_gc:
        gc.disable()
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise from_validation(exc, prefix=prefix, what=what) from exc
    finally:
        if pause_gc:
            gc.enable()


def validate_items(
    one: TypeAdapter[T], many: TypeAdapter[list[T]], data: list[Any], *, what: str
) -> list[T]:
    """A bulk body validated item by item, each distinct item once.

    Bulk submissions mostly repeat one item, and validating an item costs
    about 20 times its ``repr`` (the key: two JSON values with the same repr
    are the same value, so they validate alike). Equal items then share one
    validated object, which nobody mutates. On any failure the whole list is
    validated by ``many``, so the errors are exactly the list's (every bad
    item, indexed)."""
    seen: dict[str, T] = {}
    out: list[T] = []
    try:
        for item in data:
            key = repr(item)
            value = seen.get(key)
            if value is None:
                value = seen[key] = one.validate_python(item)
            out.append(value)
    except ValidationError:
        return validate(many, data, what=what)
    return out


def check_bulk_size(count: int, request: web.Request) -> None:
    limit = settings(request).max_bulk_items
    if count > limit:
        raise InvalidInput(
            f"a bulk request holds at most {limit} items, this one has {count}",
            issues={"body": f"at most {limit} items"},
        )
    if count == 0:
        raise InvalidInput("the list is empty", issues={"body": "at least one item"})


def single_arg(request: web.Request, name: str) -> str | None:
    values = request.rel_url.query.getall(name, [])
    if len(values) > 1:
        raise BadRequest(f"'{name}' is given {len(values)} times; give it once")
    return values[0] if values else None


def collection_query(request: web.Request, fields: Fields) -> tuple[Query, Projection]:
    conf = settings(request)
    where = parse_where(single_arg(request, "where"), fields)
    sort = parse_sort(single_arg(request, "sort"), fields)
    page = parse_page(single_arg(request, "page"))
    max_results = parse_max_results(
        single_arg(request, "max_results"),
        default=conf.default_max_results,
        limit=conf.max_results_limit,
    )
    projection = parse_projection(single_arg(request, "projection"), fields, keep=EVE_META)
    return Query(where=where, sort=sort, page=page, max_results=max_results), projection


def item_projection(request: web.Request, fields: Fields) -> Projection | None:
    text = single_arg(request, "projection")
    return None if text is None else parse_projection(text, fields, keep=EVE_META)


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    if isinstance(data, Encoded):
        payload = data.text.encode()
    else:
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    # aiohttp writes a large bytes body in one go (and warns); a file-like one is streamed.
    body: bytes | io.BytesIO = payload if len(payload) < 512 * 1024 else io.BytesIO(payload)
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def collection_response(
    request: web.Request, query: Query, items: list[Any], *, total: int, resource: str
) -> web.Response:
    """One page of a collection in Eve's envelope (``_items``, ``_meta``, ``_links``)."""
    return json_response(
        render.collection(
            items,
            resource=resource,
            title=resource,
            page=query.page,
            max_results=query.max_results,
            total=total,
            args=dict(request.rel_url.query),
        )
    )
