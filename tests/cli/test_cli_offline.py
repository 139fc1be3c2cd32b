"""The ``banyan`` CLI without a server: help texts, argument parsing, the task
bodies ``submit`` builds, and the renderings of ``stats`` and ``tree``."""

from __future__ import annotations

import io
import subprocess
import sys
from typing import Any

import pytest
from rich.console import Console

from banyan.cli import build_parser, main
from banyan.cli.context import UsageError
from banyan.cli.ls import ls_query
from banyan.cli.stats import render_stats
from banyan.cli.submit import build_tasks, command_text, parse_array
from banyan.cli.tree import build_tree, subtree_summary
from banyan.errors import InvalidInput

COMMANDS = [
    "submit",
    "ls",
    "show",
    "tree",
    "cancel",
    "retry",
    "wait",
    "logs",
    "workers",
    "stats",
    "events",
    "progress",
]

# The shape GET /stats answers with.
STATS: dict[str, Any] = {
    "tasks": {
        "total": 12,
        "by_state": {"available": 3, "running": 2, "terminated": 7},
        "by_queue": {
            "default": {"available": 1, "running": 2, "terminated": 7},
            "gpu": {"available": 2},
        },
        "oldest_available": {"default": "Tue, 01 Dec 2026 10:00:00 GMT", "gpu": None},
    },
    "workers": {
        "total": 3,
        "idle": 1,
        "busy": 1,
        "draining": 0,
        "disconnected": 0,
        "lost": 1,
        "left": 0,
        "capacity": {"cores": 8, "memory": 17179869184, "gpus": 2},
        "in_use": {"cores": 2.5, "memory": 1073741824, "gpus": 1},
    },
    "throughput": {"1m": 4, "5m": 12.5, "15m": 30},
    "wait_time_s": {"p50": 1.5, "p90": 12, "p99": 95.25, "count": 7},
    "run_time_s": {"p50": 0.2, "p90": 3, "p99": 4000, "count": 7},
}


def render(*renderables: Any) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200, highlight=False).print(*renderables)
    return buffer.getvalue()


def submit_args(*argv: str) -> Any:
    return build_parser().parse_args(["submit", *argv])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: banyan {command}")
    assert "examples" in out


def test_top_level_help_lists_commands_and_exit_statuses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    assert "exit status" in out


def test_wait_help_documents_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wait", "--help"]) == 0
    out = capsys.readouterr().out
    for line in ("0  every task succeeded", "1  a task failed", "2  connection", "3  --timeout"):
        assert line in out


def test_usage_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "--priority", "high", "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--priority" in err
    assert main(["frobnicate"]) == 2
    assert main(["ls", "--state", "sleeping"]) == 2


def test_progress_outside_a_task_keeps_its_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BANYAN_PROGRESS_SOCKET", raising=False)
    assert main(["progress", "40", "loading"]) == 2
    assert capsys.readouterr().err.startswith("banyan progress: not inside a Banyan task")


