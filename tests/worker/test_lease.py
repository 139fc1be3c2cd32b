"""The lease arithmetic (worker/lease.py) on a fake clock, and its enforcer,
the reaper sidecar's :class:`~worker.reaper.Fence`: on a fake clock for what
is due when, with real process groups for the signals, and the real sidecar
process for the protocol end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.lease import MAX_UNANSWERED, Beats, Lease, terms
from worker.reaper import Fence, Reaper, serve
from worker.usage import live_group_members

WAIT_S = 20.0
IGNORES_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(1000)"
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def group() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a process as the leader of its own group; killed and reaped after."""
    started: list[subprocess.Popen[bytes]] = []

    def start(ignore_term: bool = False) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-c", IGNORES_TERM] if ignore_term else ["sleep", "1000"]
        proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.PIPE)
        started.append(proc)
        if ignore_term:  # its handler is in place
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT_S)
        if proc.stdout is not None:
            proc.stdout.close()


def running(proc: subprocess.Popen[bytes]) -> bool:
    """Running, not a zombie (the test, its parent, has not reaped it)."""
    return bool(live_group_members(proc.pid))


# --- the terms ----------------------------------------------------------------------


def test_terms_for_the_defaults_and_the_fast_test_settings() -> None:
    default = terms(30, 5)
    assert (default.heartbeat_s, default.margin_s, default.length_s, default.grace_s) == (
        5,
        6,
        24,
        3,
    )
    fast = terms(2, 0.5)
    assert (fast.heartbeat_s, fast.margin_s, fast.length_s, fast.grace_s) == (0.5, 0.5, 1.5, 0.25)


def test_a_slow_heartbeat_is_sped_up_to_four_per_timeout() -> None:
    slow = terms(2, 5)  # a heartbeat interval longer than the timeout itself
    assert slow.heartbeat_s == 0.5
    assert slow.length_s == 1.5


@pytest.mark.parametrize("timeout, interval", [(0, 1), (1, 0), (-1, 1)])
def test_terms_need_positive_settings(timeout: float, interval: float) -> None:
    with pytest.raises(ValueError):
        terms(timeout, interval)


@given(
    st.floats(min_value=0.01, max_value=1e6, allow_nan=False),
    st.floats(min_value=0.001, max_value=1e6, allow_nan=False),
)
def test_the_terms_always_leave_room(timeout: float, interval: float) -> None:
    t = terms(timeout, interval)
    assert t.heartbeat_s <= interval and t.heartbeat_s <= timeout / 4 * (1 + 1e-12)
    assert t.margin_s >= t.heartbeat_s  # one late or lost heartbeat is no false expiry
    assert t.length_s - t.heartbeat_s >= timeout / 2 * (1 - 1e-9)  # a healthy worker's slack
    # SIGKILL strictly before the server may hand the task to another worker.
    assert t.length_s + t.grace_s < timeout


# --- the lease ----------------------------------------------------------------------


def test_a_lease_is_lapsed_until_granted_then_renews_forward_only() -> None:
    clock = Clock()
    lease = Lease(terms(2, 0.5))
    assert lease.lapsed(clock()) and lease.deadline is None and lease.kill_at is None
    assert lease.remaining(clock()) == 0.0

    assert lease.renew(clock.now - 0.1)  # sent 0.1 s ago, answered now
    assert lease.deadline == pytest.approx(clock.now + 1.4)
    assert lease.kill_at == pytest.approx(clock.now + 1.65)
    assert not lease.lapsed(clock())
    assert lease.remaining(clock()) == pytest.approx(1.4)

    # An answer to an older frame, arriving late, never shortens it.
    assert not lease.renew(clock.now - 0.5)
    assert lease.deadline == pytest.approx(clock.now + 1.4)

    clock.now += 1.39
    assert not lease.lapsed(clock())
    clock.now += 0.01
    assert lease.lapsed(clock())  # at the deadline exactly: lapsed
    assert lease.remaining(clock()) == 0.0
    assert lease.renew(clock.now)  # an answer after the lapse grants a new lease
    assert not lease.lapsed(clock())


def test_heartbeats_are_numbered_and_an_ack_gives_the_send_time() -> None:
    beats = Beats()
    first = beats.sent(10.0)
    second = beats.sent(10.5)
    third = beats.sent(11.0)
    assert (first, second, third) == (1, 2, 3)
    assert beats.acked(second) == 10.5
    assert beats.acked(first) is None  # covered by the later answer: forgotten
    assert beats.acked(second) is None  # answered once
    assert beats.acked(99) is None  # never sent
    assert beats.acked(third) == 11.0
    beats.sent(12.0)
    beats.clear()
    assert beats.acked(4) is None
    assert beats.sent(13.0) == 5  # numbers are never reused


