"""Every fault of the reliability scorecard by name, with its full and quick
sizes: what ``bench/faults.py`` runs (and ``--only NAME`` picks from)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.faults.history import FaultResult
from tests.faults.scenario_cancel import run_cancel_race, run_tree_cancel
from tests.faults.scenario_client import run_client_retries
from tests.faults.scenario_feed import run_feed_resume
from tests.faults.scenario_identity import run_same_name, run_stolen_identity
from tests.faults.scenario_server import run_server_kill
from tests.faults.scenario_workers import run_worker_fault


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    run: Callable[[Path, bool], FaultResult]  # (workdir, quick)


FAULTS = [
    Fault(
        "server-kill",
        "server kill -9 during bursts of submit, claim and complete, x5 (quick: x2)",
        lambda d, quick: run_server_kill(d, 1_000 if quick else 10_000, reps=2 if quick else 5),
    ),
    Fault(
        "client-retries",
        "banyan.client submits (Idempotency-Key, retried on a failed connection) while the "
        "server is killed -9, x8 (quick: x3)",
        lambda d, quick: run_client_retries(d, 1_000 if quick else 10_000, reps=3 if quick else 8),
    ),
    Fault(
        "worker-kill",
        "worker kill -9 mid-task",
        lambda d, quick: run_worker_fault(
            d, 500 if quick else 10_000, kind="kill9", faults=2 if quick else 8
        ),
    ),
    Fault(
        "worker-stop",
        "worker SIGSTOP past worker_timeout_s, then SIGCONT",
        lambda d, quick: run_worker_fault(
            d, 500 if quick else 10_000, kind="sigstop", faults=2 if quick else 8
        ),
    ),
    Fault(
        "worker-netcut",
        "worker network cut (proxy holds all traffic) past worker_timeout_s, then healed",
        lambda d, quick: run_worker_fault(
            d, 500 if quick else 10_000, kind="netcut", faults=2 if quick else 8
        ),
    ),
    Fault(
        "cancel-race",
        "cancel racing completion (and cancels of waiting tasks)",
        lambda d, quick: run_cancel_race(d, 1_000 if quick else 10_000),
    ),
    Fault(
        "tree-cancel",
        "cancel of a whole continuation tree while parts run",
        lambda d, quick: run_tree_cancel(d, 1_000 if quick else 10_000),
    ),
    Fault(
        "same-name",
        "workers started from one worker token (4 at once, one more mid-run), "
        "tasks with max_retry_count 3",
        lambda d, quick: run_same_name(d, 8 if quick else 200, clones=2 if quick else 4),
    ),
    Fault(
        "stolen-identity",
        "a provider's worker token and the admin's connect as a live worker "
        "with its public host and pid",
        lambda d, quick: run_stolen_identity(d, 4 if quick else 16),
    ),
    Fault(
        "feed-resume",
        "event subscribers cut at random points and resumed with since",
        lambda d, quick: run_feed_resume(d, 2_000 if quick else 10_000),
    ),
]
BY_NAME = {f.name: f for f in FAULTS}
