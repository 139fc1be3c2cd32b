"""``banyan submit``: one task, an array of tasks, or continuations of existing ones.

Everything is validated locally with ``TaskCreate`` (the model the server
uses), so a bad unit is one clear line before anything is sent. An array
(``--array``/``--each-line``) is one bulk POST: all of it is created or none.

``--after ID`` (run once it succeeds), ``--after-any ID`` (once it ends,
whatever the outcome) and ``--after-failure ID`` (only if it, or another
parent, failed), or Slurm's ``--dependency afterok:ID:ID,afterany:ID,
afternotok:ID``, make the new task(s) continuations of existing tasks, with
the matching ``run_when``. A task's parents are all of one kind: mixed kinds
are refused. The tasks are created inactive and then linked (one
``add_continuations`` request for all parents, all or nothing); the server
starts them when their parents allow it. A parent that has already ended is
decided at once from its outcome: a task that can then never run ends
cancelled (or skipped), and a warning says so. ``--group NAME`` with no
command makes a group task, which others can name with ``--after``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from banyan import constants as c
from banyan.cli.context import Context, UsageError, check_ids
from banyan.cli.output import warn
from banyan.client.ids import resolve_ids
from banyan.client.linking import ended_children, link_after
from banyan.dates import next_time_of_day, parse_begin
from banyan.dependencies import RunWhen, one_kind, parse_slurm
from banyan.errors import BanyanError

INDEX_ENV = "BANYAN_TASK_INDEX"
ENTRY_ENV = "BANYAN_ENTRY"

EPILOG = """\
examples:
  banyan submit -- ./train.sh --epochs 10
  banyan submit --name build --cores 4 --memory "8 GiB" -- 'make -j4 && make test'
  banyan submit --queue gpu --gpus 1 --priority 10 --retries 2 -- python fit.py
  banyan submit --after 6650f0c2a1b2c3d4e5f60718 -- ./report.sh   # runs once that task succeeds
  banyan submit --after-failure 6650f0c2a1b2 -- ./alert.sh   # only if it failed (id prefix)
  banyan submit --dependency afterany:6650f0c2a1b2 -- ./cleanup.sh   # Slurm's syntax
  banyan submit --group stage1 --after ID --after ID   # a barrier others can --after
  banyan submit --hold -- ./later.sh              # inactive until 'banyan retry ID'
  banyan submit --array 1-100 -- 'python sim.py --seed $BANYAN_TASK_INDEX'
  banyan submit --each-line inputs.txt -- 'gzip "$BANYAN_ENTRY"'
  banyan submit --wait -- ./quick.sh              # then wait like 'banyan wait'
  banyan submit --time-limit "2 hours" -- ./train.sh   # stopped after 2 h: failure (time limit)
  banyan submit --begin 02:00 -- ./nightly.sh     # not before 02:00 local time (also now+10minutes)