def test_unanswered_heartbeats_are_bounded() -> None:
    beats = Beats()
    seqs = [beats.sent(float(i)) for i in range(MAX_UNANSWERED + 10)]
    assert beats.acked(seqs[0]) is None  # the oldest were dropped
    assert beats.acked(seqs[-1]) == float(MAX_UNANSWERED + 9)


# --- the sidecar's fence, on a fake clock ---------------------------------------------------


def test_the_fence_parses_lines_and_ignores_garbage() -> None:
    clock = Clock()
    fence = Fence(clock)
    for line in [b"+5", b"+7", b"-5", b"@1001.5 1001.75", b"@nan nan", b"@1 2 3", b"@x", b"@"]:
        fence.line(line)
    assert fence.registered == {7}
    assert (fence.term_at, fence.kill_at) == (1001.5, 1001.75)
    fence.line(b"@1003 1002")  # a kill before the term is read as "at the term"
    assert (fence.term_at, fence.kill_at) == (1003, 1003)
    fence.line(b"@-")
    assert (fence.term_at, fence.kill_at) == (None, None)


def test_the_fence_is_due_only_with_a_lease_and_a_group() -> None:
    clock = Clock()
    fence = Fence(clock)
    assert fence.timeout() is None  # nothing registered, no lease: block until a line
    fence.line(b"+7")
    assert fence.timeout() is None  # no lease: nothing is due before EOF
    fence.line(b"@1001.5 1001.75")
    assert fence.timeout() == pytest.approx(1.5)
    fence.line(b"-7")
    assert fence.timeout() is None  # a lease but nothing to fence
    fence.line(b"+7")
    clock.now = 1002.0
    assert fence.timeout() == 0.0  # overdue


def test_the_fence_terms_then_kills_each_group_once(
    group: Callable[..., subprocess.Popen[bytes]],
) -> None:
    clock = Clock(float(int(time.monotonic())))  # whole seconds: exact in the "%f" lease lines
    fence = Fence(clock)
    stubborn = group(ignore_term=True)
    plain = group()
    fence.line(b"+%d" % stubborn.pid)
    fence.line(b"+%d" % plain.pid)
    fence.line(b"@%f %f" % (clock.now + 1, clock.now + 2))
    fence.enforce()
    assert running(stubborn) and running(plain)  # before the deadline: nothing

    clock.now += 1
    fence.enforce()
    wait_until(lambda: not running(plain), "SIGTERM to end the plain group")
    assert running(stubborn)  # it ignores SIGTERM
    assert fence.timeout() == pytest.approx(1)  # next: the SIGKILL
    fence.enforce()  # SIGTERM is not sent twice; the kill is not yet due
    assert running(stubborn)

    clock.now += 1
    fence.enforce()
    wait_until(lambda: not running(stubborn), "SIGKILL to end the stubborn group")
    assert fence.registered == {stubborn.pid, plain.pid}  # until the worker unregisters
    assert fence.timeout() is None  # everything signalled: nothing more is due

    late = group()  # registered after the lapse: killed at once
    fence.line(b"+%d" % late.pid)
    assert fence.timeout() == 0.0
    fence.enforce()
    wait_until(lambda: not running(late), "a group registered after the lapse to die")


def test_a_renewed_lease_fences_again_when_it_lapses_again(
    group: Callable[..., subprocess.Popen[bytes]],
) -> None:
    clock = Clock(float(int(time.monotonic())))  # whole seconds: exact in the "%f" lease lines
    fence = Fence(clock)
    first = group()
    fence.line(b"+%d" % first.pid)
    fence.line(b"@%f %f" % (clock.now - 1, clock.now - 1))  # already lapsed
    fence.enforce()
    wait_until(lambda: not running(first), "the first group to die")
    fence.line(b"-%d" % first.pid)

    fence.line(b"@%f %f" % (clock.now + 5, clock.now + 6))  # reconnected: a new lease
    second = group()
    fence.line(b"+%d" % second.pid)
    fence.enforce()
    assert running(second)
    clock.now += 6
    fence.enforce()
    wait_until(lambda: not running(second), "the second group to die")


