"""Task ids: 24 hex digits, ObjectId-like and time-ordered.

Layout (12 bytes): 4-byte big-endian seconds since the epoch, 5 random bytes
fixed per process, 3-byte counter. Sorting by id sorts by creation second,
and ids made in one process in one second sort in creation order, so
``_id`` is a cheap, stable FIFO key.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time

ID_PATTERN = r"^[0-9a-f]{24}$"
_ID_RE = re.compile(ID_PATTERN)

_lock = threading.Lock()
_process_random = os.urandom(5)
_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


def new_id(now_s: float | None = None) -> str:
    """A fresh 24-hex id."""
    seconds = int(time.time() if now_s is None else now_s)
    with _lock:
        count = next(_counter) & 0xFFFFFF
    raw = seconds.to_bytes(4, "big") + _process_random + count.to_bytes(3, "big")
    return raw.hex()


def new_ids(n: int, now_s: float | None = None) -> list[str]:
    """``n`` fresh ids in ascending order (one lock round for the lot)."""
    seconds = int(time.time() if now_s is None else now_s).to_bytes(4, "big")
    with _lock:
        counts = [next(_counter) & 0xFFFFFF for _ in range(n)]
    prefix = seconds + _process_random
    ids = [(prefix + c.to_bytes(3, "big")).hex() for c in counts]
    # The counter may wrap inside a batch; keep the batch itself ordered.
    return ids if counts == sorted(counts) else sorted(ids)


def is_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.match(value) is not None
