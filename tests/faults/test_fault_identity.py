"""Workers sharing an identity, against real server and worker processes
(issue 11; ``bench/faults.py`` runs the same scenarios in the scorecard):
clones started from one worker token, and a second token taking over a live
worker with its public host and pid. No timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.scenario_identity import run_same_name, run_stolen_identity

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_clones_of_one_worker_token_run_each_task_once(tmp_path: Path) -> None:
    """The issue's scenario: 8 tasks with max_retry_count 3, two workers from
    one token at once (and a third mid-run). Before: 32 executions, 8
    concurrent duplicates. Now every clone but one exits 75 with one line."""
    result = run_same_name(tmp_path, 8, clones=2)
    assert result.violations() == {}, (result.violations(), result.details)
    assert result.duplicate_concurrent == 0
    assert result.details["refused_75"] == 2, result.details
    assert result.details["other_exits"] == [], result.details
    assert result.details["executions"] == 8, result.details
    for line in result.details["refusal_lines"]:
        assert "'clone' is already connected" in line, line


def test_a_stolen_identity_is_refused_and_nothing_runs_twice(tmp_path: Path) -> None:
    result = run_stolen_identity(tmp_path, 4)
    assert result.violations() == {}, (result.violations(), result.details)
    assert result.details["close_codes"] == [4403, 4409], result.details
    assert result.details["executions"] == 4, result.details
    assert result.details["attempts"] == 4, result.details
