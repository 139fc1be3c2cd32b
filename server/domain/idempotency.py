"""Idempotent submit (issue 11): the rules of the ``Idempotency-Key`` header
on ``POST /tasks``, on plain values.

A client that sends a key and retries (a dropped connection, a server that
died between its commit and its answer) must not create twins. The store
keeps, per caller and key, a hash of the request and the response it gave,
written in the same transaction as the tasks, for ``idempotency_retention_s``.
A repeat with the same key and the same body gets that response again (and
``Idempotent-Replayed: true``) and creates nothing; the same key with another
body is 422, as Stripe answers, since it is a client bug that a retry cannot
fix. Keys are per caller: another token's key of the same text is unrelated.
A request that failed stored nothing, so its retry is tried afresh.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from banyan.constants import IDEMPOTENCY_HEADER, MAX_IDEMPOTENCY_KEY_CHARS
from banyan.errors import BadRequest, Conflict, InvalidInput
from banyan.tokens import Caller

REPLAYED_HEADER: Final = "Idempotent-Replayed"
# Printable ASCII without spaces: what a UUID, a ULID or any client's
# generated key looks like, and safe to echo in a message.
_KEY: Final = re.compile(r"[\x21-\x7e]+", re.ASCII)


@dataclass(frozen=True, slots=True)
class Submission:
    """One keyed submit: the caller's key, what the request said, how long answers are kept."""

    key: str
    request_hash: str
    retention_s: float


@dataclass(frozen=True, slots=True)
class Encoded:
    """A response body already encoded as JSON text (compact, UTF-8 kept): a
    bulk submit's answer is written without a dict per task, and stored as is."""

    text: str


@dataclass(frozen=True, slots=True)
class Answer:
    """The response of a keyed submit, and whether it was the stored one."""

    status: int
    body: Any
    replayed: bool


def parse_key(value: str | None) -> str | None:
    """The header's key, or None without one; a malformed key is 400."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_CHARS or not _KEY.fullmatch(value):
        raise BadRequest(
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII "
            "characters without spaces (a UUID, for example)",
            issues={IDEMPOTENCY_HEADER: "1 to 255 printable ASCII characters, no spaces"},
        )
    return value


def request_hash(data: Any, options: Mapping[str, Any] | None = None) -> str:
    """A digest of the parsed request body, blind to key order and spacing.

    ``options`` are the query arguments that change what the request does
    (``job_name``, ``require_fit``): the same body with another job name is
    another request. Without any set, the digest is the body's alone, as it
    was before they existed, so a key stored by an older server still matches.
    """
    given = {k: v for k, v in (options or {}).items() if v not in (None, False)}
    subject = {"body": data, "options": given} if given else data
    canonical = json.dumps(subject, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_same_request(stored_hash: str, submission: Submission) -> None:
    """A key names one request: reusing it for another body is 422."""
    if stored_hash != submission.request_hash:
        raise InvalidInput(
            f"{IDEMPOTENCY_HEADER} {submission.key!r} was already used for a different "
            "request body; a retry must send the same body, a new request a new key",
            issues={IDEMPOTENCY_HEADER: "already used for a different request"},
        )


def id_taken(task_id: str, owner: str, caller: Caller, index: int) -> Conflict:
    """The 409 for a client-chosen ``_id`` that already names a task. Your own
    task of that id is most likely a retried submit, so the message says how to
    make retries safe; another user's is only "taken" (whose is not said)."""
    issue = f"{index}._id"
    if owner == caller.name:
        return Conflict(
            f"you already created a task with _id {task_id} (a retried submit?); it was "
            f"not created again. Send an {IDEMPOTENCY_HEADER} header to make retries safe",
            issues={issue: "already exists: your own task"},
        )
    return Conflict(
        f"_id {task_id} is taken by another user's task: choose another _id",
        issues={issue: "taken by another user's task"},
    )