The command runs in a shell on the worker. One argument is taken as the
shell command as written ('a && b'); several are joined with shell quoting.
Array tasks get $BANYAN_TASK_INDEX (the index; 0-based line number for
--each-line) and $BANYAN_ENTRY (the line), and are named NAME[INDEX].
Memory: bytes or "512 MiB", "2GB", "4G"; durations: seconds or "90s",
"10 minutes", "1h30m". Prints the new id(s), one per line.
"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "submit",
        parents=parents,
        help="submit a task (or an array of tasks)",
        description="Submit a task, an array of tasks, or continuations of existing tasks.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--name", help="task name (array tasks: NAME[INDEX])")
    p.add_argument("--cores", help="cores, fractions allowed (default 1)")
    p.add_argument("--memory", help='memory to reserve, e.g. "4 GiB"')
    p.add_argument("--gpus", help="number of GPUs")
    p.add_argument(
        "--resource",
        action="append",
        default=[],
        metavar="NAME=AMOUNT",
        help="a custom resource, e.g. licences=1 (repeatable)",
    )
    p.add_argument("--queue", help=f"queue (default {c.DEFAULT_QUEUE!r})")
    p.add_argument("--priority", type=int, help="higher runs first (default 0)")
    p.add_argument("--retries", type=int, metavar="N", help="retries after a failure (default 0)")
    p.add_argument(
        "--after",
        action="append",
        default=[],
        metavar="ID",
        help="run after this task succeeds (repeatable)",
    )
    p.add_argument(
        "--after-any",
        action="append",
        default=[],
        metavar="ID",
        help="run after this task ends, whatever the outcome (repeatable; Slurm's afterany)",
    )
    p.add_argument(
        "--after-failure",
        action="append",
        default=[],
        metavar="ID",
        help="run only if this task (or another parent) failed (repeatable; afternotok)",
    )
    p.add_argument(
        "--dependency",
        "-d",
        metavar="SPEC",
        help="Slurm's form: afterok:ID[:ID...],afterany:ID,afternotok:ID",
    )
    p.add_argument(
        "--group",
        metavar="NAME",
        help="a group task (no command) named NAME: ends with success once its parents allow",
    )
    p.add_argument("--hold", action="store_true", help="submit inactive (not claimable yet)")
    p.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="environment (repeatable)"
    )
    p.add_argument("--cwd", metavar="DIR", help="working directory on the worker")
    p.add_argument(
        "--max-termination-time", metavar="DUR", help="SIGTERM→SIGKILL grace (default 10 minutes)"
    )
    p.add_argument("--estimated-runtime", metavar="DUR", help="expected run time")
    p.add_argument(
        "--time-limit",
        metavar="DUR",
        help="wall-time limit of each attempt; then stopped, 'failure (time limit)' "
        "(default: the server's default_time_limit_s, off unless set)",
    )
    p.add_argument(
        "--begin",
        metavar="WHEN",
        help="not before then: a date (ISO 8601), a local time of day '16:00', "
        "a duration from now '10 minutes', or 'now+10minutes'",
    )
    p.add_argument(
        "--max-abandons",
        type=int,
        metavar="N",
        help="reruns after its worker died or was stopped (default 3)",
    )
    array = p.add_mutually_exclusive_group()
    array.add_argument("--array", metavar="SPEC", help="an array: 1-100, 1-100:2 or 1,5,7")
    array.add_argument("--each-line", metavar="FILE", help="one task per non-empty line of FILE")
    p.add_argument("--job-name", metavar="NAME", help="the job's name (default: the first task's)")
    p.add_argument(
        "--require-fit",
        action="store_true",
        help="refuse the submit if no connected worker could ever fit it (else: a warning)",
    )
    p.add_argument("--wait", action="store_true", help="then wait for the task(s) to end")
    p.add_argument("--timeout", metavar="S", help="with --wait: give up after this long (exit 3)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    p.set_defaults(handler=run)


# --- building the tasks --------------------------------------------------------


def command_text(words: list[str]) -> str:
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise UsageError("no command given: banyan submit [OPTIONS] -- COMMAND...")
    return words[0] if len(words) == 1 else shlex.join(words)


def parse_array(text: str) -> list[int]:
    """``"1-100"``, ``"1-100:2"``, ``"1,5,7"`` or a mix (``"1-3,10"``) → the indexes."""
    indexes: dict[int, None] = {}
    for part in text.split(","):
        match = re.fullmatch(r"\s*([0-9]+)(?:-([0-9]+)(?::([0-9]+))?)?\s*", part)
        if match is None:
            raise UsageError(f"invalid --array {text!r}: expected e.g. 1-100, 1-100:2 or 1,5,7")
        start = int(match[1])
        end = int(match[2]) if match[2] is not None else start
        step = int(match[3]) if match[3] is not None else 1
        if end < start or step < 1:
            raise UsageError(f"invalid --array {text!r}: {part.strip()} is an empty range")
        if len(indexes) + (end - start) // step + 1 > c.MAX_BULK_ITEMS:
            raise UsageError(f"invalid --array {text!r}: at most {c.MAX_BULK_ITEMS} tasks")
        indexes.update(dict.fromkeys(range(start, end + 1, step)))
    return list(indexes)


def read_lines(path: str) -> list[str]:
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --each-line {path}: {exc}") from exc
    if not lines:
        raise UsageError(f"--each-line {path}: the file has no non-empty line")
    if len(lines) > c.MAX_BULK_ITEMS:
        raise UsageError(f"--each-line {path}: at most {c.MAX_BULK_ITEMS} lines")
    return lines


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid {option} {text!r}: expected NAME=VALUE")
        out[key] = value
    return out


def _number(text: str) -> int | float | str:
    """A number if it reads as one; else the text, for the model to name the field."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def dependencies(args: argparse.Namespace) -> tuple[RunWhen, list[str]]:
    """The kind and the parents from ``--after*`` and ``--dependency``."""
    pairs = [(RunWhen.SUCCESS, i) for i in args.after]
    pairs += [(RunWhen.FINISHED, i) for i in args.after_any]
    pairs += [(RunWhen.FAILURE, i) for i in args.after_failure]
    if args.dependency:
        pairs += parse_slurm(args.dependency)
    kind = one_kind({k for k, _ in pairs})
    return kind, check_ids(i for _, i in pairs)


def base_task(args: argparse.Namespace) -> dict[str, Any]:
    """The fields every task of this submission shares, as the user wrote them."""
    task: dict[str, Any] = {}
    if args.group is not None:
        words = args.command[1:] if args.command[:1] == ["--"] else args.command
        if words:
            raise UsageError("--group makes a task with no command: drop the command")
        task["name"] = args.group
    else:
        task["command"] = command_text(args.command)
    resources: dict[str, Any] = {}
    if args.cores is not None:
        resources["cores"] = _number(args.cores)
    if args.memory is not None:
        resources["memory"] = _number(args.memory)
    if args.gpus is not None:
        resources["gpus"] = _number(args.gpus)
    for key, value in _pairs(args.resource, "--resource").items():
        resources[key] = _number(value)
    if resources:
        task["requested_resources"] = resources
    optional = {
        "name": args.name,
        "queue": args.queue,
        "priority": args.priority,
        "max_retry_count": args.retries,
        "max_termination_time": args.max_termination_time,
        "estimated_runtime": args.estimated_runtime,
        "cwd": os.path.abspath(args.cwd) if args.cwd else None,
        "time_limit": args.time_limit,
        "not_before": None if args.begin is None else begin_time(args.begin),
        "max_abandon_count": args.max_abandons,
    }
    task.update({k: v for k, v in optional.items() if v is not None})
    env = _pairs(args.env, "--env")
    if env:
        task["env"] = env
    run_when, parents = dependencies(args)
    if run_when is not RunWhen.SUCCESS:
        task["run_when"] = run_when.value
    if parents and args.hold:
        raise UsageError(
            "--hold cannot be combined with --after: a continuation starts when its parents allow"
        )
    if args.group is not None and (args.array is not None or args.each_line is not None):
        raise UsageError("--group makes one task: it cannot be combined with --array/--each-line")
    task["state"] = "inactive" if args.hold or parents else "available"
    return task


def begin_time(text: str) -> str:
    """``--begin`` as an ISO 8601 date for the server: a time of day is this
    machine's local clock (as Slurm reads it), the rest as ``not_before`` reads
    them, resolved now so that every task of an array gets the same time."""
    now = time.time()
    local = datetime.now().astimezone().tzinfo
    at = next_time_of_day(text.strip(), now, local) if local is not None else None
    try:
        epoch = at if at is not None else parse_begin(text, now)
    except ValueError as exc:
        raise UsageError(f"--begin: {exc}") from exc
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _array_name(base: dict[str, Any]) -> str:
    if base.get("name"):
        return str(base["name"])
    words = shlex.split(base["command"], comments=False) if base.get("command") else []
    return os.path.basename(words[0]) if words else "task"


def build_tasks(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The validated task bodies to POST (one, or one per array index/line)."""
    base = base_task(args)
    items: list[tuple[int, str | None]] = []
    if args.array is not None:
        items = [(i, None) for i in parse_array(args.array)]
    elif args.each_line is not None:
        items = list(enumerate(read_lines(args.each_line)))
    if not items:
        return [validate(base, what="task")]
    try:
        name = _array_name(base)
    except ValueError:  # unbalanced quotes: the worker's shell will say so
        name = "task"
    tasks = []
    for index, entry in items:
        env = {**base.get("env", {}), INDEX_ENV: str(index)}
        if entry is not None:
            env[ENTRY_ENV] = entry
        task = {**base, "name": f"{name}[{index}]", "env": env}
        tasks.append(validate(task, what=f"task [{index}]"))
    return tasks


def validate(task: dict[str, Any], *, what: str) -> dict[str, Any]:
    """The body the server will accept, or ``InvalidInput`` naming the field."""
    from pydantic import ValidationError

    from banyan.models import TaskCreate
    from banyan.validation import from_validation

    try:
        model = TaskCreate.model_validate(task)
    except ValidationError as exc:
        raise from_validation(exc, what=what) from None
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


# --- sending -------------------------------------------------------------------


async def run(ctx: Context) -> int:
    args = ctx.args
    tasks = build_tasks(args)
    _, texts = dependencies(args)
    async with ctx.client() as client:
        # Unknown or ambiguous parents are refused before anything is created.
        parents = await resolve_ids(client, texts)
        bulk = args.array is not None or args.each_line is not None
        response = await client.submit(
            tasks if bulk else tasks[0], job_name=args.job_name, require_fit=args.require_fit
        )
        for warning in response.get("_warnings") or []:
            warn(warning)
        ids = [i["_id"] for i in response["_items"]] if bulk else [response["_id"]]
        if parents:
            try:
                await link_after(client, parents, ids)
            except BanyanError:
                # Do not leave unlinked inactive tasks behind.
                with contextlib.suppress(BanyanError):
                    await client.update_many([{"_id": i, "state": "cancelled"} for i in ids])
                raise
            for doc in await ended_children(client, ids):
                status = (doc.get("execution") or {}).get("exit_status") or doc["state"]
                warn(
                    f"task {doc['_id']} will not run ({status}): its parents' outcomes rule it out"
                )
    if ctx.out.json_mode:
        ctx.out.json(response)
    else:
        for task_id in ids:
            ctx.out.line(task_id)
        if bulk and ids:
            warn(f"job {ids[0]} ({len(ids)} tasks): banyan wait --job {ids[0]}")
    if args.wait:
        from banyan.cli.wait import wait_for_tasks

        return await wait_for_tasks(ctx, ids, timeout=args.timeout)
    return 0
