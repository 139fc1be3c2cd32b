"""A worker's (re)join: which of the attempts it names go on, and what
becomes of the open attempts it does not name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from banyan.states import ACTIVE_STATES


@dataclass(frozen=True, slots=True)
class Rejoin:
    """``resumed``/``dropped``: of the attempts the worker names, those still
    its own (tell it to go on) and the others (tell it to stop); ``unnamed``:
    open attempts it did not name, to end abandoned, ``undelivered`` (back to
    the queue uncounted) when the same process rejoined."""

    resumed: list[str]
    dropped: list[str]
    unnamed: list[tuple[str, str]]
    undelivered: bool


def rejoin(
    *,
    held: Sequence[tuple[str, str]],
    current: Mapping[str, str | None],
    open_attempts: Sequence[tuple[str, str]],
    same_process: bool,
) -> Rejoin:
    """``held``: (task, key) the worker says it runs; ``current``: for each, the
    task's state if that key is still the worker's open attempt, else None;
    ``open_attempts``: (task, key) the server thinks it holds.

    The same process names every attempt it runs or has not had acknowledged,
    so one it does not name almost always never reached it (the claim was
    committed, then the server died or the connection broke before
    ``assigned`` arrived): it goes back to the queue without counting a
    retry. (The other case: the worker was cut off long enough to fence and
    forget its tasks; they were killed, and are rerun uncounted too.) A new
    process (a restart) follows the retry rule."""
    resumed: list[str] = []
    dropped: list[str] = []
    for task_id, _ in held:
        state = current.get(task_id)
        (resumed if state is not None and state in ACTIVE_STATES else dropped).append(task_id)
    mentioned = {task_id for task_id, _ in held}
    unnamed = [(t, k) for t, k in open_attempts if t not in mentioned]
    return Rejoin(resumed, dropped, unnamed, undelivered=same_process)
