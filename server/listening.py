"""``--port 0``: the server binds its listening sockets itself, before it
starts, so the port the kernel picked is known from the start and every place
that says where the server listens (the banner, the log line, the client
file, a SQLite database's serving lock) names it, not port 0.

A named port is left to aiohttp to bind (its error for a port in use is the
one the server has always printed)."""

from __future__ import annotations

import contextlib
import socket


def bind_free_port(host: str, *, backlog: int = 128) -> tuple[list[socket.socket], int]:
    """Listening sockets on every address of ``host`` (as aiohttp would bind
    them: ``""`` is every interface), all on one port the kernel chose;
    returns them with that port."""
    infos = socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    port = 0
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # As asyncio does: an IPv6 socket beside an IPv4 one must not
                # claim the IPv4 port as well.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # The first address picks the port; the others (localhost's ::1
            # beside 127.0.0.1) take the same one.
            sock.bind((address[0], port, *address[2:]))
            port = int(sock.getsockname()[1])
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        raise
    return sockets, port
