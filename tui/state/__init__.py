"""The TUI's pure state, one idea a module; nothing here does I/O or imports
Textual, and every function takes ``now`` when it needs a clock, so tests
and snapshots are deterministic.

- ``records``: ``Task`` and ``Worker``, built from the API's documents
- ``looks``: state → glyph and style, load bars, heartbeat levels
- ``model``: the ``Model`` (snapshot + live updates) and its derived figures
- ``feed``: the event reducer on ``banyan.events``' typed events, one function
  per event type (``readable`` turns a feed frame into one)
- ``queues``: the queues view's rows
- ``filters``: the filter language and the sort orders
- ``rows``: which rows the task table holds (``TaskView``, ``RowPlan``)
- ``trees``: continuation trees (the rules are ``banyan.client.trees``)
- ``link``: whether the data is live, and the event rate
- ``commands``: the ``:`` command line
"""

from tui.state.commands import COMMANDS, parse_command
from tui.state.feed import readable
from tui.state.filters import (
    FILTER_FIELDS,
    SORT_KEYS,
    STATUS_ALIASES,
    Filter,
    FilterError,
    Sort,
    Term,
    matches,
    parse_filter,
    parse_sort,
    sort_key,
)
from tui.state.jobs import JobRow, job_rows
from tui.state.link import STALE_AFTER_S, Link, RateMeter, rate_text
from tui.state.looks import (
    STATUS_LOOK,
    STATUS_RANK,
    STATUSES,
    bar,
    heartbeat_level,
    load_style,
    look,
    status_of,
    unresponsive,
)
from tui.state.model import Changes, Model, WorkerUse, counts_from_tasks
from tui.state.queues import QueueRow, finished_note, queue_rows
from tui.state.records import (
    ACTIVE_STATES,
    FINAL_STATES,
    Task,
    Worker,
    cancellable,
    clock_text,
    created_from_id,
    parse_time,
    retryable,
    run_time,
    short_age,
    short_id,
    task_from_doc,
    worker_from_doc,
)
from tui.state.rows import RowPlan, TaskView
from tui.state.trees import (
    MAX_TREE_NODES,
    TreeNode,
    build_tree,
    descendants,
    missing_in_tree,
    subtree_summary,
    tree_root,
)

__all__ = [
    "ACTIVE_STATES",
    "COMMANDS",
    "FILTER_FIELDS",
    "FINAL_STATES",
    "MAX_TREE_NODES",
    "SORT_KEYS",
    "STALE_AFTER_S",
    "STATUSES",
    "STATUS_ALIASES",
    "STATUS_LOOK",
    "STATUS_RANK",
    "Changes",
    "Filter",
    "FilterError",
    "JobRow",
    "Link",
    "Model",
    "QueueRow",
    "RateMeter",
    "RowPlan",
    "Sort",
    "Task",
    "TaskView",
    "Term",
    "TreeNode",
    "Worker",
    "WorkerUse",
    "bar",
    "build_tree",
    "cancellable",
    "clock_text",
    "counts_from_tasks",
    "created_from_id",
    "descendants",
    "finished_note",
    "heartbeat_level",
    "job_rows",
    "load_style",
    "look",
    "matches",
    "missing_in_tree",
    "parse_command",
    "parse_filter",
    "parse_sort",
    "parse_time",
    "queue_rows",
    "rate_text",
    "readable",
    "retryable",
    "run_time",
    "short_age",
    "short_id",
    "sort_key",
    "status_of",
    "subtree_summary",
    "task_from_doc",
    "tree_root",
    "unresponsive",
    "worker_from_doc",
]
