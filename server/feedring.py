"""The feed's ring of recent events, bounded in events and in bytes.

It holds each event as its encoded websocket frame (the bytes every
subscriber is sent) with its ``seq`` and type, never the decoded event: the
byte bound counts what is really held, so a flood of large events (4 KB
names, say) costs at most ``max_bytes`` however many there are. A subscriber
with a ``where`` filter decodes the frame's payload to test it.

The ring knows the last ``seq`` it was told of (``head``), even when it holds
nothing: ``after(seq)`` answers None whenever it cannot prove it holds every
event after ``seq``, and the caller reads those from the store instead.
"""

from __future__ import annotations

import bisect
import collections
import json
import sys
from typing import Any, NamedTuple

# What one entry costs beside its frame's bytes object: the tuple, its int,
# the deque's slot (the type string is shared, see ``Ring.add``).
ENTRY_OVERHEAD_BYTES = 120


class Frame(NamedTuple):
    seq: int
    type: str
    wire: bytes  # one complete websocket text frame

    def data(self) -> dict[str, Any]:
        """The event's ``data``, decoded from the frame (for ``where`` filters)."""
        length = self.wire[1] & 0x7F
        offset = 2 if length < 126 else 4 if length == 126 else 10
        data: dict[str, Any] = json.loads(self.wire[offset:])["data"]
        return data


def entry_bytes(frame: Frame) -> int:
    return sys.getsizeof(frame.wire) + ENTRY_OVERHEAD_BYTES


class Ring:
    def __init__(self, *, max_events: int, max_bytes: int) -> None:
        self._frames: collections.deque[Frame] = collections.deque()
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._types: dict[str, str] = {}
        self.bytes = 0
        self.head = 0  # the last seq this ring was told of, held or not

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, seq: int, type_: str, wire: bytes) -> None:
        # One shared string per event type, not one per event.
        frame = Frame(seq, self._types.setdefault(type_, type_), wire)
        self._frames.append(frame)
        self.bytes += entry_bytes(frame)
        self.head = seq
        while self._frames and (
            len(self._frames) > self._max_events or self.bytes > self._max_bytes
        ):
            self.bytes -= entry_bytes(self._frames.popleft())

    def skip(self, seq: int) -> None:
        """Events up to ``seq`` happened and are not held (nobody was listening):
        drop what is held, so ``after`` sends earlier cursors to the store."""
        self._frames.clear()
        self.bytes = 0
        self.head = seq

    def after(self, seq: int, *, limit: int) -> list[Frame] | None:
        """Up to ``limit`` frames after ``seq``; None when the ring cannot vouch for them."""
        if self.head <= seq:
            return []
        frames = self._frames
        if not frames or frames[0].seq > seq + 1:
            return None
        start = bisect.bisect_right(frames, seq, key=lambda f: f.seq)
        return [frames[i] for i in range(start, min(len(frames), start + limit))]
