"""Dependency kinds as pure rules: a parent's result, what it does to each
kind of continuation, and Slurm's ``--dependency`` syntax."""

from __future__ import annotations

import pytest

from banyan.dependencies import SKIPPED, RunWhen, one_kind, parse_slurm
from banyan.errors import InvalidInput
from banyan.states import ABANDONED, CANCELLED_STATUS, FAILURE, SUCCESS
from server.domain.dependencies import Result, Step, on_parent_end, result_of, runs_when_released


@pytest.mark.parametrize(
    ("state", "exit_status", "expected"),
    [
        ("terminated", SUCCESS, Result.SUCCEEDED),
        ("terminated", FAILURE, Result.FAILED),
        ("terminated", ABANDONED, Result.FAILED),
        ("cancelled", CANCELLED_STATUS, Result.FAILED),
        ("cancelled", None, Result.FAILED),  # cancelled by a cascade, never ran
        ("cancelled", SKIPPED, Result.SKIPPED),
        ("running", None, None),
        ("available", FAILURE, None),  # a failure being retried has not ended
        ("inactive", None, None),
    ],
)
def test_a_parent_result(state: str, exit_status: str | None, expected: Result | None) -> None:
    assert result_of(state, exit_status) is expected


@pytest.mark.parametrize(
    ("run_when", "result", "step"),
    [
        (RunWhen.SUCCESS, Result.SUCCEEDED, Step.RELEASE),
        (RunWhen.SUCCESS, Result.FAILED, Step.CANCEL),
        (RunWhen.SUCCESS, Result.SKIPPED, Step.CANCEL),
        (RunWhen.FINISHED, Result.SUCCEEDED, Step.RELEASE),
        (RunWhen.FINISHED, Result.FAILED, Step.RELEASE),
        (RunWhen.FINISHED, Result.SKIPPED, Step.RELEASE),
        (RunWhen.FAILURE, Result.SUCCEEDED, Step.RELEASE),
        (RunWhen.FAILURE, Result.FAILED, Step.RELEASE),
        (RunWhen.FAILURE, Result.SKIPPED, Step.RELEASE),
    ],
)
def test_what_a_parent_end_does_to_each_kind(run_when: RunWhen, result: Result, step: Step) -> None:
    assert on_parent_end(run_when, result) is step


def test_only_a_failure_child_without_a_failed_parent_is_skipped() -> None:
    assert runs_when_released(RunWhen.SUCCESS, a_parent_failed=False)
    assert runs_when_released(RunWhen.FINISHED, a_parent_failed=True)
    assert runs_when_released(RunWhen.FINISHED, a_parent_failed=False)
    assert runs_when_released(RunWhen.FAILURE, a_parent_failed=True)
    assert not runs_when_released(RunWhen.FAILURE, a_parent_failed=False)


def test_slurm_dependency_syntax() -> None:
    assert parse_slurm("afterok:a:b,afterany:c,afternotok:d") == [
        (RunWhen.SUCCESS, "a"),
        (RunWhen.SUCCESS, "b"),
        (RunWhen.FINISHED, "c"),
        (RunWhen.FAILURE, "d"),
    ]
    with pytest.raises(InvalidInput, match="'after' is not supported"):
        parse_slurm("after:a")
    with pytest.raises(InvalidInput, match="names no task"):
        parse_slurm("afterok")
    with pytest.raises(InvalidInput, match="any of"):
        parse_slurm("afterok:a?afterany:b")


def test_a_child_has_one_kind() -> None:
    assert one_kind(set()) is RunWhen.SUCCESS
    assert one_kind({RunWhen.FAILURE}) is RunWhen.FAILURE
    with pytest.raises(InvalidInput, match="failure and success were given"):
        one_kind({RunWhen.SUCCESS, RunWhen.FAILURE})
