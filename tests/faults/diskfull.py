"""Disk-full fault: a real ``banyan-server`` whose disk fills up while tasks
are submitted, then gets its space back.

Two ways to run out of space, both real failures of the operating system
under the server's SQLite file (nothing in the server is switched or mocked):

- ``"tmpfs"``: the database lives on a small tmpfs mounted for the run; a
  ballast file leaves ``headroom_bytes`` free, the submissions fill the rest
  (ENOSPC → ``SQLITE_FULL``); deleting the ballast returns the space. Needs
  the right to mount (root, as in this project's CI containers).
- ``"fsize"``: the server's ``RLIMIT_FSIZE`` is lowered from outside
  (``prlimit``) to ``headroom_bytes`` above its largest file, so growing the
  WAL fails (EFBIG → ``SQLITE_IOERR_WRITE``); raising it back returns the
  space. Needs no privilege: Linux lets a process change the limits of its
  own children.

``run`` drives one scenario and returns its scorecard; ``acknowledged_lost``
is checked after a ``kill -9`` and restart, ``integrity`` on the file after
the server has stopped. ``tests/faults/test_disk_full.py`` runs it small;
``bench/faults.py`` runs it at scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from banyan.tokens import basic_auth_header
from testbed import Cluster

FAULTS = ("tmpfs", "fsize")
TMPFS_BYTES = 32 * 1024 * 1024
PAD = "x" * 1024  # per task, so that a few hundred tasks fill the headroom
# A change too large for the room a rolled-back batch leaves at the end of the WAL
# (small writes that fit there do succeed while the disk is "full").
BIG = {f"PAD{i}": "y" * 32 * 1024 for i in range(16)}
WAVE = 4  # concurrent bulk POSTs, so failing batches hold several requests
BATCH = 10  # tasks per bulk POST
FULL_WAVES = 3  # waves submitted (and refused) while the disk is full


def can_mount_tmpfs(where: Path) -> bool:
    """Whether this process may mount a tmpfs (tried for real, then undone)."""
    if os.geteuid() != 0:
        return False
    probe = where / "mount-probe"
    probe.mkdir(parents=True, exist_ok=True)
    try:
        if _mount(probe, 1024 * 1024).returncode != 0:
            return False
        _umount(probe)
        return True
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


def available_faults(where: Path) -> list[str]:
    found = ["tmpfs"] if can_mount_tmpfs(where) else []
    if hasattr(resource, "prlimit"):
        found.append("fsize")
    return found


def run(
    workdir: Path,
    tasks: int,
    *,
    fault: str = "auto",
    headroom_bytes: int = 512 * 1024,
) -> dict[str, object]:
    """Fill the server's disk while submitting ``tasks`` tasks (at most; the
    disk is full long before at the default headroom), check that refused
    writes leave no trace, that reads go on, and that writes resume once the
    space is back. Keys: ``acknowledged_lost`` (0), ``status_refused`` (507),
    ``reads_served``, ``recovered``, ``integrity`` ("ok"), and details."""
    workdir.mkdir(parents=True, exist_ok=True)
    if fault == "auto":
        fault = available_faults(workdir)[0]
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
    with _disk(workdir, fault) as disk:
        cluster = Cluster(workdir)
        cluster.db = disk / "b.db"
        try:
            cluster.start_server()
            space = Space(fault, disk, cluster, headroom_bytes)
            result = asyncio.run(_scenario(cluster, space, tasks))
            # Durability of what was acknowledged, across a kill -9.
            cluster.kill_server()
            cluster.restart_server()
            acked: list[str] = result.pop("_acked")  # type: ignore[assignment]
            found = {t["_id"] for t in cluster.http.find_all({}, {"_id": 1})}
            result["acknowledged_lost"] = len(set(acked) - found)
            result["unacknowledged_found"] = len(found - set(acked))
        finally:
            cluster.close()
        result["integrity"] = _integrity(cluster.db)
    result["fault"] = fault
    return result


# --- running out of space, and getting it back ------------------------------------


@contextlib.contextmanager
def _disk(workdir: Path, fault: str) -> Iterator[Path]:
    disk = workdir / "disk"
    disk.mkdir(exist_ok=True)
    if fault != "tmpfs":
        yield disk
        return
    mounted = _mount(disk, TMPFS_BYTES)
    if mounted.returncode != 0:
        raise RuntimeError(f"cannot mount a tmpfs on {disk}: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        _umount(disk)


def _mount(path: Path, size: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "banyan-diskfull", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _umount(path: Path) -> None:
    for _ in range(50):  # EBUSY for a moment after the server exits
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"could not unmount {path}")


def _write_until_full(out: Any) -> None:
    with contextlib.suppress(OSError):  # ENOSPC
        while out.write(b"\0" * 4096):
            pass


class Space:
    """Takes the free space away and gives it back, for one fault kind."""

    def __init__(self, fault: str, disk: Path, cluster: Cluster, headroom_bytes: int) -> None:
        self.fault = fault
        self.disk = disk
        self.cluster = cluster
        self.headroom_bytes = headroom_bytes
        self.ballast = disk / "ballast"

    def take(self) -> None:
        if self.fault == "tmpfs":
            stat = os.statvfs(self.disk)
            size = stat.f_bavail * stat.f_frsize - self.headroom_bytes
            chunk = b"\0" * (1 << 20)
            with self.ballast.open("wb") as out:
                while size > 0:
                    size -= out.write(chunk[: min(size, len(chunk))])
        else:
            self._set_fsize(self._largest() + self.headroom_bytes)

    def seal(self) -> None:
        """Take what is left too, so that nothing can grow while "full"."""
        if self.fault == "tmpfs":
            with self.ballast.open("ab", buffering=0) as out:
                _write_until_full(out)
        else:
            self._set_fsize(self._largest())

    def _largest(self) -> int:
        files = [p for p in self.disk.glob("b.db*") if p.is_file()]
        return max((p.stat().st_size for p in files), default=0)

    def give_back(self) -> None:
        if self.fault == "tmpfs":
            self.ballast.unlink()
        else:
            self._set_fsize(resource.RLIM_INFINITY)

    def _set_fsize(self, soft: int) -> None:
        assert self.cluster.server is not None
        pid = self.cluster.server.pid
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))


# --- the scenario -----------------------------------------------------------------------


class _Client:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session = session
        self.url = url
        self.headers = {"Authorization": basic_auth_header(token)}
        self.acked: list[str] = []
        self.statuses: Counter[int] = Counter()
        self.refused_body: Any = None
        self.serial = 0

    async def request(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        async with self.session.request(
            method, self.url + path, json=body, params=params or None, headers=self.headers
        ) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)

    async def submit_one_bulk(self) -> int:
        self.serial += 1
        body = [
            {"command": "true", "name": f"fill {self.serial}.{i}", "env": {"PAD": PAD}}
            for i in range(BATCH)
        ]
        status, reply = await self.request("POST", "/tasks", body)
        self.statuses[status] += 1
        if status == 201:
            self.acked += [item["_id"] for item in reply["_items"]]
        elif status >= 500 and self.refused_body is None:
            self.refused_body = reply
        return int(status)

    async def wave(self) -> list[int]:
        return list(await asyncio.gather(*(self.submit_one_bulk() for _ in range(WAVE))))

    async def reads_ok(self) -> bool:
        task = random.choice(self.acked) if self.acked else None
        checks = [("GET", "/stats", {})]
        checks.append(("GET", "/tasks", {"where": '{"state": "available"}', "max_results": "5"}))
        if task is not None:
            checks.append(("GET", f"/tasks/{task}", {}))
        for method, path, params in checks:
            status, _ = await self.request(method, path, **params)
            if status != 200:
                return False
        # /health answers too: 200 "ok", or 503 "degraded" while writes fail.
        status, body = await self.request("GET", "/health")
        return (status, body.get("status")) in ((200, "ok"), (503, "degraded"))

    async def health(self) -> tuple[int, str, list[str]]:
        status, body = await self.request("GET", "/health")
        return int(status), str(body.get("status")), list(body.get("reasons", []))


async def _feed(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], seen: set[str]
) -> None:
    """Follow ``task.created`` events until cancelled, adding each task id to ``seen``."""
    async with session.ws_connect(
        url.replace("http", "ws", 1) + "/events?types=task.created", headers=headers
    ) as ws:
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame.get("type") == "feed.hello":
                seen.add("hello")
            elif frame.get("type") == "task.created":
                seen.add(frame["data"]["_id"])


async def _until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _scenario(cluster: Cluster, space: Space, tasks: int) -> dict[str, object]:
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = _Client(session, cluster.url, cluster.token)
        seen: set[str] = set()
        feed = asyncio.create_task(_feed(session, cluster.url, client.headers, seen))
        await _until(lambda: "hello" in seen or feed.done(), 30)
        space.take()
        # Fill: submit until the server refuses (or the budget is spent).
        refused_status: int | None = None
        while refused_status is None and len(client.acked) + WAVE * BATCH <= tasks:
            refused = [s for s in await client.wave() if s != 201]
            refused_status = refused[0] if refused else None
        # Full: writes keep being refused, reads keep being served.
        space.seal()
        full_at = len(client.acked)
        reads = await client.reads_ok()
        health_while_full = await client.health()
        before = dict(await _one_task(client))
        patch_status = None
        if before:
            patch_status, _ = await client.request(
                "PATCH", f"/tasks/{before['_id']}", {"priority": 7, "env": BIG}
            )
        for _ in range(FULL_WAVES):
            await client.wave()
            reads = reads and await client.reads_ok()
        after = dict(await _one_task(client, before.get("_id")))
        refused_left_no_trace = (
            None if patch_status == 200 else before.get("_etag") == after.get("_etag")
        )
        acked_while_full = len(client.acked) - full_at
        # Space returns: the very next writes succeed, with no restart.
        space.give_back()
        recovery = [await client.submit_one_bulk() for _ in range(max(1, tasks // (4 * BATCH)))]
        patched = None
        if before:
            patched, _ = await client.request("PATCH", f"/tasks/{before['_id']}", {"priority": 8})
        recovered = all(s == 201 for s in recovery) and patched in (None, 200)
        recovered = recovered and await client.reads_ok()
        health_after = await client.health()
        # Every acknowledged task was announced on the feed, and nothing else was.
        acked = set(client.acked)
        await _until(lambda: acked <= seen or feed.done(), 30)
        await asyncio.sleep(0.5)  # time for a stray event to arrive, if there were one
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed
    seen.discard("hello")
    phantom = seen - acked
    return {
        "status_refused": refused_status,
        "refused_message": (client.refused_body or {}).get("_error", {}).get("message"),
        "refused_body": client.refused_body,
        "reads_served": reads,
        "health_while_full": health_while_full,
        "health_after": health_after,
        "recovered": recovered,
        "patch_status_while_full": patch_status,
        "refused_patch_left_no_trace": refused_left_no_trace,
        "acknowledged": len(acked),
        "acknowledged_before_full": full_at,
        "acknowledged_while_full": acked_while_full,
        "statuses": dict(client.statuses),
        "events_for_unacknowledged": len(phantom),
        "acknowledged_without_event": len(acked - seen),
        "seconds": round(time.monotonic() - started, 2),
        "_acked": client.acked,
    }


async def _one_task(client: _Client, task_id: str | None = None) -> dict[str, Any]:
    if task_id is None:
        if not client.acked:
            return {}
        task_id = client.acked[0]
    status, doc = await client.request("GET", f"/tasks/{task_id}")
    return dict(doc) if status == 200 else {}


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()
