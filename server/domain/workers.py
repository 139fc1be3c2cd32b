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
    ``open_attempts``: (task, key) the server thinks it holds;
    ``same_process``: the worker proved it is the process that holds them.

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
        # Only the same process (proven by its secret, domain.identity) goes
        # on with attempts: another one naming them is told to stop them.
        ours = same_process and state is not None and state in ACTIVE_STATES
        (resumed if ours else dropped).append(task_id)
    # Open attempts that do not go on end: those it did not name, and (for
    # another process) those it named without the proof.
    going_on = set(resumed)
    unnamed = [(t, k) for t, k in open_attempts if t not in going_on]
    return Rejoin(resumed, dropped, unnamed, undelivered=same_process)
