"""The continuation graph's rules on plain values (no database, no event loop)."""

from __future__ import annotations

import pytest

from banyan.errors import Conflict, Forbidden
from banyan.states import SUCCESS
from banyan.tokens import Caller, Role
from server.domain.graph import (
    End,
    check_link,
    check_unlink,
    check_unlinked_child,
    unlink_counts_down,
)

ALICE = Caller("alice", Role.PROVIDER)


def end(state: str = "inactive", owner: str = "alice", exit_status: str | None = None) -> End:
    return End("t", state, owner, exit_status)


def test_link_needs_both_ends_and_an_unstarted_child() -> None:
    check_link(end("running"), end("available"), ALICE)
    with pytest.raises(Forbidden):
        check_link(end(owner="bob"), end(), ALICE)
    # An ended parent is linked too: its outcome decides the edge (dependencies).
    check_link(end("terminated", exit_status=SUCCESS), end(), ALICE)
    check_link(end("cancelled"), end(), ALICE)
    with pytest.raises(Conflict, match="has not started"):
        check_link(end(), end("running"), ALICE)


def test_unlink_needs_both_ends_and_a_waiting_child() -> None:
    check_unlink(end(), end(), ALICE)
    with pytest.raises(Forbidden, match="unlink"):
        check_unlink(end(), end(owner="bob"), ALICE)
    check_unlinked_child(end("inactive"))
    with pytest.raises(Conflict, match="removed while inactive"):
        check_unlinked_child(end("available"))


def test_a_released_edge_was_already_counted_down() -> None:
    assert not unlink_counts_down(released=True)
    assert unlink_counts_down(released=False)
