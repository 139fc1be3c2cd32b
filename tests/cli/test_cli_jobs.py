"""Jobs and pending reasons in the ``banyan`` CLI, against a real server
process and a real worker process (2 cores): ``--job`` for ls, cancel, wait
and stats; the REASON column, ``show``'s reason, ``wait``'s reason line, the
submit warning and ``--require-fit``."""

from __future__ import annotations

import json

import pytest

from banyan.cli import wait as wait_module
from testbed import Cluster, wait_for
from tests.cli import test_cli_live as live
from tests.cli.test_cli_live import Cli, submit

# The live module's fixtures: a server and a 2-core worker for this module.
cluster = live.cluster
discovery = live.discovery
cli = live.cli

pytestmark = pytest.mark.slow


def test_cancel_job_stops_a_running_array(cli: Cli, cluster: Cluster) -> None:
    result = cli("submit", "--array", "1-3", "--job-name", "sleepers", "--", "sleep 60")
    assert result.code == 0, result
    ids = result.out.split()
    job = ids[0]
    assert f"job {job} (3 tasks)" in result.err
    cluster.http.wait_state(ids[0], "running", timeout=15)
    cluster.http.wait_state(ids[1], "running", timeout=15)
    # The full 2-core worker holds the third queued (prefetch): cancelling it
    # goes through the worker too, which drops it from its queue unstarted.
    # (execution is null until the worker has claimed it)
    wait_for(
        lambda: (cluster.http.task(ids[2])["execution"] or {}).get("queued"),
        15,
        "the third queued",
    )
    listed = cli("ls", "--job", job, "--json")
    assert sorted(t["_id"] for t in json.loads(listed.out)) == sorted(ids)
    cancelled = cli("cancel", "--job", job, "--json")
    assert cancelled.code == 0, cancelled
    states = {r["_id"]: r["state"] for r in json.loads(cancelled.out)}
    assert states == {
        ids[0]: "pending_cancellation",
        ids[1]: "pending_cancellation",
        ids[2]: "pending_cancellation",
    }
    waited = cli("wait", "--job", job, "--timeout", "30", "--json")
    assert waited.code == 1, waited
    assert json.loads(waited.out)["cancelled"] == 3
    for task_id in ids:
        assert cluster.http.task(task_id)["state"] == "cancelled"
    stats = json.loads(cli("stats", "--job", job, "--json").out)
    assert stats["name"] == "sleepers" and stats["counts"] == {"cancelled": 3}
    assert stats["total"] == 3 and stats["time_ended"] is not None


def test_wait_job_exit_status_follows_the_tasks(cli: Cli) -> None:
    good = cli("submit", "--array", "1-3", "--", "true").out.split()
    assert cli("wait", "--job", good[0], "--timeout", "30").code == 0
    shown = cli("stats", "--job", good[0])
    assert shown.code == 0 and "terminated" in shown.out and "3" in shown.out
    mixed = cli("submit", "--array", "1-2", "--", 'test "$BANYAN_TASK_INDEX" = 1').out.split()
    waited = cli("wait", "--job", mixed[0], "--timeout", "30", "--json")
    assert waited.code == 1, waited
    report = json.loads(waited.out)
    assert report["success"] == 1 and report["failed"] == 1
    assert cli("wait", "--job", "0" * 24).code == 1
    assert cli("wait").code == 2


def test_unfittable_submit_warns_and_lists_its_reason(cli: Cli) -> None:
    result = cli("submit", "--name", "too-big", "--cores", "8", "--", "true")
    assert result.code == 0, result
    (task_id,) = result.out.split()
    assert "no connected worker could ever fit it" in result.err
    assert "needs 8 cores" in result.err and "has 2" in result.err
    table = cli("ls", "--where", json.dumps({"_id": task_id}))
    assert "REASON" in table.out and "needs 8 cores" in table.out
    shown = cli("show", task_id)
    assert "reason" in shown.out and "needs 8 cores" in shown.out
    as_json = json.loads(cli("show", task_id, "--json").out)
    assert as_json["pending_reason"]["code"] == "insufficient_resources"
    refused = cli("submit", "--require-fit", "--name", "refused", "--cores", "8", "--", "true")
    assert refused.code != 0 and "needs 8 cores" in refused.err
    none = cli("ls", "--all", "--json", "--where", json.dumps({"name": "refused"}))
    assert json.loads(none.out) == []
    fits = cli("submit", "--require-fit", "--wait", "--timeout", "30", "--", "true")
    assert fits.code == 0 and fits.err == "", fits
    assert cli("cancel", task_id).code == 0


def test_wait_names_the_reason_when_it_has_waited(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wait_module, "REASON_AFTER_S", 0.0)
    (held,) = submit(cli, "--hold", "--", "true")
    result = cli("wait", held, "--timeout", "3")
    assert result.code == 3, result
    assert f"still waiting after 0 s: {held}: held" in result.err
    shown = cli("show", held)
    assert "held: make it available to run" in shown.out
    table = cli("ls", "--where", json.dumps({"_id": held}))
    assert "held" in table.out


def test_job_ids_take_a_unique_prefix(cli: Cli, cluster: Cluster) -> None:
    """A job id is its first task's id, so --job takes a unique prefix as task
    ids do (banyan.client.ids.resolve_job); an ambiguous one is refused."""
    ids = cli("submit", "--array", "1-2", "--job-name", "prefixed", "--", "true").out.split()
    job = ids[0]
    cli("submit", "--", "true")  # another job made in the same second
    jobs = {t["job"] for t in cluster.http.find_all({}, {"job": 1})} - {job}
    unique = next(
        job[:n] for n in range(4, 25) if not any(other.startswith(job[:n]) for other in jobs)
    )
    stats = json.loads(cli("stats", "--job", unique, "--json").out)
    assert stats["name"] == "prefixed" and stats["total"] == 2
    listed = cli("ls", "--all", "--job", unique.upper(), "--json")
    assert sorted(t["_id"] for t in json.loads(listed.out)) == sorted(ids)
    assert cli("wait", "--job", unique, "--timeout", "30").code == 0
    if len(unique) > 4:  # one digit less also starts another job's id
        ambiguous = cli("cancel", "--job", unique[:-1])
        assert ambiguous.code != 0 and "ambiguous" in ambiguous.err, ambiguous
    missing = cli("stats", "--job", "0000")
    assert missing.code != 0 and "no job id starts with 0000" in missing.err, missing
