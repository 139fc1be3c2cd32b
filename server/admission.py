"""Whether the gateway takes a worker's connection (issue 11): the name it
stands for and whether that name is free for it now, by the rules of
``server.domain.identity`` applied to what the gateway and the store know.
A refusal carries the close code that says why (4403, 4409, 1013)."""

from __future__ import annotations

from banyan import protocol as p
from banyan.errors import BanyanError, Forbidden, InvalidInput
from banyan.tokens import Caller
from server.domain import identity
from server.stores.base import Store

CLOSE_TRY_AGAIN = 1013  # RFC 6455 "try again later": the join could not be recorded


class Refusal(BanyanError):
    """A connection the gateway will not take, with the close code that says why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def close_reason(message: str) -> bytes:
    """A close frame's reason: at most 123 bytes, cut on a character boundary."""
    return message.encode()[:120].decode(errors="ignore").encode()


def name_of(caller: Caller, hello: p.Hello) -> str:
    """The worker the connection stands for (4403: not the worker token's)."""
    try:
        return identity.worker_name(caller, hello.name, host=hello.host, pid=hello.pid)
    except Forbidden as exc:
        raise Refusal(p.CLOSE_FORBIDDEN, exc.message) from exc
    except InvalidInput as exc:
        raise Refusal(p.CLOSE_BAD_FRAME, exc.message) from exc


async def check(
    store: Store,
    name: str,
    hello: p.Hello,
    *,
    connected: bool,
    away: bool,
    worker_timeout_s: float,
) -> bool:
    """Whether the connection is the process that holds ``name`` (it showed
    its secret); ``Refusal`` when another process holds it (4409) or may
    come back to its attempts (1013). ``connected``: a connection for the
    name is open; ``away``: it was cut off and is not lost yet."""
    known = await store.worker_identity(name)
    proven = identity.proves(hello.secret, None if known is None else known.secret)
    admission = identity.admit(
        connected=connected,
        away=away,
        holds_attempts=known is not None and known.open_attempts > 0,
        proven=proven,
    )
    if admission is identity.Admission.REFUSE_CONNECTED:
        raise Refusal(
            p.CLOSE_DUPLICATE,
            f"worker {name!r} is already connected (another process has its token)",
        )
    if admission is identity.Admission.REFUSE_AWAY:
        raise Refusal(
            CLOSE_TRY_AGAIN,
            f"worker {name!r} was cut off holding attempts and may come back; "
            f"try again (it is lost after {worker_timeout_s:.0f} s)",
        )
    return proven
