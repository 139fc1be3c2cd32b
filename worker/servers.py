"""Which server the worker connects to next, when it was given several
(``--server A --server B``, or ``BANYAN_SERVER=A,B``; issue 14).

The worker stays on a server while it can. When a connection cannot be made
or ends, it tries the next server at once, round the list; only after a
whole round without a connection does it wait (``RECONNECT_MAX_S``) before
the next round, as it does with one server. A server that answers re-admits
the worker by the secret it was given in ``welcome``: that proof is kept in
the database the servers share, so the worker's running tasks go on under
any of them, and their reports are accepted there, as on a reconnect to the
same server (``server/domain/workers.py``). Nothing here depends on which
store the servers use.
"""

from __future__ import annotations

import logging

from banyan.client.discovery import Connection

log = logging.getLogger(__name__)


class Servers:
    """The connection in use and how much of the current round was tried."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._tried = 0  # servers tried since the last connection (or round)

    @property
    def server(self) -> str:
        return self.connection.server

    @property
    def gateway_url(self) -> str:
        return self.connection.ws_base + "/workers/connect"

    def connected(self) -> None:
        """The server in use admitted the worker: a new round starts at its next loss."""
        self._tried = 0

    def next(self) -> bool:
        """After a failed or ended connection: move to the next server. True
        when it is to be tried at once; False when the round is over (or there
        is one server), and the caller waits before trying again."""
        if not self.connection.fallbacks:
            return False
        failed = self.connection.server
        self.connection = self.connection.failover()
        self._tried += 1
        if self._tried >= len(self.connection.servers):
            self._tried = 0
            return False
        log.info("%s lost or unreachable: trying %s", failed, self.connection.server)
        return True
