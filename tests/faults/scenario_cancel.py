"""Cancels racing the work: a cancel sent at a random moment of a task's run
(so it races its completion), or while it still waits; and the cancel of a
whole continuation tree while parts of it run.

A subscriber sees each ``task.state`` event and schedules the cancels; cancel
latency is the time from sending ``pending_cancellation`` to the server's
``cancelled`` event (its timestamp, same clock). What the checker holds
against the history: nothing starts after the server answered ``cancelled``,
no continuation starts before its parent succeeded, nothing is left
``running`` or ``pending_cancellation``, no process is left.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from tests.faults.harness import Api, Scene, Subscriber
from tests.faults.history import Cancel, FaultResult, check, percentiles

ENDED = ("terminated", "cancelled")


class Canceller:
    """Sends cancels, records each answer, and measures cancel latency."""

    def __init__(self, api: Api, scene: Scene) -> None:
        self.api = api
        self.history = scene.history
        self.asked: dict[str, float] = {}  # task -> when pending_cancellation was accepted
        self.latencies: list[float] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.trees: dict[str, list[str]] = {}  # root -> every id of its tree

    def on_event(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "task.state" and frame["data"].get("state") == "cancelled":
            sent = self.asked.pop(frame["data"]["_id"], None)
            if sent is not None:
                self.latencies.append(float(frame["timestamp"]) - sent)

    def later(self, delay: float, task_id: str, state: str | None = None) -> None:
        task = asyncio.create_task(self._later(delay, task_id, state))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _later(self, delay: float, task_id: str, state: str | None) -> None:
        await asyncio.sleep(delay)
        if state == "tree":
            await self.cancel_tree(self.trees[task_id])
        else:
            await self.cancel(task_id, state)

    async def cancel_tree(self, ids: list[str]) -> None:
        """What ``banyan cancel --tree`` does: every task of it not ended yet."""
        found = await self.api.find_all({"_id": {"$in": ids}}, {"state": 1})
        await asyncio.gather(
            *(self.cancel(t["_id"], t["state"]) for t in found if t["state"] not in ENDED)
        )

    async def cancel(self, task_id: str, state: str | None = None) -> None:
        """Cancel whatever the state: ``pending_cancellation`` when running,
        ``cancelled`` when waiting; a 409 (the state moved) is retried."""
        target = (
            "pending_cancellation" if state in ("running", "pending_cancellation") else "cancelled"
        )
        for _ in range(6):
            sent = time.time()
            status, body = await self.api.call("PATCH", f"/tasks/{task_id}", {"state": target})
            answered = time.time()
            got = body.get("state") if isinstance(body, dict) and status == 200 else None
            self.history.cancels.append(Cancel(task_id, sent, answered, status, got))
            if status == 200:
                if target == "pending_cancellation" and got == "pending_cancellation":
                    self.asked.setdefault(task_id, sent)
                return
            if status != 409:
                return
            status, body = await self.api.call("GET", f"/tasks/{task_id}")
            now = body.get("state") if isinstance(body, dict) else None
            if now in ENDED or now is None:
                return  # it ended first: the completion won the race
            target = "pending_cancellation" if now == "running" else "cancelled"

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def abort(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*list(self.tasks), return_exceptions=True)


def run_cancel_race(workdir: Path, scale: int = 10_000, *, seed: int = 3) -> FaultResult:
    return asyncio.run(_race(workdir, scale, seed))


async def _race(workdir: Path, scale: int, seed: int) -> FaultResult:
    scene = Scene(workdir, "cancel-race")
    rng = random.Random(seed)
    cluster = scene.cluster
    await asyncio.to_thread(cluster.start_server)
    api = Api(cluster.url, cluster.token)
    canceller = Canceller(api, scene)
    durations: dict[str, float] = {}

    def on_event(frame: dict[str, Any]) -> None:
        canceller.on_event(frame)
        data = frame["data"]
        if frame["type"] == "task.state" and data.get("state") == "running":
            run_s = durations.get(data["_id"])
            if run_s is not None and rng.random() < 0.5:
                # Around the moment it would finish: the cancel races the completion.
                canceller.later(rng.uniform(0.5, 1.3) * run_s, data["_id"], "running")

    feed = Subscriber(api, on_event=on_event, seed=seed)
    try:
        for name in ("w1", "w2"):
            cluster.start_worker(name, cores=4)
        await asyncio.to_thread(cluster.wait_connected, "w1", "w2")
        feed.start()
        batches: list[list[dict[str, Any]]] = [[]]
        made = 0
        while made < scale:
            run_s = rng.uniform(0.05, 0.5)
            parent = scene.task(f"sleep {run_s:.3f}")
            durations[parent["_id"]] = run_s
            group = [parent]
            if rng.random() < 0.2:  # a continuation: it must never run if the parent is cancelled
                child = scene.task("sleep 0.05")
                parent["continuations"] = [child["_id"]]
                scene.history.parents[child["_id"]] = [parent["_id"]]
                durations[child["_id"]] = 0.05
                group.append(child)
            if len(batches[-1]) + len(group) > 500:  # a parent and its child go together
                batches.append([])
            batches[-1] += group
            made += len(group)
        for batch in batches:
            await api.submit_all(scene.history, batch)
            # Some are cancelled while they still wait in the queue.
            for task in rng.sample(batch, max(1, len(batch) // 20)):
                canceller.later(rng.uniform(0, 0.5), task["_id"])
            await asyncio.sleep(len(batch) / 400)  # keep the queue short, the races many
        await asyncio.sleep(1)
        await scene.finish(api, timeout_s=120 + scale / 20, feeds=[feed])
        await canceller.drain()
        return _result("cancel racing completion", scene, canceller)
    finally:
        await feed.stop()
        await canceller.abort()
        await api.close()
        await asyncio.to_thread(scene.close)


def run_tree_cancel(
    workdir: Path, scale: int = 10_000, *, fanout: int = 9, leaves: int = 10, seed: int = 4
) -> FaultResult:
    return asyncio.run(_trees(workdir, scale, fanout, leaves, seed))


async def _trees(workdir: Path, scale: int, fanout: int, leaves: int, seed: int) -> FaultResult:
    scene = Scene(workdir, "tree-cancel")
    rng = random.Random(seed)
    cluster = scene.cluster
    await asyncio.to_thread(cluster.start_server)
    api = Api(cluster.url, cluster.token)
    canceller = Canceller(api, scene)
    tree_of: dict[str, list[str]] = {}  # a child (level 1) -> every id of its tree
    doomed: set[int] = set()

    def on_event(frame: dict[str, Any]) -> None:
        canceller.on_event(frame)
        data = frame["data"]
        if frame["type"] == "task.state" and data.get("state") == "running":
            ids = tree_of.get(data["_id"])
            if ids is not None and id(ids) not in doomed:
                doomed.add(id(ids))  # parts of it run: cancel the whole tree soon
                canceller.later(rng.uniform(0, 0.8), ids[0], "tree")

    feed = Subscriber(api, on_event=on_event, seed=seed)
    try:
        for name in ("w1", "w2"):
            cluster.start_worker(name, cores=4)
        await asyncio.to_thread(cluster.wait_connected, "w1", "w2")
        feed.start()
        size = 1 + fanout + fanout * leaves
        for _ in range(max(1, scale // size)):
            root = scene.task("sleep 0.05")
            body: list[dict[str, Any]] = [root]
            kids = []
            for _ in range(fanout):
                kid = scene.task(f"sleep {rng.uniform(0.3, 1.5):.3f}")
                scene.history.parents[kid["_id"]] = [root["_id"]]
                grandkids = [scene.task("sleep 0.05") for _ in range(leaves)]
                for g in grandkids:
                    scene.history.parents[g["_id"]] = [kid["_id"]]
                kid["continuations"] = [g["_id"] for g in grandkids]
                kids.append(kid)
                body += [kid, *grandkids]
            root["continuations"] = [k["_id"] for k in kids]
            ids = [t["_id"] for t in body]
            canceller.trees[root["_id"]] = ids
            for kid in kids:
                tree_of[kid["_id"]] = ids
            await api.submit_all(scene.history, body)
            await asyncio.sleep(size / 300)
        await asyncio.sleep(1)
        await scene.finish(api, timeout_s=120 + scale / 20, feeds=[feed])
        await canceller.drain()
        return _result("cancel of a whole tree", scene, canceller)
    finally:
        await feed.stop()
        await canceller.abort()
        await api.close()
        await asyncio.to_thread(scene.close)


def _result(title: str, scene: Scene, canceller: Canceller) -> FaultResult:
    result = check(title, scene.history)
    result.faults_injected = len({c.task for c in scene.history.cancels})
    result.cancel_latency_s = percentiles(canceller.latencies)
    ok = [c for c in scene.history.cancels if c.status == 200]
    result.details["cancels_accepted"] = len(ok)
    result.details["cancels_refused_409"] = sum(1 for c in scene.history.cancels if c.status == 409)
    result.details["other_answers"] = sorted(
        {c.status for c in scene.history.cancels if c.status not in (200, 409)}, key=str
    )
    result.wall_s = time.monotonic() - scene.started
    return result
