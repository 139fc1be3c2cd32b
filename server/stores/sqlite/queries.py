"""The SQLite backend's SQL statements, named in one place (as procrastinate
keeps its queries): the modules beside it run these by name."""

from __future__ import annotations

from typing import Final

# Available tasks a claim may hand out, in the claim policy's order; formatted
# with the queue placeholders and ``server.domain.claims.ORDER``. Parameters:
# *queues, max cores, max memory, max gpus, how many to look at.
CLAIM_CANDIDATES: Final = (
    "SELECT id, cores, memory, gpus, requested_resources, name, queue, command, env, cwd, "
    "max_termination_time FROM tasks INDEXED BY tasks_claim "
    "WHERE state = 'available' AND queue IN ({queues}) "
    "AND cores <= ? AND memory <= ? AND gpus <= ? "
    "ORDER BY {order} LIMIT ?"
)
