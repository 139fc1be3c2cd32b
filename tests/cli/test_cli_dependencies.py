"""Dependency kinds, links to ended parents, group tasks, id prefixes and
``state: cancelled`` on a running task (issue 13), through the ``banyan`` CLI
against a real server and a real worker process."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from banyan.client.ids import SHOWN_MATCHES
from testbed import Cluster
from tests.cli import test_cli_live as live
from tests.cli.test_cli_live import Cli, submit

# The live module's fixtures: a server and a worker process for this module.
cluster = live.cluster
discovery = live.discovery
cli = live.cli

pytestmark = pytest.mark.slow

KIND_FLAGS = {"success": "--after", "finished": "--after-any", "failure": "--after-failure"}
PARENT_COMMANDS = {"succeeded": "true", "failed": "false", "cancelled": None}
# What a child of each kind becomes after a parent that ended each way.
EXPECTED = {
    ("success", "succeeded"): ("terminated", "success"),
    ("success", "failed"): ("cancelled", None),
    ("success", "cancelled"): ("cancelled", None),
    ("finished", "succeeded"): ("terminated", "success"),
    ("finished", "failed"): ("terminated", "success"),
    ("finished", "cancelled"): ("terminated", "success"),
    ("failure", "succeeded"): ("cancelled", "skipped (no parent failed)"),
    ("failure", "failed"): ("terminated", "success"),
    ("failure", "cancelled"): ("terminated", "success"),
}


def ended_parent(cli: Cli, cluster: Cluster, outcome: str) -> str:
    command = PARENT_COMMANDS[outcome]
    if command is None:
        (parent,) = submit(cli, "--hold", "--", "true")
        assert cli("cancel", parent).code == 0
    else:
        (parent,) = submit(cli, "--", command)
    cluster.http.wait_state(parent, ("terminated", "cancelled"), timeout=20)
    return parent


def final(cluster: Cluster, task_id: str) -> tuple[str, str | None]:
    doc = cluster.http.wait_state(task_id, ("terminated", "cancelled"), timeout=20)
    return doc["state"], (doc.get("execution") or {}).get("exit_status")


@pytest.mark.parametrize(("kind", "outcome"), list(itertools.product(KIND_FLAGS, PARENT_COMMANDS)))
def test_after_an_ended_parent_is_decided_by_its_outcome(
    cli: Cli, cluster: Cluster, kind: str, outcome: str
) -> None:
    parent = ended_parent(cli, cluster, outcome)
    result = cli("submit", KIND_FLAGS[kind], parent, "--", "true")
    assert result.code == 0, result
    child = result.out.split()[0]
    assert final(cluster, child) == EXPECTED[(kind, outcome)]
    # The link is kept: in continuations, in the tree and for cancel --tree.
    assert cluster.http.task(parent)["continuations"] == [child]
    assert child in cli("tree", parent).out
    assert cluster.http.task(child)["run_when"] == kind


@pytest.mark.parametrize(
    ("kind", "outcome"), list(itertools.product(KIND_FLAGS, ["succeeded", "failed"]))
)
def test_a_child_waits_on_a_running_parent_then_follows_its_kind(
    cli: Cli, cluster: Cluster, tmp_path: Path, kind: str, outcome: str
) -> None:
    gate = tmp_path / "gate"
    code = "0" if outcome == "succeeded" else "1"
    (parent,) = submit(cli, "--", f"while [ ! -e {gate} ]; do sleep 0.05; done; exit {code}")
    cluster.http.wait_state(parent, "running", timeout=20)
    (child,) = submit(cli, KIND_FLAGS[kind], parent, "--", "true")
    assert cluster.http.task(child)["state"] == "inactive"
    gate.touch()
    assert final(cluster, child) == EXPECTED[(kind, outcome)]
    history = cluster.http.history(child)
    ran = EXPECTED[(kind, outcome)] == ("terminated", "success")
    assert bool(history) == ran, history  # a skipped or cancelled child never ran


def test_skipped_task_continuations_follow_the_rules(cli: Cli, cluster: Cluster) -> None:
    """A failure child of a success is skipped; after it, a success child is
    cancelled, a finished child runs, a failure child is skipped too."""
    (parent,) = submit(cli, "--hold", "--", "true")
    (cleanup,) = submit(cli, "--after-failure", parent, "--", "true")
    (after_ok,) = submit(cli, "--after", cleanup, "--", "true")
    (after_any,) = submit(cli, "--after-any", cleanup, "--", "true")
    (after_bad,) = submit(cli, "--after-failure", cleanup, "--", "true")
    assert cli("retry", parent).code == 0
    assert final(cluster, cleanup) == ("cancelled", "skipped (no parent failed)")
    assert final(cluster, after_ok) == ("cancelled", None)
    assert final(cluster, after_any) == ("terminated", "success")
    assert final(cluster, after_bad) == ("cancelled", "skipped (no parent failed)")


def test_failure_child_runs_if_one_of_its_parents_failed(cli: Cli, cluster: Cluster) -> None:
    (good,) = submit(cli, "--hold", "--", "true")
    (bad,) = submit(cli, "--hold", "--", "false")
    (report,) = submit(cli, "--dependency", f"afternotok:{good}:{bad}", "--", "true")
    assert cluster.http.task(report)["run_when"] == "failure"
    assert cli("retry", good).code == 0
    assert final(cluster, good)[1] == "success"
    assert cluster.http.task(report)["state"] == "inactive"  # still waits on bad
    assert cli("retry", bad).code == 0
    assert final(cluster, report) == ("terminated", "success")


def test_slurm_dependency_and_mixed_kinds(cli: Cli, cluster: Cluster) -> None:
    (a,) = submit(cli, "--hold", "--", "true")
    (b,) = submit(cli, "--hold", "--", "true")
    (child,) = submit(cli, "--dependency", f"afterany:{a}:{b}", "--", "true")
    assert cluster.http.task(child)["run_when"] == "finished"
    assert cluster.http.task(child)["pending_dependency_count"] == 2
    before = cluster.http.count()
    mixed = cli("submit", "--after", a, "--after-failure", b, "--", "true")
    assert mixed.code != 0 and "one kind" in mixed.err, mixed
    bad = cli("submit", "--dependency", f"after:{a}", "--", "true")
    assert bad.code != 0 and "'after' is not supported" in bad.err, bad
    assert cluster.http.count() == before
    assert cli("cancel", a, b).code == 0
    assert final(cluster, child) == ("terminated", "success")  # afterany: ended is enough


def test_group_task_from_the_cli(cli: Cli, cluster: Cluster) -> None:
    (a,) = submit(cli, "--hold", "--", "true")
    (group,) = submit(cli, "--group", "stage1", "--after", a)
    doc = cluster.http.task(group)
    assert doc["command"] is None and doc["name"] == "stage1" and doc["state"] == "inactive"
    (after_group,) = submit(cli, "--after", group, "--", "true")
    assert cli("retry", a).code == 0
    assert final(cluster, group) == ("terminated", "success")
    assert final(cluster, after_group) == ("terminated", "success")
    refused = cli("submit", "--group", "g", "--", "echo hi")
    assert refused.code == 2 and "no command" in refused.err, refused


def unique_prefix(cluster: Cluster, task_id: str) -> str:
    """The shortest leading part of ``task_id`` that no other task's id starts with."""
    others = [t["_id"] for t in cluster.http.find_all({}, {"name": 1}) if t["_id"] != task_id]
    return next(
        p for p in itertools.accumulate(task_id) if not any(o.startswith(p) for o in others)
    )


