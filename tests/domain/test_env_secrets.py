"""Who sees a task's env values, and how a where on env values is scoped
(``server.domain.secrets``), on plain values."""

from __future__ import annotations

from banyan.fields import TASK_FIELDS
from banyan.query import And, Compare, Op, Or, parse_where
from banyan.tokens import Caller, Role
from server.domain import secrets

ADMIN = Caller("root", Role.ADMIN)
ALICE = Caller("alice", Role.PROVIDER)
BOB = Caller("bob", Role.PROVIDER)
W1 = Caller("alice", Role.WORKER)  # a worker token sharing a provider's name sees nothing more

DOC = {"_id": "t", "owner": "alice", "env": {"TOKEN": "s3cret", "MODE": "fast"}}


def test_the_owner_and_admins_see_values_others_see_keys_only() -> None:
    assert secrets.redact_env(DOC, ALICE) is DOC
    assert secrets.redact_env(DOC, ADMIN) is DOC
    for other in (BOB, W1):
        seen = secrets.redact_env(DOC, other)
        assert seen["env"] == {"TOKEN": secrets.REDACTED, "MODE": secrets.REDACTED}
        assert DOC["env"]["TOKEN"] == "s3cret"  # the original is untouched


def test_a_task_without_env_is_returned_as_is() -> None:
    doc = {"_id": "t", "owner": "alice", "env": None}
    assert secrets.redact_env(doc, BOB) is doc


def test_env_value_conditions_are_limited_to_the_callers_own_tasks() -> None:
    where = parse_where('{"$or": [{"env.TOKEN": {"$gte": "m"}}, {"name": "x"}]}', TASK_FIELDS)
    scoped = secrets.scope_where(where, BOB)
    mine = Compare("owner", Op.EQ, "bob")
    assert scoped == Or(
        (And((Compare("env.TOKEN", Op.GTE, "m"), mine)), Compare("name", Op.EQ, "x"))
    )


def test_exists_on_an_env_key_and_admin_queries_are_left_alone() -> None:
    exists = parse_where('{"env.TOKEN": {"$exists": true}}', TASK_FIELDS)
    assert secrets.scope_where(exists, BOB) == exists
    probe = parse_where('{"env.TOKEN": "s3cret"}', TASK_FIELDS)
    assert secrets.scope_where(probe, ADMIN) == probe
    assert secrets.scope_where(None, BOB) is None
