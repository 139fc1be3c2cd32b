"""Authorization rules on plain values (no database, no event loop)."""

from __future__ import annotations

import dataclasses

import pytest

from banyan.errors import Conflict, Forbidden, PreconditionFailed, PreconditionRequired
from banyan.tokens import Caller, Role
from server.domain import access

ADMIN = Caller("root", Role.ADMIN)
ALICE = Caller("alice", Role.PROVIDER)
W1 = Caller("w1", Role.WORKER)


def test_providers_change_only_their_own_tasks_admins_any() -> None:
    access.check_may_change(ALICE, "t", "alice")
    access.check_may_change(ADMIN, "t", "alice")
    with pytest.raises(Forbidden, match="belongs to bob"):
        access.check_may_change(ALICE, "t", "bob")
    with pytest.raises(Forbidden, match="link your own"):
        access.check_may_link_child(ALICE, "t", "bob")


def test_editing_an_edge_needs_both_ends() -> None:
    access.check_may_edit_edge(ALICE, "alice", "alice", link=True)
    with pytest.raises(Forbidden, match="only unlink"):
        access.check_may_edit_edge(ALICE, "alice", "bob", link=False)


def test_if_match() -> None:
    access.check_if_match("t", "abc", '"abc"', required=True)
    access.check_if_match("t", "abc", None, required=False)
    with pytest.raises(PreconditionFailed):
        access.check_if_match("t", "abc", "old", required=False)
    with pytest.raises(PreconditionRequired):
        access.check_if_match("t", "abc", None, required=True)


def current(key: str | None = "k1") -> access.CurrentAttempt:
    return access.CurrentAttempt("t", 2, key, token="w1", worker="host-a")


def test_a_report_needs_the_current_key_and_the_holder() -> None:
    access.check_report(current(), "k1", W1, worker="host-a")
    access.check_report(current(), "k1", ADMIN)
    with pytest.raises(Conflict, match="no attempt"):
        access.check_report(current(None), "k1", W1)
    with pytest.raises(Conflict, match="does not belong to any attempt of task t"):
        access.check_report(current(), "k0", W1)
    earlier = dataclasses.replace(current(), key_attempt=1)
    with pytest.raises(Conflict, match=r"attempt 1 of task t was superseded .*now on attempt 2"):
        access.check_report(earlier, "k0", W1)
    with pytest.raises(Forbidden, match="another worker"):
        access.check_report(current(), "k1", Caller("w2", Role.WORKER))
    with pytest.raises(Forbidden, match="another worker"):
        access.check_report(current(), "k1", W1, worker="host-b")


def test_usage_only_from_the_worker_running_it() -> None:
    access.check_usage_report(W1, "t", "running", "w1")
    access.check_usage_report(ADMIN, "t", "terminated", None)
    with pytest.raises(Forbidden):
        access.check_usage_report(W1, "t", "terminated", "w1")
    with pytest.raises(Forbidden):
        access.check_usage_report(W1, "t", "running", "w2")


def test_execution_fields_are_frozen_while_the_task_runs() -> None:
    access.check_editable("t", "running", ["priority", "name"])
    access.check_editable("t", "inactive", ["command", "queue"])
    with pytest.raises(Conflict, match="command, queue cannot change") as caught:
        access.check_editable("t", "pending_cancellation", ["queue", "command", "priority"])
    assert set(caught.value.issues) == {"command", "queue"}