def test_the_fence_announces_each_group_once_before_it_signals(
    group: Callable[..., subprocess.Popen[bytes]],
) -> None:
    clock = Clock(float(int(time.monotonic())))
    notices: list[tuple[int, bool]] = []  # (pgid, still running when announced)

    def notify(pgids: list[int]) -> None:
        notices.extend((pgid, running_pid(pgid)) for pgid in pgids)

    fence = Fence(clock, notify=notify)
    plain, stubborn = group(), group(ignore_term=True)
    fence.line(b"+%d" % plain.pid)
    fence.line(b"+%d" % stubborn.pid)
    fence.line(b"@%f %f" % (clock.now - 1, clock.now + 1))
    fence.enforce()
    assert sorted(notices) == sorted([(plain.pid, True), (stubborn.pid, True)])
    clock.now += 2
    fence.enforce()  # the SIGKILL: already announced
    assert len(notices) == 2
    late = group()
    fence.line(b"+%d" % late.pid)  # registered after the lapse: announced, then killed
    fence.enforce()
    assert notices[2:] == [(late.pid, True)]


def running_pid(pid: int) -> bool:
    return bool(live_group_members(pid))


def test_the_sidecar_tells_the_worker_which_groups_it_fenced(
    group: Callable[..., subprocess.Popen[bytes]],
) -> None:
    with Reaper.start() as reaper:
        fenced, spared = group(), group()
        reaper.register(fenced.pid)
        reaper.set_lease(time.monotonic() - 1, time.monotonic() + 60)
        wait_until(lambda: not running(fenced), "the sidecar to fence the group")
        reaper.unregister(fenced.pid)
        reaper.set_lease(time.monotonic() + 60, time.monotonic() + 61)
        reaper.register(spared.pid)
        assert reaper.fenced(fenced.pid)  # its notice came before its signal
        assert not reaper.fenced(fenced.pid)  # asked once
        assert not reaper.fenced(spared.pid)


def test_serve_still_returns_what_is_registered_at_eof() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"+5\n@%f %f\n-5\n+7\n@-\n" % (time.monotonic() + 60, time.monotonic()))
    os.close(write_end)
    try:
        assert serve(read_end) == {7}
    finally:
        os.close(read_end)


def test_serve_pauses_after_a_read_so_lines_written_meanwhile_come_in_one_read() -> None:
    read_end, write_end = os.pipe()
    applied: list[list[bytes]] = [[]]  # the lines applied, per turn of the loop
    pauses: list[float] = []

    class Recording(Fence):
        def line(self, line: bytes) -> None:
            applied[-1].append(line)
            super().line(line)

        def enforce(self) -> None:
            applied.append([])
            super().enforce()

    def pause(seconds: float) -> None:  # the worker writes while the sidecar pauses
        pauses.append(seconds)
        if len(pauses) == 1:
            for line in (b"+2\n", b"+3\n", b"-2\n"):
                os.write(write_end, line)
            os.close(write_end)

    os.write(write_end, b"+1\n")
    try:
        assert serve(read_end, Recording(), coalesce_s=0.25, pause=pause) == {1, 3}
    finally:
        os.close(read_end)
    assert applied[:2] == [[b"+1"], [b"+2", b"+3", b"-2"]]
    assert pauses[0] == 0.25


def test_serve_never_pauses_past_a_lease_deadline() -> None:
    read_end, write_end = os.pipe()
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        os.close(write_end)

    os.write(write_end, b"+1\n@%f %f\n" % (time.monotonic() + 60, time.monotonic() + 60))
    try:
        serve(read_end, coalesce_s=3600, pause=pause)
    finally:
        os.close(read_end)
    assert 0 < pauses[0] <= 60


# --- the real sidecar ----------------------------------------------------------------------


def test_the_sidecar_fences_a_lapsed_lease_and_keeps_serving(
    group: Callable[..., subprocess.Popen[bytes]],
) -> None:
    with Reaper.start() as reaper:
        stubborn = group(ignore_term=True)
        reaper.register(stubborn.pid)
        reaper.set_lease(time.monotonic() + 60, time.monotonic() + 61)
        time.sleep(0.2)  # give a wrong sidecar the chance to kill it early
        assert running(stubborn)

        # Renewed in time, again and again: it lives on.
        for _ in range(10):
            reaper.set_lease(time.monotonic() + 2, time.monotonic() + 2.5)
            time.sleep(0.1)
        assert running(stubborn)

        reaper.set_lease(time.monotonic() + 0.2, time.monotonic() + 0.4)  # then not renewed
        wait_until(lambda: not running(stubborn), "the sidecar to fence the group")
        assert reaper.alive  # it goes on guarding
        reaper.unregister(stubborn.pid)

        other = group()
        reaper.set_lease(time.monotonic() + 60, time.monotonic() + 61)
        reaper.register(other.pid)
        reaper.set_lease(None)  # no lease (an older server): only EOF kills
        time.sleep(0.2)
        assert running(other)
    wait_until(lambda: not running(other), "EOF to kill what is still registered")


