"""Dependency kinds (``banyan.dependencies.RunWhen``) as rules: what a
parent's end does to each continuation, and what a continuation with no
parent left to wait on does.

A parent's end is one of three results: it succeeded, it failed (a failure,
an abandonment or any cancellation) or it was skipped (a ``failure`` task
none of whose parents failed). For each of its continuations the edge is
either *released* (the child waits on one parent less) or the child is
*cancelled* (a ``success`` child of a parent that did not succeed, as
before dependency kinds). A child released by its last parent runs, except a
``failure`` child none of whose parents failed: it is skipped. A store applies
these one edge at a time; the same rules decide an edge to a parent that had
already ended when it was linked.
"""

from __future__ import annotations

from enum import StrEnum

from banyan.dependencies import SKIPPED, RunWhen
from banyan.states import SUCCESS, State


class Result(StrEnum):
    """How a parent ended, as its continuations see it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


def result_of(state: str, exit_status: str | None) -> Result | None:
    """A task's result, or ``None`` while it has not ended."""
    if state == State.TERMINATED:
        return Result.SUCCEEDED if exit_status == SUCCESS else Result.FAILED
    if state == State.CANCELLED:
        return Result.SKIPPED if exit_status == SKIPPED else Result.FAILED
    return None


class Step(StrEnum):
    """What a parent's end does to one continuation."""

    RELEASE = "release"  # the child waits on one parent less
    CANCEL = "cancel"  # the child can never run: cancelled, and its own continuations follow


def on_parent_end(run_when: str, result: Result) -> Step:
    """A ``success`` child needs the parent to succeed; the other kinds only
    need it to end."""
    if RunWhen(run_when) is RunWhen.SUCCESS and result is not Result.SUCCEEDED:
        return Step.CANCEL
    return Step.RELEASE


def runs_when_released(run_when: str, *, a_parent_failed: bool) -> bool:
    """A child with no parent left to wait on runs, unless it is a ``failure``
    child none of whose parents failed (then it is skipped)."""
    return RunWhen(run_when) is not RunWhen.FAILURE or a_parent_failed
