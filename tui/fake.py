"""An in-memory ``DataSource`` for the TUI's tests, its benchmark and its
screenshots: tasks and workers as API documents, an event feed that the
caller pushes frames into, and a record of every call.

Changes made through it (submit, cancel, retry) come back as feed events,
as they do from a real server, so the app under test sees them only the way
it would see them live.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, cast, get_args

from banyan.dates import format_date
from banyan.documents import ExecutionDoc, RunningDoc, TaskDoc, WorkerDoc, task_document
from banyan.errors import Conflict, NotFound, ServerUnreachable
from banyan.events import Event, EventData
from tui.source import Snapshot

_DISCONNECT = object()


def _data_models() -> dict[str, type[EventData]]:
    """Each event type's ``data`` model, read off ``banyan.events.Event``."""
    union = get_args(Event)[0]
    return {
        str(member.model_fields["type"].default): cast(
            type[EventData], member.model_fields["data"].annotation
        )
        for member in get_args(union)
    }


DATA_MODELS = _data_models()


def complete(kind: str, data: dict[str, Any], doc: TaskDoc | None = None) -> dict[str, Any]:
    """``data`` with the fields a caller left out filled in, as the server
    would send them (from the task's document ``doc`` where there is one), so
    that the frame decodes as its ``banyan.events`` type."""
    model = DATA_MODELS.get(kind)
    if model is None:
        return data
    execution = (doc.get("execution") if doc else None) or {}
    known: dict[str, Any] = {
        "name": doc["name"] if doc else None,
        "queue": doc["queue"] if doc else "default",
        "priority": doc["priority"] if doc else 0,
        "owner": (doc["owner"] if doc else None) or "admin",
        "group": doc is not None and doc["command"] is None,
        "attempt": execution.get("attempt") or 1,
        "previous": doc["state"] if doc else "inactive",
        "worker": data.get("name"),
        "host": "node-1",
        "capacity": {},
        "queues": ["default"],
        "rejoined": False,
        "resumed": [],
        "abandoned": [],
    }
    full = dict(data)
    for name, info in model.model_fields.items():
        key = info.alias or name
        if info.is_required() and key not in full:
            full[key] = known[key]
    return full


def make_id(seconds: int, counter: int) -> str:
    """A deterministic task id created at ``seconds``."""
    return f"{seconds:08x}{'ab' * 5}{counter:06x}"


def task_doc(
    task_id: str,
    *,
    name: str | None = None,
    state: str = "available",
    queue: str = "default",
    exit_status: str | None = None,
    worker: str | None = None,
    created: float | None = None,
    continuations: Sequence[str] = (),
    command: str | None = "true",
    priority: int = 0,
    percent: float | None = None,
) -> TaskDoc:
    """A task document as ``GET /tasks`` returns it (``banyan.documents``)."""
    when = float(created if created is not None else int(task_id[:8], 16))
    execution: ExecutionDoc | None = None
    if worker is not None or exit_status is not None:
        execution = {
            "attempt": 1,
            "worker": worker,
            "exit_status": exit_status,
            "exit_code": None if exit_status in (None, "success") else 1,
            "time_started": format_date(when + 1),
            "time_terminated": format_date(when + 5) if exit_status else None,
            "progress": None if percent is None else {"percent": percent},
        }
    return task_document(
        task_id,
        created=format_date(when) or "",
        name=name,
        command=command,
        state=state,
        continuations=list(continuations),
        requested_resources={"cores": 1, "memory": 0},
        queue=queue,
        priority=priority,
        owner="admin",
        execution=execution,
    )


def worker_doc(
    name: str,
    *,
    state: str = "idle",
    cores: float = 4,
    memory: int = 8 * 2**30,
    gpus: int = 0,
    used_cores: float = 0,
    used_memory: int = 0,
    used_gpus: int = 0,
    running: Sequence[RunningDoc] = (),
    age_s: float = 1.0,
    queues: Sequence[str] = ("default",),
) -> WorkerDoc:
    """A worker as ``GET /workers`` returns it."""
    return {
        "_id": name,
        "name": name,
        "state": state,
        "host": "node-1",
        "pid": 1234,
        "queues": list(queues),
        "capacity": {"cores": cores, "memory": memory, "gpus": gpus},
        "free": {
            "cores": cores - used_cores,
            "memory": memory - used_memory,
            "gpus": gpus - used_gpus,
        },
        "running": list(running),
        "last_heartbeat_age_s": age_s,
    }


