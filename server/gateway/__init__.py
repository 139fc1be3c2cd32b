"""The worker gateway (``GET /workers/connect``): one websocket per worker.

The gateway knows which worker holds which attempt (with its key), hands out
claims, applies reports, pushes ``work_available`` when the event hub sees a
task become available in a queue a worker serves and ``cancel`` when a task
it runs is asked to stop, and declares a worker lost once it has been silent
for ``worker_timeout_s`` (its attempts are then abandoned and follow the retry
rule). A worker that reconnects in time re-attaches to the attempts it still
runs. Nothing here polls: the monitor only watches the clock for silences.

Identity (``server.domain.identity``): a worker token's connection is the
worker named by the token; one connection per worker, unless the same
process proves itself with the secret of its last ``welcome`` (4409
otherwise); a revoked token's connections are closed with 4401
(``close_revoked``, from ``server.revocation``).

One class, :class:`Gateway`, in layers, one module each: ``session`` (what
the gateway knows of one connected worker), ``lifetime`` (its state, start
and stop, revocation, pushes and the silence monitor), ``frames`` (claims and
reports) and ``connection`` (the websocket: hello, admission, the frame loop).
"""

from server.gateway.connection import Gateway
from server.gateway.session import Session

__all__ = ["Gateway", "Session"]
