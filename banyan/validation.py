"""Pydantic validation errors as Banyan errors: 400 for malformed JSON, else
422 with ``_issues`` keyed by the dotted field path. The server, the CLI and
the TUI's forms all report validation this way."""

from __future__ import annotations

import re

from pydantic import ValidationError

from banyan.errors import BadRequest, BanyanError, InvalidInput
from banyan.models import READ_ONLY_FIELDS

_TYPE_TAG = re.compile(
    r"^(int|float|str|bool|none|list\[.*\]|dict\[.*\]|function-.*|json-or-python\[.*\]"
    r"|union\[.*\]|constrained-.*|lax-.*|chain\[.*\]|tagged-union\[.*\])$"
)


def from_validation(exc: ValidationError, *, prefix: str = "", what: str = "input") -> BanyanError:
    """A pydantic error as Eve's 400 (malformed JSON) or 422 (content) with ``_issues``."""
    issues: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        if error["type"] == "json_invalid":
            return BadRequest(f"malformed JSON: {error['msg'].removeprefix('Invalid JSON: ')}")
        # Union branches add their type names to the location; keep the path only.
        loc = [str(p) for p in error["loc"] if not _TYPE_TAG.match(str(p))]
        message = error["msg"].removeprefix("Value error, ")
        if len(loc) >= 2 and loc[-1] == "[key]":
            # A bad mapping key (an env name): report it at the mapping, with
            # the key shortened and escaped, since it may be long or hold a NUL.
            bad = loc[-2]
            shown = repr(bad if len(bad) <= 40 else bad[:40] + "…")
            loc, message = loc[:-2], f"key {shown}: {message}"
        field = ".".join(loc)
        if error["type"] == "extra_forbidden":
            name = loc[-1] if loc else field
            message = "read-only field" if name in READ_ONLY_FIELDS else "unknown field"
        key = f"{prefix}{field}" if field else (prefix.rstrip(".") or "body")
        issues.setdefault(key, message)
    first = next(iter(issues.items()))
    extra = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    return InvalidInput(f"invalid {what}: {first[0]}: {first[1]}{extra}", issues=issues)