class FakeSource:
    def __init__(
        self,
        tasks: Iterable[TaskDoc] = (),
        workers: Iterable[WorkerDoc] = (),
        *,
        server: str = "http://fake:5100",
        stats_supported: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._server = server
        self.docs: dict[str, TaskDoc] = {t["_id"]: t for t in tasks}
        self.worker_docs: list[WorkerDoc] = list(workers)
        self.stats_supported = stats_supported
        self.clock = clock or (lambda: 1_800_000_000.0)
        self.seq = 0
        self.frames: list[dict[str, Any]] = []  # every frame pushed, for replays
        self.keep_frames = True
        self.calls: list[tuple[Any, ...]] = []
        self.reasons: dict[str, str] = {}  # what pending_reasons answers, by task id
        self.job_names: dict[str, str] = {}  # the snapshot's job names, by job id
        self.since_asked: list[int | None] = []
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.log_text: dict[str, str] = {}
        self.usage_docs: dict[str, list[dict[str, Any]]] = {}
        self.connected = asyncio.Event()
        self.refuse_connections = False
        self.on_frame: Callable[[dict[str, Any]], None] | None = None
        self._queues: list[asyncio.Queue[Any]] = []
        self._ids = itertools.count(0xF00000)

    @property
    def server(self) -> str:
        return self._server

    # --- the feed ---------------------------------------------------------------

    def push(self, kind: str, data: dict[str, Any], *, timestamp: float | None = None) -> int:
        """One event: applied to the documents and sent to connected feeds."""
        self.seq += 1
        ts = self.clock() if timestamp is None else timestamp
        data = complete(kind, data, self.docs.get(str(data.get("_id", ""))))
        frame = {
            "seq": self.seq,
            "time": format_date(ts),
            "timestamp": ts,
            "type": kind,
            "data": data,
        }
        self._apply(frame)
        if self.keep_frames:
            self.frames.append(frame)
        for queue in self._queues:
            queue.put_nowait(frame)
        return self.seq

    def push_state(self, task_id: str, state: str, **extra: Any) -> int:
        doc = self.docs[task_id]
        data = {"_id": task_id, "state": state, "previous": doc["state"], "name": doc["name"]}
        data.update(queue=doc["queue"], **extra)
        return self.push("task.state", data)

    def resync(self) -> None:
        for queue in self._queues:
            queue.put_nowait({"type": "feed.resync", "oldest_seq": self.seq})

    def disconnect(self) -> None:
        """Drop every feed connection (the app should reconnect with ``since``)."""
        for queue in self._queues:
            queue.put_nowait(_DISCONNECT)

    async def events(self, since: int | None) -> AsyncIterator[dict[str, Any]]:
        self.since_asked.append(since)
        if self.refuse_connections:
            raise ServerUnreachable("cannot reach the fake server")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._queues.append(queue)
        try:
            yield {"type": "feed.hello", "version": 1, "seq": self.seq, "oldest_seq": 1}
            if since is not None:
                for frame in self.frames:
                    if frame["seq"] > since:
                        yield frame
            self.connected.set()
            while True:
                item = await queue.get()
                if item is _DISCONNECT:
                    raise ServerUnreachable("event feed lost: connection reset")
                yield item
        finally:
            self._queues.remove(queue)
            if not self._queues:
                self.connected.clear()

    def _apply(self, frame: dict[str, Any]) -> None:
        data = frame["data"]
        if frame["type"] == "task.created":
            self.docs.setdefault(data["_id"], task_doc(data["_id"], name=data.get("name")))
            self.docs[data["_id"]].update(
                {"state": data["state"], "queue": data.get("queue", "default")}
            )
        elif frame["type"] == "task.state" and data["_id"] in self.docs:
            doc = self.docs[data["_id"]]
            doc["state"] = data["state"]
            doc["_updated"] = frame["time"]
            if data["state"] == "running":
                doc["execution"] = {"attempt": data.get("attempt", 1), "worker": data.get("worker")}
            if "exit_status" in data:
                doc["execution"] = {**(doc["execution"] or {}), "exit_status": data["exit_status"]}
        if self.on_frame is not None:
            self.on_frame(frame)

    # --- reading ----------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        self.calls.append(("snapshot",))
        return Snapshot(
            tasks=[copy.deepcopy(d) for d in self.docs.values()],
            workers=copy.deepcopy(self.worker_docs),
            stats=await self.stats(),
            total_tasks=len(self.docs),
            job_names=dict(self.job_names),
        )

    async def stats(self) -> dict[str, Any] | None:
        if not self.stats_supported:
            return None
        by_queue: dict[str, dict[str, int]] = {}
        for doc in self.docs.values():
            counts = by_queue.setdefault(doc["queue"], {})
            counts[doc["state"]] = counts.get(doc["state"], 0) + 1
        by_state: dict[str, int] = {}
        for counts in by_queue.values():
            for state, n in counts.items():
                by_state[state] = by_state.get(state, 0) + n
        return {
            "tasks": {
                "total": len(self.docs),
                "by_state": by_state,
                "by_queue": by_queue,
                "oldest_available": {},
            },
            "throughput": {"1m": 0, "5m": 0, "15m": 0},
        }

    async def workers(self) -> list[WorkerDoc]:
        return copy.deepcopy(self.worker_docs)

    async def task(self, task_id: str) -> TaskDoc:
        if task_id not in self.docs:
            raise NotFound(f"no task with id {task_id}")
        return copy.deepcopy(self.docs[task_id])

    async def pending_reasons(self, ids: Sequence[str]) -> dict[str, str]:
        """The ``_pending_reason`` a test put on the docs (``reasons`` wins)."""
        self.calls.append(("pending_reasons", *ids))
        found: dict[str, str] = {}
        for task_id in ids:
            doc: dict[str, Any] = dict(self.docs.get(task_id) or {})
            reason = self.reasons.get(task_id) or (doc.get("_pending_reason") or {}).get("reason")
            if reason:
                found[task_id] = str(reason)
        return found

    async def history(self, task_id: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.histories.get(task_id, []))

    async def logs(self, task_id: str, *, tail: int) -> dict[str, Any]:
        self.calls.append(("logs", task_id))
        text = self.log_text.get(task_id, "")
        return {"stdout": "".join(text.splitlines(keepends=True)[-tail:]), "stderr": ""}

    async def memory_usage(self, task_id: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.usage_docs.get(task_id, []))

    async def tree(self, task_id: str) -> dict[str, TaskDoc]:
        found: dict[str, TaskDoc] = {}
        stack = [task_id]
        while stack:
            current = stack.pop()
            if current in found or current not in self.docs:
                continue
            found[current] = copy.deepcopy(self.docs[current])
            stack.extend(self.docs[current]["continuations"])
        return found

    # --- doing ------------------------------------------------------------------

    async def submit(self, task: dict[str, Any], *, after: Sequence[str] = ()) -> str:
        self.calls.append(("submit", task, tuple(after)))
        seconds = int(self.clock())
        task_id = make_id(seconds, next(self._ids))
        queue = task.get("queue", "default")
        doc = task_doc(task_id, name=task.get("name"), command=task.get("command"), queue=queue)
        doc["state"] = "inactive"
        self.docs[task_id] = doc
        state = "inactive" if after else task.get("state", "inactive")
        data = {"_id": task_id, "name": task.get("name"), "state": state}
        data.update(queue=doc["queue"], priority=task.get("priority", 0), owner="admin")
        self.push("task.created", data)
        return task_id

    async def cancel(self, ids: Sequence[str]) -> dict[str, str]:
        self.calls.append(("cancel", tuple(ids)))
        done = {}
        for task_id in ids:
            state = self.docs[task_id]["state"]
            if state in ("terminated", "cancelled"):
                raise Conflict(f"cannot cancel task {task_id}: it is {state}")
            target = "pending_cancellation" if state == "running" else "cancelled"
            self.push_state(task_id, target)
            done[task_id] = target
        return done

    async def cancel_tree(self, task_id: str) -> dict[str, str]:
        self.calls.append(("cancel_tree", task_id))
        tree = await self.tree(task_id)
        live = [i for i, d in tree.items() if d["state"] not in ("terminated", "cancelled")]
        return await self.cancel(live) if live else {}

    async def retry(self, ids: Sequence[str]) -> dict[str, str]:
        self.calls.append(("retry", tuple(ids)))
        for task_id in ids:
            self.push_state(task_id, "available")
        return dict.fromkeys(ids, "available")
