"""Dependency kinds: what a task's parents' outcomes must be before it runs.

``run_when`` is per task (as Slurm's one dependency list per job is mostly of
one kind): ``success`` (the default) runs once every parent succeeded, and is
cancelled when one fails; ``finished`` runs once every parent has ended,
whatever the outcome; ``failure`` runs once every parent has ended if at
least one of them failed, and otherwise ends cancelled with ``SKIPPED``.
A cancelled parent counts as failed; a skipped parent counts as neither
success nor failure (a ``failure`` task is not triggered by it).

Also here: Slurm's ``--dependency`` syntax, as the CLI accepts it.
"""

from __future__ import annotations

from enum import StrEnum

from banyan.errors import InvalidInput


class RunWhen(StrEnum):
    SUCCESS = "success"
    FINISHED = "finished"
    FAILURE = "failure"


# The exit status of a ``failure`` task none of whose parents failed.
SKIPPED = "skipped (no parent failed)"

# Slurm's dependency types → ours.
SLURM_KINDS: dict[str, RunWhen] = {
    "afterok": RunWhen.SUCCESS,
    "afterany": RunWhen.FINISHED,
    "afternotok": RunWhen.FAILURE,
}


def parse_slurm(spec: str) -> list[tuple[RunWhen, str]]:
    """``afterok:ID:ID,afterany:ID`` → ``[(kind, id), ...]`` (``?`` as a
    separator, Slurm's "any of", is refused: Banyan waits on all parents)."""
    found: list[tuple[RunWhen, str]] = []
    if "?" in spec:
        raise InvalidInput(
            "--dependency with '?' (any of) is not supported: Banyan waits on every parent"
        )
    for part in spec.split(","):
        kind, _, ids = part.strip().partition(":")
        if kind not in SLURM_KINDS:
            known = ", ".join(SLURM_KINDS)
            raise InvalidInput(f"--dependency type {kind!r} is not supported (use {known})")
        names = [i for i in ids.split(":") if i]
        if not names:
            raise InvalidInput(f"--dependency {part!r} names no task")
        found += [(SLURM_KINDS[kind], i) for i in names]
    return found


def one_kind(kinds: set[RunWhen]) -> RunWhen:
    """The single kind a child's parents are given with; mixed kinds are refused."""
    if len(kinds) > 1:
        names = " and ".join(sorted(k.value for k in kinds))
        raise InvalidInput(
            f"a task's parents are all of one kind (run_when), but {names} were given: "
            "submit a group task after some of them and depend on it instead"
        )
    return next(iter(kinds), RunWhen.SUCCESS)