def test_local_validation_needs_no_server(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pointed at nothing: the bad unit is reported before any connection.
    monkeypatch.setenv("BANYAN_SERVER", "http://127.0.0.1:9")
    monkeypatch.setenv("BANYAN_TOKEN", "byn_x")
    assert main(["submit", "--memory", "12XB", "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("banyan: invalid task: requested_resources.memory: invalid memory")
    assert main(["submit", "--array", "5-1", "--", "true"]) == 2
    assert main(["submit", "--"]) == 2
    assert "no command" in capsys.readouterr().err


# --- what submit sends -------------------------------------------------------------


def test_parse_array() -> None:
    assert parse_array("1-5") == [1, 2, 3, 4, 5]
    assert parse_array("1-10:3") == [1, 4, 7, 10]
    assert parse_array("1,5,7") == [1, 5, 7]
    assert parse_array("0-2,2,9") == [0, 1, 2, 9]
    for bad in ("", "a-b", "5-1", "1-3:0", "1-"):
        with pytest.raises(UsageError):
            parse_array(bad)


def test_command_text_keeps_one_argument_as_a_shell_command() -> None:
    assert command_text(["--", "echo a; echo b"]) == "echo a; echo b"
    assert command_text(["echo", "two words", "$HOME"]) == "echo 'two words' '$HOME'"


def test_one_task_body() -> None:
    (task,) = build_tasks(
        submit_args(
            "--name", "fit", "--cores", "0.5", "--memory", "2 GiB", "--gpus", "1",
            "--resource", "licences=2", "--queue", "gpu", "--priority", "5", "--retries", "2",
            "--env", "A=1=2", "--max-termination-time", "90s", "--estimated-runtime", "1h",
            "--", "python", "fit.py",
        )
    )  # fmt: skip
    assert task == {
        "name": "fit",
        "command": "python fit.py",
        "state": "available",
        "requested_resources": {"cores": 0.5, "memory": 2 * 1024**3, "gpus": 1, "licences": 2.0},
        "queue": "gpu",
        "priority": 5,
        "max_retry_count": 2,
        "max_termination_time": 90.0,
        "estimated_runtime": 3600.0,
        "env": {"A": "1=2"},
    }


def test_hold_and_after_submit_inactive() -> None:
    assert build_tasks(submit_args("--hold", "--", "true"))[0]["state"] == "inactive"
    after = build_tasks(submit_args("--after", "ab" * 12, "--", "true"))
    assert after[0]["state"] == "inactive"
    with pytest.raises(UsageError, match="--hold cannot be combined with --after"):
        build_tasks(submit_args("--hold", "--after", "ab" * 12, "--", "true"))


def test_array_bodies_carry_index_and_name() -> None:
    tasks = build_tasks(submit_args("--array", "1-3", "--env", "K=v", "--", "./run.sh"))
    assert [t["name"] for t in tasks] == ["run.sh[1]", "run.sh[2]", "run.sh[3]"]
    assert [t["env"] for t in tasks] == [{"K": "v", "BANYAN_TASK_INDEX": str(i)} for i in (1, 2, 3)]


def test_each_line_bodies(tmp_path: Any) -> None:
    path = tmp_path / "lines"
    path.write_text("a b\n\n  \nc\n")
    tasks = build_tasks(submit_args("--name", "zip", "--each-line", str(path), "--", "gzip"))
    assert [(t["name"], t["env"]["BANYAN_ENTRY"]) for t in tasks] == [
        ("zip[0]", "a b"),
        ("zip[1]", "c"),
    ]
    with pytest.raises(UsageError, match="cannot read"):
        build_tasks(submit_args("--each-line", str(tmp_path / "missing"), "--", "true"))


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--memory", "12XB"], "requested_resources.memory"),
        (["--cores", "lots"], "requested_resources.cores"),
        (["--gpus", "-1"], "requested_resources.gpus"),
        (["--queue", "no spaces"], "queue"),
        (["--estimated-runtime", "a while"], "estimated_runtime"),
        (["--resource", "licences=x"], "requested_resources.licences"),
    ],
)
def test_bad_values_name_their_field(argv: list[str], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        build_tasks(submit_args(*argv, "--", "true"))
    assert field in caught.value.issues
    assert caught.value.message.startswith(f"invalid task: {field}: ")


# --- ls, tree, stats ---------------------------------------------------------------


def test_ls_query() -> None:
    parser = build_parser()
    assert ls_query(parser.parse_args(["ls"])) == {"state": {"$nin": ["terminated", "cancelled"]}}
    assert ls_query(parser.parse_args(["ls", "--all"])) == {}
    query = ls_query(parser.parse_args(["ls", "--state", "running", "--queue", "q"]))
    assert query == {"$and": [{"state": {"$in": ["running"]}}, {"queue": "q"}]}


def _task(task_id: str, state: str, continuations: list[str], status: str | None = None) -> Any:
    return {
        "_id": task_id,
        "name": task_id,
        "state": state,
        "continuations": continuations,
        "execution": {"exit_status": status} if status else None,
    }


def test_tree_summaries_and_shared_children() -> None:
    tasks = {
        "a": _task("a", "terminated", ["b", "c"], "success"),
        "b": _task("b", "terminated", ["d"], "failure"),
        "c": _task("c", "running", ["d"]),
        "d": _task("d", "cancelled", []),
    }
    assert subtree_summary(tasks, "a") == "1/4 done, 1 failed, 1 cancelled, 1 running"
    assert subtree_summary(tasks, "c") == "0/2 done, 1 cancelled, 1 running"
    drawn = render(build_tree(tasks, "a")).splitlines()
    assert [line.split()[-1] for line in drawn[1:]] == [
        "cancelled]",
        "cancelled",
        "running]",
        "above)",
    ]
    assert drawn[2].endswith("d d  cancelled") and drawn[4].endswith("d (shown above)")


def test_stats_rendering() -> None:
    text = render(*render_stats(STATS))
    for expected in (
        "default",
        "gpu",
        "all (12)",
        "Tue, 01 Dec 2026 10:00:00 GMT",
        "3 (1 idle, 1 busy, 1 lost)",
        "memory 16 GiB",
        "cores 2.5",
        "12.5 in 5m",
        "p99 1m 35.25s",
        "(7 tasks)",
    ):
        assert expected in text, expected
    assert "Tasks" in render(*render_stats({}))  # a partial answer still renders


def test_the_cli_starts_without_its_heavy_modules() -> None:
    """Issue 15 item 10: aiohttp, pydantic and rich are most of a call's start time;
    ``--help`` and usage errors need none of them, so importing the CLI loads none
    (and its requests go through http.client: see test_ls_needs_no_aiohttp)."""
    heavy = ("aiohttp", "pydantic", "pydantic_settings", "rich", "yarl", "asyncio")
    code = f"import sys, banyan.cli.main; print(*[m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []
