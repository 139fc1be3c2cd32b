"""TLS for clients: which certificates to trust (``--ca-cert``,
``BANYAN_CA_CERT`` or the client file's ``ca_cert``; else the system's) and
one-line messages for what goes wrong (a missing CA file, a certificate that
does not verify, plain HTTP to an HTTPS port)."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from banyan.errors import InvalidInput, ServerUnreachable
from banyan.tls import ssl_reason

if TYPE_CHECKING:
    from banyan.client.discovery import Connection  # which imports this module

CA_HINT = "pass --ca-cert or fix the server certificate"


def client_context(ca_cert: Path | None, *, source: str = "--ca-cert") -> ssl.SSLContext | None:
    """A context that trusts only the certificates in ``ca_cert`` (PEM; a CA or
    the server's own self-signed certificate), or ``None`` for the system's
    trust store. ``source`` names where the path came from, for the error."""
    if ca_cert is None:
        return None
    try:
        data = ca_cert.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidInput(
            f"cannot read the CA certificate {ca_cert} ({source}): {reason}",
            issues={"ca_cert": str(ca_cert)},
        ) from exc
    problem = "the file is empty" if not data.strip() else None
    if problem is None:
        try:
            # cadata: these certificates instead of the system's (never empty
            # here: an empty cadata would mean the system's).
            context = ssl.create_default_context(cadata=data)
        except (ssl.SSLError, ValueError) as exc:
            problem = ssl_reason(exc)
    if problem is not None:
        raise InvalidInput(
            f"the CA certificate {ca_cert} ({source}) holds no PEM certificate: {problem}",
            issues={"ca_cert": str(ca_cert)},
        )
    # Trust what the file holds even when it is not a root (the server's own
    # certificate, an intermediate): the default on Python 3.13 and later.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def unreachable(url: str, exc: BaseException) -> ServerUnreachable:
    """The error to raise when a request to ``url`` failed with ``exc`` (from aiohttp or
    from ``http.client``), in words that say what to do when TLS is the cause."""
    closed = (
        f"cannot reach the Banyan server at {url}: it closed the connection "
        "(if it serves HTTPS, use an https:// URL)"
    )
    plain = url.startswith(("http:", "ws:"))
    # aiohttp's own errors first (its certificate error is also an ssl one); a process
    # that never imported aiohttp cannot have them, and need not import it to know.
    aio = sys.modules.get("aiohttp")
    if aio is not None:
        if isinstance(exc, aio.ClientConnectorCertificateError):
            exc = exc.certificate_error
        elif isinstance(exc, aio.ClientConnectorSSLError):
            exc = exc.os_error
        elif isinstance(exc, aio.ServerDisconnectedError) and plain:
            return ServerUnreachable(closed)
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or ssl_reason(exc)
        return ServerUnreachable(f"certificate verify failed for {url}: {CA_HINT} ({detail})")
    if isinstance(exc, ssl.SSLError):
        return ServerUnreachable(
            f"TLS handshake with {url} failed (is it serving HTTPS?): {ssl_reason(exc)}"
        )
    if isinstance(exc, http.client.HTTPException | ConnectionResetError) and plain:
        return ServerUnreachable(closed)
    return ServerUnreachable(f"cannot connect to {url}: {connect_reason(exc)}")


def connect_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few lower-case words ("connection refused",
    "timed out"), without aiohttp's "Cannot connect to host … ssl:default [...]"."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    connector = sys.modules.get("aiohttp")  # only aiohttp's own errors need it
    wrapped = connector is not None and isinstance(exc, connector.ClientConnectorError)
    cause = exc.os_error if wrapped else exc  # type: ignore[attr-defined]
    if isinstance(cause, OSError):
        if isinstance(cause, socket.gaierror):
            return f"unknown host ({cause.strerror or cause})".lower()
        if cause.errno is not None:
            return os.strerror(cause.errno).lower()
        if cause.strerror:
            return cause.strerror.lower()
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


async def check_tls(connection: Connection, *, timeout_s: float = 10.0) -> None:
    """Fail fast on what retrying cannot fix: for each https:// server of the
    connection (standbys too), a certificate that does not verify or a server
    that does not speak TLS (``ServerUnreachable``). Any other outcome, a
    server that is down included, passes: long-running clients wait for it."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    for server in connection.servers:
        if not server.startswith("https://"):
            continue
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(server + "/health", ssl=connection.ssl),
            ):
                pass
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError) as exc:
            raise unreachable(server, exc) from exc
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