def test_id_prefixes(cli: Cli, cluster: Cluster) -> None:
    (task_id,) = submit(cli, "--hold", "--name", "prefixed", "--", "true")
    (sibling,) = submit(cli, "--hold", "--", "true")
    unique = unique_prefix(cluster, task_id)
    shown = cli("show", unique)
    assert shown.code == 0 and task_id in shown.out, shown
    assert cli("show", unique.upper()).code == 0  # case does not matter
    ambiguous = cli("show", unique[:-1])
    assert ambiguous.code != 0 and "ambiguous" in ambiguous.err, ambiguous
    assert "give more digits" in ambiguous.err
    # The first matches in id order are listed, the rest counted (tasks made in the
    # same second by one server share all but the last digits, so there may be many).
    ids = sorted(t["_id"] for t in cluster.http.find_all({}, {"name": 1}))
    matches = [i for i in ids if i.startswith(unique[:-1])]
    assert task_id in matches and len(matches) > 1
    assert all(i in ambiguous.err for i in matches[:SHOWN_MATCHES]), ambiguous
    if len(matches) > SHOWN_MATCHES:
        assert f"and {len(matches) - SHOWN_MATCHES} more;" in ambiguous.err, ambiguous
    missing = cli("show", "0000")
    assert missing.code != 0 and "no task id starts with 0000" in missing.err, missing
    too_short = cli("show", task_id[:3])
    assert too_short.code != 0 and "at least 4" in too_short.err, too_short
    # Every command takes a prefix: submit --after, tree, retry, wait, logs, cancel.
    (child,) = submit(cli, "--after", unique, "--", "true")
    assert cluster.http.task(task_id)["continuations"] == [child]
    assert child in cli("tree", unique).out
    assert cli("retry", unique).code == 0
    assert cli("wait", unique, unique_prefix(cluster, child), "--timeout", "20").code == 0
    assert cli("logs", unique).code == 0
    assert cli("cancel", unique_prefix(cluster, sibling)).code == 0
    assert cluster.http.task(sibling)["state"] == "cancelled"


def test_patch_cancelled_on_a_running_task_stops_it(cli: Cli, cluster: Cluster) -> None:
    (task_id,) = submit(cli, "--", "sleep 100")
    cluster.http.wait_state(task_id, "running", timeout=20)
    response = cluster.http.patch(task_id, {"state": "cancelled"})
    assert response.status == 200, response
    assert final(cluster, task_id)[0] == "cancelled"


def test_cancel_tree_of_an_ended_parent_reaches_a_child_linked_after_it_ended(
    cli: Cli, cluster: Cluster
) -> None:
    parent = ended_parent(cli, cluster, "succeeded")
    (other,) = submit(cli, "--hold", "--", "true")
    (child,) = submit(cli, "--after", parent, "--after", other, "--", "true")
    assert cluster.http.task(child)["pending_dependency_count"] == 1  # only `other` holds it
    result = cli("cancel", "--tree", parent)
    assert result.code == 0, result
    assert cluster.http.task(child)["state"] == "cancelled"
