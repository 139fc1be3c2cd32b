"""The ``banyan`` CLI against a real server process and a real worker process:
exit statuses, continuations, arrays, logs, listings and the event feed.

One ``banyan-server`` and one ``banyan-worker`` process serve the whole
module; discovery finds them through the client file, as on a laptop, and
``cli`` runs ``banyan.cli.main`` in this process with its output captured.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from banyan.cli import main
from testbed import Cluster, clean_env, free_port, wait_for

pytestmark = pytest.mark.slow
BANYAN = Path(sys.executable).parent / "banyan"
WORKER_NAME = "t1"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("cli")) as the_cluster:
        the_cluster.start_server()
        the_cluster.start_worker(WORKER_NAME, cores=2, memory=None)
        the_cluster.wait_connected(WORKER_NAME, timeout=20)
        yield the_cluster


@pytest.fixture
def discovery(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """``banyan`` finds the test server through its client file, as on a laptop."""
    for name in list(os.environ):
        if name.startswith("BANYAN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BANYAN_CLIENT_FILE", str(cluster.client_file))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], discovery: None) -> Callable[..., Result]:
    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


Cli = Callable[..., Result]


def submit(cli: Cli, *argv: str) -> list[str]:
    result = cli("submit", *argv)
    assert result.code == 0, result
    return result.out.split()


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


# --- exit statuses -----------------------------------------------------------------


def test_submit_then_wait_succeeds(cli: Cli) -> None:
    (task_id,) = submit(cli, "--name", "ok", "--", "true")
    result = cli("wait", task_id, "--timeout", "20")
    assert result.code == 0, result
    assert "1 success" in result.out


def test_every_submit_carries_its_own_idempotency_key(cli: Cli, cluster: Cluster) -> None:
    """Each ``banyan submit`` sends a fresh key (so a retried one is made once):
    the server keeps one answer per submit, and two identical submits are two tasks."""

    def keys() -> set[str]:
        with sqlite3.connect(cluster.db) as conn:
            return {key for (key,) in conn.execute("SELECT key FROM idempotency")}

    before = keys()
    first = submit(cli, "--name", "keyed", "--hold", "--", "true")
    second = submit(cli, "--name", "keyed", "--hold", "--", "true")
    assert first != second
    assert len(keys() - before) == 2


def test_submit_wait_flag_follows_the_task(cli: Cli) -> None:
    result = cli("submit", "--wait", "--timeout", "20", "--", "exit 3")
    assert result.code == 1, result
    task_id = result.out.split()[0]
    assert f"{task_id}: failed (failure, exit code 3)" in result.out


def test_failing_task_makes_wait_exit_1(cli: Cli) -> None:
    (ok,) = submit(cli, "--", "true")
    (bad,) = submit(cli, "--", "exit 7")
    result = cli("--json", "wait", ok, bad, "--timeout", "20")
    assert result.code == 1, result
    report = json.loads(result.out)
    assert report["success"] == 1 and report["failed"] == 1
    assert {t["_id"]: t["exit_code"] for t in report["tasks"]}[bad] == 7


def test_cancelled_running_task_makes_wait_exit_1(cli: Cli, cluster: Cluster) -> None:
    (task_id,) = submit(cli, "--", "sleep 30")
    cluster.http.wait_state(task_id, "running", timeout=15)
    result = cli("cancel", task_id)
    assert result.code == 0, result
    assert f"{task_id}: pending_cancellation" in result.out
    result = cli("wait", task_id, "--timeout", "20")
    assert result.code == 1, result
    assert "1 cancelled" in result.out


def test_wait_timeout_exits_3(cli: Cli) -> None:
    (held,) = submit(cli, "--hold", "--", "true")
    result = cli("wait", held, "--timeout", "0.3")
    assert result.code == 3, result
    assert "timed out" in result.err


def test_server_down_is_one_line_and_exit_2(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("BANYAN_SERVER", url)
    # The submit's retries, shortened (the real ones wait about 23 s in all).
    monkeypatch.setattr("banyan.client.http.RETRY_FIRST_S", 0.01)
    for argv in (["ls"], ["wait", "0" * 24], ["events", "--count", "1"], ["submit", "--", "true"]):
        result = cli(*argv)
        assert result.code == 2, (argv, result)
        lines = result.err.splitlines()
        if argv[0] == "submit":  # safe to repeat: it says it waits, once, as sbatch does
            note = lines.pop(0)
            assert note.startswith(f"banyan: cannot connect to {url}"), result
            assert "trying again for up to" in note and "Ctrl-C stops" in note, result
        assert len(lines) == 1 and lines[0].startswith("banyan: "), result
        assert url in result.err
        assert "Traceback" not in result.err
    # Issue 15 item 9: in our words, without aiohttp's "ssl:default [Connect call failed ...]".
    assert cli("ls").err == f"banyan: cannot connect to {url}: connection refused\n"


def test_ls_needs_no_aiohttp(cluster: Cluster) -> None:
    """The CLI's requests go through http.client: aiohttp's import was most of a call's
    start time (issue 15 item 10). A real process, so nothing else imported it."""
    code = (
        "import sys; from banyan.cli import main; code = main(['ls', '--all']); "
        "print(code, 'aiohttp' in sys.modules, file=sys.stderr)"
    )
    env = clean_env(BANYAN_CLIENT_FILE=str(cluster.server.client_file))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stderr.split() == ["0", "False"], done.stderr
    assert "tasks" in done.stdout


def test_bad_token_exits_2(cli: Cli) -> None:
    result = cli("--token", "byn_not_a_real_token", "ls")
    assert result.code == 2, result
    assert result.err.startswith("banyan: ") and result.err.count("\n") == 1
    assert "token" in result.err
    # The option is also accepted after the command name.
    assert cli("workers", "--token", "byn_not_a_real_token").code == 2


def test_unknown_id_exits_1_with_the_servers_message(cli: Cli) -> None:
    for command in ("show", "logs", "tree", "wait", "cancel", "retry"):
        result = cli(command, "ab" * 12)
        assert result.code == 1, (command, result)
        assert result.err == f"banyan: no task with id {'ab' * 12}\n", (command, result)
    assert cli("show", "not-an-id").code == 1


def test_bad_memory_names_the_field_and_sends_nothing(cli: Cli, cluster: Cluster) -> None:
    before = cluster.http.count()
    result = cli("submit", "--memory", "12XB", "--", "true")
    assert result.code == 2, result
    assert result.err.count("\n") == 1
    assert "requested_resources.memory" in result.err and "12XB" in result.err
    assert cli("submit", "--max-termination-time", "soon", "--", "true").code == 2
    assert cluster.http.count() == before


# --- continuations and arrays ----------------------------------------------------


def test_after_chain_runs_in_order(cli: Cli, cluster: Cluster, tmp_path: Path) -> None:
    marks = tmp_path / "order"
    (first,) = submit(cli, "--hold", "--name", "first", "--", f"echo first >> {marks}")
    (second,) = submit(cli, "--after", first, "--name", "second", "--", f"echo second >> {marks}")
    (third,) = submit(cli, "--after", second, "--name", "third", "--", f"echo third >> {marks}")
    waiting = cluster.http.task(third)
    assert waiting["state"] == "inactive" and waiting["pending_dependency_count"] == 1
    tree = cli("tree", first)
    assert tree.code == 0, tree
    assert first in tree.out and second in tree.out and third in tree.out
    assert "0/3 done" in tree.out
    # Released (it was held); the rest follows by itself.
    assert cli("retry", first).code == 0
    result = cli("wait", third, "--timeout", "20")
    assert result.code == 0, result
    assert lines(marks) == ["first", "second", "third"]
    tree = cli("tree", first)
    assert "3/3 done" in tree.out


def test_after_a_parent_that_already_succeeded_runs_at_once(cli: Cli) -> None:
    (parent,) = submit(cli, "--wait", "--timeout", "20", "--", "true")[:1]
    (child,) = submit(cli, "--after", parent, "--", "true")
    assert cli("wait", child, "--timeout", "20").code == 0


def test_after_a_failed_parent_is_linked_and_cancelled(cli: Cli, cluster: Cluster) -> None:
    """The link is kept (tree, cancel --tree see it) and the child, which can
    never run, ends cancelled at once with a warning."""
    result = cli("submit", "--wait", "--timeout", "20", "--", "false")
    parent = result.out.split()[0]
    result = cli("submit", "--after", parent, "--", "true")
    assert result.code == 0, result
    child = result.out.split()[0]
    assert "will not run" in result.err and child in result.err
    assert cluster.http.task(child)["state"] == "cancelled"
    assert cluster.http.task(parent)["continuations"] == [child]


def test_array_is_one_post_and_each_task_sees_its_index(
    cli: Cli, cluster: Cluster, tmp_path: Path
) -> None:
    marks = tmp_path / "indexes"
    result = cli(
        "--json",
        "submit",
        "--array",
        "1-5",
        "--name",
        "sim",
        "--",
        f"echo $BANYAN_TASK_INDEX >> {marks}",
    )
    assert result.code == 0, result
    response = json.loads(result.out)
    assert response["_status"] == "OK" and len(response["_items"]) == 5  # one bulk answer
    ids = [item["_id"] for item in response["_items"]]
    assert cli("wait", *ids, "--timeout", "20").code == 0
    assert sorted(lines(marks), key=int) == ["1", "2", "3", "4", "5"]
    names = {cluster.http.task(i)["name"] for i in ids}
    assert names == {f"sim[{i}]" for i in range(1, 6)}


def test_each_line_gives_each_task_its_entry(cli: Cli, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("alpha\n\nbeta\ngamma\n")
    marks = tmp_path / "entries"
    ids = submit(
        cli, "--each-line", str(inputs), "--", f'echo "$BANYAN_TASK_INDEX:$BANYAN_ENTRY" >> {marks}'
    )
    assert len(ids) == 3
    assert cli("wait", *ids, "--timeout", "20").code == 0
    assert sorted(lines(marks)) == ["0:alpha", "1:beta", "2:gamma"]


# --- following output and events -------------------------------------------------


def test_logs_follow_prints_both_lines(cli: Cli) -> None:
    (task_id,) = submit(cli, "--", "echo a; sleep 1; echo b; echo oops >&2")
    result = cli("logs", "-f", task_id)
    assert result.code == 0, result
    assert result.out == "a\nb\n"
    assert cli("logs", task_id, "--stderr").out == "oops\n"
    assert cli("logs", task_id, "--tail", "1").out == "b\n"


def test_events_since_0_count_3(cli: Cli) -> None:
    result = cli("events", "--since", "0", "--count", "3")
    assert result.code == 0, result
    events = [json.loads(line) for line in result.out.splitlines()]
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert all({"type", "time", "data"} <= e.keys() for e in events)


def test_events_types_filter(cli: Cli) -> None:
    (task_id,) = submit(cli, "--hold", "--", "true")
    result = cli(
        "events",
        "--since",
        "0",
        "--types",
        "task.created",
        "--where",
        json.dumps({"_id": task_id}),
        "--count",
        "1",
    )
    assert result.code == 0, result
    (event,) = [json.loads(line) for line in result.out.splitlines()]
    assert event["type"] == "task.created" and event["data"]["_id"] == task_id


# --- listings --------------------------------------------------------------------


def test_ls_hides_ended_tasks_unless_asked(cli: Cli) -> None:
    (held,) = submit(cli, "--hold", "--name", "ls-held", "--queue", "lsq", "--", "true")
    (done,) = submit(cli, "--wait", "--timeout", "20", "--name", "ls-done", "--", "true")[:1]
    mine = json.dumps({"name": {"$in": ["ls-held", "ls-done"]}})

    def listed(*argv: str) -> list[str]:
        result = cli("ls", "--where", mine, "--json", *argv)
        assert result.code == 0, result
        return [t["_id"] for t in json.loads(result.out)]

    assert listed() == [held]
    assert listed("--all") == [held, done]
    assert listed("--state", "terminated") == [done]
    assert listed("--queue", "lsq", "--all") == [held]
    assert listed("--all", "--limit", "1") == [done]  # the newest
    table = cli("ls", "--queue", "lsq")
    assert table.code == 0 and held in table.out and "ls-held" in table.out
    assert cli("ls", "--where", "{not json").code == 2


def test_ls_newest_is_by_creation_time_not_id(cli: Cli, cluster: Cluster) -> None:
    # A client-chosen id that sorts after every generated one, created first.
    (chosen,) = cluster.http.submit([{"_id": "aa" * 12, "name": "ls-new", "state": "inactive"}])
    (newest,) = submit(cli, "--hold", "--name", "ls-new", "--", "true")
    mine = json.dumps({"name": "ls-new"})
    result = cli("ls", "--all", "--limit", "1", "--where", mine, "--json")
    assert [t["_id"] for t in json.loads(result.out)] == [newest], result
    result = cli("ls", "--all", "--where", mine, "--json")
    assert [t["_id"] for t in json.loads(result.out)] == [chosen, newest], result


def test_show_fields_execution_and_attempts(cli: Cli) -> None:
    (task_id,) = submit(
        cli, "--wait", "--timeout", "20", "--name", "shown", "--memory", "1 MiB", "--", "true"
    )[:1]
    result = cli("show", task_id)
    assert result.code == 0, result
    for text in (task_id, "shown", "success", "Execution", "Attempts", "t1", "1 MiB"):
        assert text in result.out, text
    data = json.loads(cli("show", task_id, "--json").out)
    assert data["task"]["_id"] == task_id
    assert data["history"][0]["worker"] == "t1"


def test_workers_table_and_json(cli: Cli) -> None:
    result = cli("workers")
    assert result.code == 0, result
    assert "t1" in result.out and "/2" in result.out
    (worker,) = [w for w in json.loads(cli("workers", "--json").out) if w["name"] == "t1"]
    assert worker["capacity"]["cores"] == 2


def test_workers_hides_those_that_left_unless_all(cli: Cli, cluster: Cluster) -> None:
    leaver = cluster.start_worker("leaver", cores=1)
    try:
        wait_for(lambda: "leaver" in cluster.http.workers(), 20, "the second worker to join")
    finally:
        leaver.stop(grace_s=10)  # SIGTERM: it leaves
    wait_for(lambda: cluster.http.workers()["leaver"]["state"] == "left", 20, "it to leave")

    def names(*argv: str) -> dict[str, str]:
        result = cli("workers", "--json", *argv)
        assert result.code == 0, result
        return {w["name"]: w["state"] for w in json.loads(result.out)}

    assert "leaver" not in names() and WORKER_NAME in names()
    assert names("--all")["leaver"] == "left"
    table = cli("workers", "--all")
    assert "leaver" in table.out and "left" in table.out
    assert "GONE" in table.out  # when each departed worker went, beside its last heartbeat
    (row,) = [line for line in table.out.splitlines() if line.startswith("leaver")]
    assert row.count(" ago") == 2, row
    hidden = cli("workers")
    assert "GONE" not in hidden.out
    assert "leaver" not in hidden.out and "1 left or lost (--all shows them)" in hidden.out


def test_stats_renders_or_says_clearly_it_is_missing(cli: Cli) -> None:
    result = cli("stats")
    if result.code == 0:
        assert "Tasks" in result.out
        assert isinstance(json.loads(cli("stats", "--json").out), dict)
    else:
        assert result.code == 1
        assert result.err.startswith("banyan: ") and "/stats" in result.err


def test_retry_runs_a_failed_task_again(cli: Cli, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    result = cli("submit", "--wait", "--timeout", "20", "--", f"test -e {flag}")
    task_id = result.out.split()[0]
    assert result.code == 1
    flag.touch()
    retried = cli("retry", task_id)
    assert retried.code == 0 and f"{task_id}: available" in retried.out
    assert cli("wait", task_id, "--timeout", "20").code == 0
    assert cli("retry", task_id).code == 1  # a success cannot be retried


def test_cancel_tree_stops_the_running_descendants(cli: Cli, cluster: Cluster) -> None:
    (root,) = submit(cli, "--hold", "--", "true")
    (child,) = submit(cli, "--after", root, "--", "sleep 30")
    (grandchild,) = submit(cli, "--after", child, "--", "true")
    assert cluster.http.patch(root, {"state": "available"}).status == 200
    cluster.http.wait_state(child, "running", timeout=15)
    result = cli("cancel", "--tree", root, "--json")
    assert result.code == 0, result
    states = {r["_id"]: r["state"] for r in json.loads(result.out)}
    assert states == {child: "pending_cancellation", grandchild: "cancelled"}
    assert cli("wait", child, grandchild, "--timeout", "20").code == 1
    assert cluster.http.task(root)["state"] == "terminated"


def test_interrupt_exits_130_quietly(cluster: Cluster, tmp_path: Path) -> None:
    held = cluster.http.submit([{"command": "true"}])[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANYAN_")}
    env["BANYAN_CLIENT_FILE"] = str(cluster.client_file)
    proc = subprocess.Popen(
        [str(BANYAN), "wait", held],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # It has printed its warning about the held task: it is waiting now.
        assert proc.stderr is not None
        assert b"inactive" in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert err == b""
