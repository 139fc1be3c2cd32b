"""The store under random operation sequences (issue 6): a hypothesis
``RuleBasedStateMachine`` drives the real SQLite store (a fresh file per
run, through the ``server.stores.base.Store`` interface) with submissions (trees
with continuations, group tasks), claims by two workers with finite
capacity, progress reports, ends (success, failure, cancelled), state
changes by users (every target state, legal or not), cancels of one task or a
whole tree, retries, continuation edits and lost workers. After every step
the invariants below are checked against the database itself (its tables,
its event log, its trigger-maintained counts).

The store's clock is a counter the machine advances, so nothing depends on
how fast this machine is.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from banyan.dependencies import SKIPPED
from banyan.errors import Conflict, InvalidInput
from banyan.models import BulkPatchItem, ContinuationEdit, TaskCreate, TaskPatch
from banyan.resources import Resources
from banyan.states import (
    ACTIVE_STATES,
    CANCELLED_STATUS,
    FAILURE,
    SUCCESS,
    TRANSITIONS,
    Actor,
    State,
    transition,
)
from banyan.tokens import Caller, Role
from server.domain.transitions import cancel_means_stop
from server.stores.sqlite.store import SqliteStore

T = TypeVar("T")
OWNER = Caller("alice", Role.PROVIDER)
CAPACITY = {"w1": Resources(cores=4, memory=4 << 30, gpus=1), "w2": Resources(cores=2)}
QUEUES = ["default", "gpu"]
_S = State

# Moves the table in banyan/states.py does not list but the store makes, each
# a documented composite of table moves:
DERIVED_MOVES = {
    # A group task (no command) made available (or retried) terminates at
    # once with "success" (SPEC §4): activate/retry and finish in one step.
    (_S.INACTIVE, _S.TERMINATED),
    (_S.CANCELLED, _S.TERMINATED),
    # A task that gains a parent waits for it again (SPEC §4: continuations
    # may be added while the child has not started).
    (_S.AVAILABLE, _S.INACTIVE),
    # Retrying a task revives the continuations its end had cancelled.
    (_S.CANCELLED, _S.INACTIVE),
}
LEGAL_MOVES = {(t.source, t.target) for t in TRANSITIONS} | DERIVED_MOVES

resources = st.fixed_dictionaries(
    {"cores": st.sampled_from([0.5, 1, 2, 3])},
    optional={"memory": st.sampled_from([0, 1 << 20, 1 << 30, 3 << 30]), "gpus": st.just(1)},
)
task_fields = st.fixed_dictionaries(
    {
        "command": st.sampled_from(["true", "true", "true", None]),  # None: a group
        "state": st.sampled_from(["available", "available", "inactive"]),
        "requested_resources": resources,
        "queue": st.sampled_from(QUEUES),
        "priority": st.integers(-2, 2),
        "max_retry_count": st.integers(0, 2),
        "run_when": st.sampled_from(["success", "success", "finished", "failure"]),
    }
)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.TemporaryDirectory(prefix="banyan-props-")
        self.path = Path(self.dir.name) / "store.db"
        self.now = 1_700_000_000.0
        self.store = SqliteStore(self.path, clock=self.clock)
        self.run(self.store.open())
        self.reader = sqlite3.connect(self.path)
        self.ids: list[str] = []
        self.counter = 0
        # (task, execution_key, worker) of every attempt handed out, live or not.
        self.attempts: list[tuple[str, str, str]] = []

    def clock(self) -> float:
        self.now += 1.0
        return self.now

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.reader.close()
        self.run(self.store.close())
        self.loop.close()
        self.dir.cleanup()

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        return self.reader.execute(query, args).fetchall()

    def state(self, task_id: str) -> State:
        return State(self.sql("SELECT state FROM tasks WHERE id = ?", task_id)[0][0])

    def new_id(self) -> str:
        self.counter += 1
        return f"{self.counter:024x}"

    @initialize(first=task_fields, second=task_fields)
    def start(self, first: dict[str, Any], second: dict[str, Any]) -> None:
        """Two workers and two tasks, the second a continuation of the first."""
        for name, capacity in CAPACITY.items():
            self.run(self.join(name, capacity))
        self.submit_tree(first, [second], grandchild=False)

    async def join(self, name: str, capacity: Resources) -> None:
        await self.store.join_worker(
            name=name,
            token=name,
            capacity=capacity.canonical(),
            queues=QUEUES,
            host="h",
            pid=1,
            held=[],
        )

    # --- rules -------------------------------------------------------------------

    @precondition(lambda self: len(self.ids) < 12)  # then mostly work on what is there
    @rule(root=task_fields, children=st.lists(task_fields, max_size=3), grandchild=st.booleans())
    def submit_tree(
        self, root: dict[str, Any], children: list[dict[str, Any]], grandchild: bool
    ) -> None:
        """A root, its continuations, and maybe a diamond join below two of them."""
        items = [{**root, "_id": self.new_id()}]
        for child in children:
            items.append({**child, "_id": self.new_id()})
            items[0].setdefault("continuations", []).append(items[-1]["_id"])
        if grandchild and len(items) >= 3:
            join = {"_id": self.new_id(), "command": "true"}
            items[1]["continuations"] = items[2]["continuations"] = [join["_id"]]
            items.append(join)
        models = [TaskCreate.model_validate(item) for item in items]
        created = self.run(self.store.create_tasks(models, OWNER))
        self.ids += [c["_id"] for c in created]

    @precondition(lambda self: len(self.ids) < 12)
    @rule(fields=task_fields)
    def submit_available(self, fields: dict[str, Any]) -> None:
        """One task ready to run (more work for the claims)."""
        self.submit_tree({**fields, "command": "true", "state": "available"}, [], False)

    @rule(data=st.data(), limit=st.integers(1, 3))
    def claim(self, data: st.DataObject, limit: int) -> None:
        """A worker claims what fits what it has free."""
        worker = data.draw(st.sampled_from(sorted(CAPACITY)))
        free = self.free(worker)
        got = self.run(
            self.store.claim(worker=worker, token=worker, free=free, queues=QUEUES, limit=limit)
        )
        assert len(got) <= limit
        for attempt in got:
            self.attempts.append((attempt["task"], attempt["execution_key"], worker))

    @rule(data=st.data(), percent=st.floats(0, 100))
    def progress(self, data: st.DataObject, percent: float) -> None:
        live = self.live_attempts()
        if live:
            task_id, key, worker = data.draw(st.sampled_from(live))
            caller = Caller(worker, Role.WORKER)
            self.run(self.store.report_progress(task_id, key, {"percent": percent}, caller))

    @rule(data=st.data(), status=st.sampled_from([SUCCESS, SUCCESS, FAILURE, "failure (SIGKILL)"]))
    def complete(self, data: st.DataObject, status: str) -> None:
        live = self.live_attempts()
        if live:
            task_id, key, worker = data.draw(st.sampled_from(live))
            if self.state(task_id) is State.PENDING_CANCELLATION and data.draw(st.booleans()):
                status = CANCELLED_STATUS  # the worker stopped it as asked
            caller = Caller(worker, Role.WORKER)
            self.run(
                self.store.finish(
                    task_id, key, exit_status=status, exit_code=None, usage=None, caller=caller
                )
            )
            doc = self.run(self.store.get_task(task_id))
            assert doc["state"] not in ACTIVE_STATES or doc["execution"]["worker"] != worker

    @rule(data=st.data())
    def stale_report_is_refused(self, data: st.DataObject) -> None:
        live = set(self.live_attempts())
        stale = [a for a in self.attempts if a not in live]
        if stale:
            task_id, key, worker = data.draw(st.sampled_from(stale))
            before = self.snapshot()
            try:
                self.run(
                    self.store.report_progress(
                        task_id, key, {"percent": 1}, Caller(worker, Role.WORKER)
                    )
                )
            except Conflict:
                pass
            else:
                raise AssertionError(f"a report on an ended attempt of {task_id} was taken")
            assert self.snapshot() == before

    @rule(data=st.data(), wanted=st.sampled_from(list(State)))
    def set_state(self, data: st.DataObject, wanted: State) -> None:
        """Any wanted: the store does what the table says, or refuses with 409
        and changes nothing."""
        if not self.ids:
            return
        task_id = data.draw(st.sampled_from(self.ids))
        current = self.state(task_id)
        try:
            # "cancelled" of a running task means pending_cancellation (SPEC §4).
            transition(current, cancel_means_stop(current, wanted), Actor.USER)
            legal = True
        except Conflict:
            legal = False
        before = self.snapshot()
        try:
            self.run(self.store.update_task(task_id, TaskPatch(state=wanted), OWNER))
        except Conflict:
            # Legal moves are refused only while parents are pending, or to re-run a success.
            assert self.snapshot() == before
            if legal:
                row = self.sql(
                    "SELECT pending_dependency_count, exit_status FROM tasks WHERE id = ?", task_id
                )[0]
                assert row[0] > 0 or row[1] == SUCCESS, (current, wanted, row)
        else:
            assert legal, f"{current} -> {wanted} was allowed"

    @rule(data=st.data())
    def cancel_tree(self, data: st.DataObject) -> None:
        """Cancel a task and everything below it with one bulk PATCH, as
        ``banyan cancel --tree`` does: running ones are asked to stop."""
        root = data.draw(st.sampled_from(self.ids))
        tree = [root] + [
            r[0]
            for r in self.sql(
                "WITH RECURSIVE d(id) AS (SELECT child FROM continuations WHERE parent = ? "
                "UNION SELECT c.child FROM continuations c JOIN d ON c.parent = d.id) "
                "SELECT id FROM d",
                root,
            )
        ]
        items = []
        for task_id in tree:
            current = self.state(task_id)
            if current in (State.INACTIVE, State.AVAILABLE):
                items.append({"_id": task_id, "state": "cancelled"})
            elif current is State.RUNNING:
                items.append({"_id": task_id, "state": "pending_cancellation"})
        patches = [BulkPatchItem.model_validate(item) for item in items]
        for result in self.run(self.store.update_tasks(patches, OWNER)) if patches else []:
            # An earlier item's cascade may already have cancelled a later one.
            assert result.error is None or isinstance(result.error, Conflict), result
        for task_id in tree:
            assert self.state(task_id) in (State.CANCELLED, State.PENDING_CANCELLATION) or (
                self.state(task_id) is State.TERMINATED
            )

    @rule(data=st.data(), add=st.booleans())
    def edit_continuations(self, data: st.DataObject, add: bool) -> None:
        parent, child = data.draw(st.lists(st.sampled_from(self.ids), min_size=2, max_size=2))
        before = self.snapshot()
        edit = ContinuationEdit(targets=[parent], values=[child])
        try:
            self.run(self.store.edit_continuations([edit], OWNER, add=add))
        except (Conflict, InvalidInput):  # wrong states, a cycle, not an edge
            assert self.snapshot() == before

    @rule(data=st.data())
    def lose_worker(self, data: st.DataObject) -> None:
        """A worker with attempts goes silent: they are abandoned (retry rule);
        then it restarts and joins again, holding nothing."""
        holders = sorted({a[2] for a in self.live_attempts()})
        if not holders:
            return
        worker = data.draw(st.sampled_from(holders))
        self.run(self.store.leave_worker(worker, lost=True))
        assert not [a for a in self.live_attempts() if a[2] == worker]
        self.run(self.join(worker, CAPACITY[worker]))

    # --- helpers -----------------------------------------------------------------

    def live_attempts(self) -> list[tuple[str, str, str]]:
        open_keys = {
            r[0]
            for r in self.sql(
                "SELECT a.execution_key FROM attempts a JOIN tasks t ON t.id = a.task_id "
                "AND t.attempt = a.attempt WHERE a.time_terminated IS NULL"
            )
        }
        return [a for a in self.attempts if a[1] in open_keys]

    def running_on(self, worker: str) -> list[dict[str, Any]]:
        (listed,) = self.run(self.store.list_workers(worker))
        return list(listed["running"])

    def free(self, worker: str) -> Resources:
        capacity = CAPACITY[worker]
        used = [Resources.model_validate(r["requested_resources"]) for r in self.running_on(worker)]
        return Resources(
            cores=max(0.0, capacity.cores - sum(u.cores for u in used)),
            memory=max(0, capacity.memory - sum(u.memory for u in used)),
            gpus=max(0, capacity.gpu_count - sum(u.gpu_count for u in used)),
        )

    def snapshot(self) -> tuple[Any, ...]:
        return (
            self.sql("SELECT * FROM tasks ORDER BY id"),
            self.sql("SELECT * FROM continuations ORDER BY parent, child"),
            self.sql("SELECT * FROM attempts ORDER BY task_id, attempt"),
            self.sql("SELECT max(seq) FROM events"),
        )

    # --- invariants --------------------------------------------------------------

    @invariant()
    def claimed_exactly_when_active(self) -> None:
        """Active ⇔ the current attempt is open; never both available and
        claimed; at most one live attempt per task."""
        rows = self.sql(
            "SELECT t.id, t.state, (SELECT count(*) FROM attempts a WHERE a.task_id = t.id "
            "AND a.time_terminated IS NULL), (SELECT count(*) FROM attempts a WHERE "
            "a.task_id = t.id AND a.attempt = t.attempt AND a.time_terminated IS NULL), t.worker "
            "FROM tasks t"
        )
        for task_id, state, open_any, open_current, worker in rows:
            assert open_any <= 1, (task_id, open_any)
            if state in ACTIVE_STATES:
                assert open_current == 1 and worker is not None, (task_id, state)
            else:
                assert open_any == 0, (task_id, state, "has an open attempt")

    @invariant()
    def pending_counts_match_the_parents(self) -> None:
        """A task waits on exactly its unreleased edges; a ``success`` child's
        edge is released exactly when its parent succeeded, another kind's
        whenever its parent has ended."""
        rows = self.sql(
            "SELECT t.id, t.state, t.pending_dependency_count, "
            "(SELECT count(*) FROM continuations c WHERE c.child = t.id AND NOT c.released) "
            "FROM tasks t"
        )
        for task_id, state, pending, unreleased in rows:
            assert pending == unreleased, (task_id, pending, unreleased)
            if pending:
                assert state in (State.INACTIVE, State.CANCELLED), (task_id, state, pending)
        edges = self.sql(
            "SELECT c.parent, c.child, c.released, t.run_when, p.state, p.exit_status "
            "FROM continuations c JOIN tasks t ON t.id = c.child JOIN tasks p ON p.id = c.parent"
        )
        for parent, child, released, run_when, p_state, p_exit in edges:
            succeeded = p_state == State.TERMINATED and p_exit == SUCCESS
            if run_when == "success":
                assert bool(released) == succeeded, (parent, child, released, p_state, p_exit)
            elif p_state in (State.TERMINATED, State.CANCELLED):
                assert released, (parent, child, run_when, p_state)

    @invariant()
    def a_skipped_task_had_no_failed_parent(self) -> None:
        """A ``failure`` task is skipped only when none of its parents failed."""
        rows = self.sql(
            "SELECT t.id, t.state, t.exit_status, "
            "(SELECT count(*) FROM continuations c JOIN tasks p ON p.id = c.parent "
            "WHERE c.child = t.id AND ((p.state = 'terminated' AND p.exit_status IS NOT ?) "
            "OR (p.state = 'cancelled' AND p.exit_status IS NOT ?))) "
            "FROM tasks t WHERE t.run_when = 'failure'",
            SUCCESS,
            SKIPPED,
        )
        for task_id, state, exit_status, failed_parents in rows:
            if exit_status == SKIPPED:
                assert state == State.CANCELLED and failed_parents == 0, (task_id, failed_parents)

    @invariant()
    def workers_hold_what_fits(self) -> None:
        active = Counter(
            r[0]
            for r in self.sql(
                "SELECT worker FROM tasks WHERE state IN ('running', 'pending_cancellation')"
            )
        )
        for worker, capacity in CAPACITY.items():
            running = self.running_on(worker)
            assert len(running) == active[worker], (worker, running, active)
            used = [Resources.model_validate(r["requested_resources"]) for r in running]
            assert sum(u.cores for u in used) <= capacity.cores + 1e-9
            assert sum(u.memory for u in used) <= capacity.memory
            assert sum(u.gpu_count for u in used) <= capacity.gpu_count

    @invariant()
    def counts_equal_a_recount(self) -> None:
        recount = Counter(
            {
                (q, s): n
                for q, s, n in self.sql("SELECT queue, state, count(*) FROM tasks GROUP BY 1, 2")
            }
        )
        kept = Counter({(q, s): n for q, s, n in self.sql("SELECT * FROM task_counts") if n})
        assert kept == recount
        stats = self.run(self.store.statistics())["tasks"]
        assert stats["total"] == len(self.ids)
        by_state = Counter()
        for (_, s), n in recount.items():
            by_state[s] += n
        assert {k: v for k, v in stats["by_state"].items() if v} == dict(by_state)
        (finished,) = self.sql("SELECT count(*) FROM attempts WHERE time_terminated IS NOT NULL")[0]
        (durations,) = self.sql("SELECT coalesce(sum(n), 0) FROM attempt_durations WHERE kind = 1")[
            0
        ]
        assert durations == finished

    @invariant()
    def tree_stats_equal_a_recount(self) -> None:
        for root in self.ids[:: max(1, len(self.ids) // 3)]:
            tree = self.run(self.store.tree_statistics(root))
            states = self.sql(
                "WITH RECURSIVE d(id) AS (SELECT ? UNION SELECT c.child FROM continuations c "
                "JOIN d ON c.parent = d.id) SELECT t.state, t.exit_status FROM d JOIN tasks t "
                "ON t.id = d.id",
                root,
            )
            assert tree["total"] == len(states)
            assert tree["succeeded"] == sum(
                1 for s, e in states if s == "terminated" and e == SUCCESS
            )

    @invariant()
    def every_move_is_in_the_table(self) -> None:
        """Replay the event log: each task starts as created, every state event
        moves it from where it was by a legal move, and it ends where it is."""
        where: dict[str, State] = {}
        last_seq = 0
        for seq, kind, data in self.sql("SELECT seq, type, data FROM events ORDER BY seq"):
            assert seq > last_seq
            last_seq = seq
            event = json.loads(data)
            if kind == "task.created":
                where[event["_id"]] = State(event["state"])
            elif kind == "task.state":
                move = (State(event["previous"]), State(event["state"]))
                assert where[event["_id"]] == move[0], (event, where[event["_id"]])
                assert move in LEGAL_MOVES, event
                where[event["_id"]] = move[1]
        assert where == {task_id: self.state(task_id) for task_id in self.ids}


StoreMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_store_state_machine = StoreMachine.TestCase