def test_the_sidecar_fences_while_the_worker_is_frozen(
    group: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """The guard's point: the process holding the pipe is stopped, yet the lease
    is enforced; when it resumes it can still unregister and reap."""
    code = (
        "import sys, time\n"
        "from worker.reaper import Reaper\n"
        "reaper = Reaper.start()\n"
        "reaper.register(int(sys.argv[1]))\n"
        "reaper.set_lease(time.monotonic() + 0.5, time.monotonic() + 0.75)\n"
        "print('set', flush=True)\n"
        "sys.stdin.readline()\n"
        "reaper.unregister(int(sys.argv[1]))\n"
        "reaper.close()\n"
        "print('closed', flush=True)\n"
    )
    task = group(ignore_term=True)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(task.pid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=root,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == b"set\n"
        holder.send_signal(signal.SIGSTOP)
        wait_until(lambda: not running(task), "the sidecar to fence the frozen holder's group")
        holder.send_signal(signal.SIGCONT)
        holder.stdin.write(b"go\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == b"closed\n"
        assert holder.wait(timeout=WAIT_S) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=WAIT_S)
        holder.stdin.close()
        holder.stdout.close()


def test_an_unnumbered_heartbeat_is_the_version_1_frame() -> None:
    from banyan import protocol as p

    assert p.encode(p.Heartbeat()) == '{"type":"heartbeat","draining":false}'  # older servers
    assert '"seq":3' in p.encode(p.Heartbeat(seq=3))


def test_the_fence_keeps_the_tag_of_a_registration() -> None:
    fence = Fence(Clock())
    for line in [b"+5 cg:/sys/fs/cgroup/x", b"+6 env:2:abc", b"+7", b"-6"]:
        fence.line(line)
    assert fence.registered == {5, 7}
    assert fence.tags == {5: b"cg:/sys/fs/cgroup/x"}


def test_the_fence_also_stops_shells_the_worker_had_not_registered(
    group: Callable[..., subprocess.Popen[bytes]],
) -> None:
    clock = Clock(float(int(time.monotonic())))
    unregistered = group()
    asked: list[set[int]] = []

    def strays(known: set[int]) -> set[int]:
        asked.append(set(known))
        return {unregistered.pid}

    fence = Fence(clock, strays=strays)
    fence.line(b"@%f %f" % (clock.now + 1, clock.now + 2))
    fence.enforce()
    assert asked == [] and running(unregistered)  # looked for only once it lapses
    clock.now += 1
    fence.enforce()
    wait_until(lambda: not running(unregistered), "SIGTERM to the unregistered group")
    fence.enforce()
    assert asked == [set()]  # one /proc scan per lapse
    assert fence.registered == {unregistered.pid}  # until the worker unregisters it


def test_a_worker_frozen_before_it_registers_a_shell_has_it_fenced() -> None:
    """The worker can be frozen between starting a task's shell and writing its
    ``+PGID`` line; the sidecar finds the shell (a child of the worker leading
    its own group, with a BANYAN_TASK_ID) and fences it with the rest. A child
    that is no task's is left alone."""
    code = (
        "import os, subprocess, sys, time\n"
        "from worker.reaper import Reaper\n"
        "reaper = Reaper.start()\n"
        "env = dict(os.environ, BANYAN_TASK_ID='t1', BANYAN_ATTEMPT='1')\n"
        "task = subprocess.Popen(['sleep', '1000'], start_new_session=True, env=env)\n"
        "other = subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
        "reaper.set_lease(time.monotonic() + 0.5, time.monotonic() + 0.75)\n"
        "print(task.pid, other.pid, flush=True)\n"
        "sys.stdin.readline()\n"
        "other.kill()\n"
        "task.wait(); other.wait()\n"
        "reaper.close()\n"
        "print('closed', flush=True)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        task, other = (int(pid) for pid in holder.stdout.readline().split())
        holder.send_signal(signal.SIGSTOP)
        wait_until(lambda: not live_group_members(task), "the sidecar to fence the shell")
        assert live_group_members(other)  # not a task's
        holder.send_signal(signal.SIGCONT)
        holder.stdin.write(b"go\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == b"closed\n"
        assert holder.wait(timeout=WAIT_S) == 0
    finally:
        if holder.poll() is None:
            holder.send_signal(signal.SIGCONT)
            holder.kill()
            holder.wait(timeout=WAIT_S)
        holder.stdin.close()
        holder.stdout.close()
