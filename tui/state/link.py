"""Whether what is on screen is live (the link to the server), and the
event rate meter of the status bar."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

STALE_AFTER_S = 3.0  # "reconnecting…" this long, then "stale since hh:mm:ss"


class Link:
    """Whether what is on screen is live: ``connecting`` (nothing yet),
    ``loading`` (a snapshot on its way; events wait), ``live``, or
    ``reconnecting`` (the feed dropped: the data is as of ``lost_at``)."""

    def __init__(self) -> None:
        self.state = "connecting"
        self.lost_at: float | None = None
        self.error: str | None = None
        self.loaded = False

    @property
    def live(self) -> bool:
        return self.state == "live"

    def connected(self) -> None:
        self.error = None
        if self.state != "loading":
            self.state = "live" if self.loaded else "loading"
        if self.live:
            self.lost_at = None

    def loading(self) -> None:
        self.state = "loading"

    def snapshot_loaded(self, *, feed_up: bool) -> None:
        self.loaded = True
        self.state = "live" if feed_up else "reconnecting"
        if feed_up:
            self.lost_at = None

    def lost(self, now: float, error: str) -> None:
        self.error = error
        if self.lost_at is None:
            self.lost_at = now
        if self.state != "connecting":
            self.state = "reconnecting"

    def label(self, now: float, clock_text: Callable[[float], str]) -> tuple[str, str]:
        """(text, style) for the status bar."""
        if self.state == "live":
            return "● live", "green"
        if self.state == "loading":
            return ("◌ resyncing…" if self.loaded else "◌ loading…"), "yellow"
        if self.state == "connecting":
            return "◌ connecting…", "yellow"
        if not self.loaded or self.lost_at is None or now - self.lost_at < STALE_AFTER_S:
            return "◌ reconnecting…", "yellow"
        return f"✘ stale since {clock_text(self.lost_at)}", "bold red"


class RateMeter:
    """Events per second over the last few seconds."""

    def __init__(self, *, window_s: int = 5) -> None:
        self.window_s = window_s
        self._buckets: deque[tuple[int, int]] = deque()

    def add(self, count: int, now: float) -> None:
        second = int(now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1] = (second, self._buckets[-1][1] + count)
        else:
            self._buckets.append((second, count))
        while self._buckets and self._buckets[0][0] <= second - self.window_s:
            self._buckets.popleft()

    def rate(self, now: float) -> float:
        start = int(now) - self.window_s
        return sum(n for second, n in self._buckets if second > start) / self.window_s


def rate_text(per_s: float) -> str:
    if per_s >= 1000:
        return f"{per_s / 1000:.1f}k ev/s"
    return f"{per_s:.0f} ev/s" if per_s >= 10 or per_s == 0 else f"{per_s:.1f} ev/s"
