"""A worker's identity (issue 11): which name a gateway connection stands
for, and whether it may have it now.

- A worker token names one worker: the worker's name *is* the token's name.
  A ``hello`` that names no worker takes it; one that names another worker
  is refused. An admin token may run a worker of any name (default
  ``host:pid``): admins are trusted with everything anyway.
- One live session per name. A connection for a name that is connected, or
  that was cut off and still holds attempts (it may come back within
  ``worker_timeout_s``), is refused, unless it proves it is the same process:
  it presents the secret the server handed that process in ``welcome``.
  ``host`` and ``pid`` are public (``GET /workers``) and prove nothing.
- Only a proven reconnect re-attaches to attempts (``domain.workers.rejoin``).
"""

from __future__ import annotations

import hashlib
import secrets
from enum import Enum

from banyan.errors import Forbidden, InvalidInput
from banyan.tokens import Caller, Role

SECRET_BYTES = 32


def worker_name(caller: Caller, declared: str | None, *, host: str, pid: int) -> str:
    """The name the connection of ``caller`` stands for; ``Forbidden`` for a
    worker token that declares another worker's name."""
    if caller.role is Role.WORKER:
        if declared is not None and declared != caller.name:
            raise Forbidden(
                f"this token belongs to worker {caller.name!r}, not {declared!r} "
                f"(start banyan-worker without --name, or with --name {caller.name!r}; "
                "give each worker a token of its own)"
            )
        return caller.name
    if declared is not None:
        return declared
    if not host:
        raise InvalidInput("hello names no worker (with an admin token, name it or send host)")
    return f"{host}:{pid}"


class Admission(Enum):
    NEW_PROCESS = "new"  # a process not seen before takes the name
    SAME_PROCESS = "same"  # the process that holds the name reconnected (proven)
    REFUSE_CONNECTED = "connected"  # another process holds a live connection
    REFUSE_AWAY = "away"  # another process was cut off, holds attempts, may come back


def admit(*, connected: bool, away: bool, holds_attempts: bool, proven: bool) -> Admission:
    """``connected``: a connection for the name is open; ``away``: it was cut
    off and is not yet lost; ``holds_attempts``: open attempts are recorded
    for the name; ``proven``: the hello carried the secret of the process
    that holds the name. A proven reconnect replaces a connection still
    open (a half-dead TCP socket the server has not noticed yet)."""
    if proven:
        return Admission.SAME_PROCESS
    if connected:
        return Admission.REFUSE_CONNECTED
    if away and holds_attempts:
        return Admission.REFUSE_AWAY
    return Admission.NEW_PROCESS


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def proves(secret: str | None, stored_digest: str | None) -> bool:
    """Whether ``secret`` is the one whose digest is stored for the worker."""
    if secret is None or not stored_digest:
        return False
    return secrets.compare_digest(secret_digest(secret), stored_digest)
