"""The fast subset of the reliability scorecard (``bench/faults.py`` runs the
same scenarios at full size): each fault at a small size against real
server and worker processes, asserting that every zero figure is zero and
that the fault really happened. No timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.history import FaultResult
from tests.faults.scenario_cancel import run_cancel_race, run_tree_cancel
from tests.faults.scenario_client import run_client_retries
from tests.faults.scenario_feed import run_feed_resume
from tests.faults.scenario_server import run_server_kill
from tests.faults.scenario_workers import Kind, run_worker_fault

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def assert_clean(result: FaultResult) -> None:
    assert result.violations() == {}, (result.violations(), result.details)


def test_client_retries_across_server_kills_make_no_twins(tmp_path: Path) -> None:
    result = run_client_retries(tmp_path, 600, reps=3)
    assert_clean(result)
    assert result.twins == 0 and result.acknowledged_lost == 0
    assert result.faults_injected == 3
    assert result.details["gave_up"] == 0, result.details
    assert result.tasks >= 600


def test_server_kill_9_during_bursts_loses_nothing_acknowledged(tmp_path: Path) -> None:
    result = run_server_kill(tmp_path, 300, reps=2, rate=150)
    assert_clean(result)
    assert result.faults_injected == 2
    assert result.details["not_success"] == 0  # every acknowledged task succeeded
    assert result.tasks >= 300


@pytest.mark.parametrize("kind", ["kill9", "sigstop", "netcut"])
def test_lost_worker_is_detected_its_tasks_rerun_once(tmp_path: Path, kind: Kind) -> None:
    result = run_worker_fault(tmp_path, 120, kind=kind, faults=1)
    assert_clean(result)
    assert result.faults_injected == 1
    assert result.details["abandoned_attempts"] >= 1
    assert result.details["probes"] >= 1  # and each stale report was refused


def test_cancels_racing_completion(tmp_path: Path) -> None:
    result = run_cancel_race(tmp_path, 200)
    assert_clean(result)
    assert result.details["cancels_accepted"] >= 1


def test_cancel_of_whole_trees_while_parts_run(tmp_path: Path) -> None:
    result = run_tree_cancel(tmp_path, 84, fanout=3, leaves=6)
    assert_clean(result)
    assert result.details["cancels_accepted"] >= 1


def test_feed_subscribers_cut_at_random_points_miss_nothing(tmp_path: Path) -> None:
    result = run_feed_resume(tmp_path, 400, subscribers=3)
    assert_clean(result)
    assert all(n >= 2 for n in result.details["connections"]), result.details
