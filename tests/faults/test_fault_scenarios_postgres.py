"""The fault scorecard on PostgreSQL, small: the same scenarios as
``test_fault_scenarios.py`` against a server on a fresh database of the
session's PostgreSQL cluster (``bench/faults.py`` runs every fault at full
size on both stores). Kept to three faults, so ``make test`` stays short:
the server's ``kill -9`` (nothing acknowledged lost, PostgreSQL's commit
being the acknowledgement), a worker's ``kill -9`` (lost once, its attempts
rerun once, stale reports refused) and feed subscribers cut at random
points (no gap, no duplicate: the ``seq`` order of commits across
reconnects)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.postgres import Postgres
from tests.faults.harness import on_postgres, store_name
from tests.faults.scenario_feed import run_feed_resume
from tests.faults.scenario_server import run_server_kill
from tests.faults.scenario_workers import run_worker_fault
from tests.faults.test_fault_scenarios import assert_clean

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(autouse=True)
def on_the_postgres_store(postgres: Postgres) -> Iterator[None]:
    with on_postgres(postgres):
        assert store_name() == "postgresql"
        yield


def test_server_kill_9_loses_nothing_acknowledged_on_postgresql(tmp_path: Path) -> None:
    result = run_server_kill(tmp_path, 200, reps=1, rate=150)
    assert_clean(result)
    assert result.faults_injected == 1
    assert result.details["not_success"] == 0
    assert result.tasks >= 200


def test_a_killed_worker_is_lost_once_on_postgresql(tmp_path: Path) -> None:
    result = run_worker_fault(tmp_path, 100, kind="kill9", faults=1)
    assert_clean(result)
    assert result.faults_injected == 1
    assert result.details["abandoned_attempts"] >= 1
    assert result.details["probes"] >= 1


def test_feed_subscribers_cut_at_random_points_miss_nothing_on_postgresql(
    tmp_path: Path,
) -> None:
    result = run_feed_resume(tmp_path, 300, subscribers=2)
    assert_clean(result)
    assert all(n >= 2 for n in result.details["connections"]), result.details
