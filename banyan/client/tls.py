"""TLS for clients: which certificates to trust (``--ca-cert``,
``BANYAN_CA_CERT`` or the client file's ``ca_cert``; else the system's) and
one-line messages for what goes wrong (a missing CA file, a certificate that
does not verify, plain HTTP to an HTTPS port)."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

from banyan.errors import InvalidInput, ServerUnreachable
from banyan.tls import ssl_reason

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
    """The error to raise when a request to ``url`` failed with ``exc``, in
    words that say what to do when TLS is the cause."""
    import aiohttp  # here: finding the server and token should not load aiohttp

    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        detail = getattr(exc.certificate_error, "verify_message", None) or ssl_reason(
            exc.certificate_error
        )
        return ServerUnreachable(f"certificate verify failed for {url}: {CA_HINT} ({detail})")
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return ServerUnreachable(
            f"TLS handshake with {url} failed (is it serving HTTPS?): {ssl_reason(exc.os_error)}"
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError) and url.startswith(("http:", "ws:")):
        return ServerUnreachable(
            f"cannot reach the Banyan server at {url}: it closed the connection "
            "(if it serves HTTPS, use an https:// URL)"
        )
    return ServerUnreachable(f"cannot connect to {url}: {connect_reason(exc)}")


def connect_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few lower-case words ("connection refused",
    "timed out"), without aiohttp's "Cannot connect to host … ssl:default [...]"."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    import aiohttp

    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(cause, OSError):
        if isinstance(cause, socket.gaierror):
            return f"unknown host ({cause.strerror or cause})".lower()
        if cause.errno is not None:
            return os.strerror(cause.errno).lower()
        if cause.strerror:
            return cause.strerror.lower()
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
