"""TLS for every Banyan program: the client's trust (``--ca-cert``,
``BANYAN_CA_CERT`` or the client file's ``ca_cert``; else the system's), the
server's certificate, and one-line messages for what goes wrong (a missing CA
file, a certificate that does not verify, plain HTTP to an HTTPS port)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import aiohttp

from banyan.errors import InvalidInput, ServerUnreachable

CA_HINT = "pass --ca-cert or fix the server certificate"
_SSL_LOCATION = re.compile(r"\s*\(_ssl\.c:\d+\)")


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
            problem = _reason(exc)
    if problem is not None:
        raise InvalidInput(
            f"the CA certificate {ca_cert} ({source}) holds no PEM certificate: {problem}",
            issues={"ca_cert": str(ca_cert)},
        )
    # Trust what the file holds even when it is not a root (the server's own
    # certificate, an intermediate): the default on Python 3.13 and later.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def server_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The server's context for ``--tls-cert``/``--tls-key``, or ``None`` (plain HTTP)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise InvalidInput(f"{given} needs {missing} too (the certificate and its private key)")
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise InvalidInput(f"cannot read {flag} {path}: {reason}") from exc
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise InvalidInput(
            f"--tls-cert {cert} and --tls-key {key} are not a PEM certificate and its "
            f"private key: {_reason(exc)}"
        ) from exc
    return context


def unreachable(url: str, exc: BaseException) -> ServerUnreachable:
    """The error to raise when a request to ``url`` failed with ``exc``, in
    words that say what to do when TLS is the cause."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        detail = getattr(exc.certificate_error, "verify_message", None) or _reason(
            exc.certificate_error
        )
        return ServerUnreachable(f"certificate verify failed for {url}: {CA_HINT} ({detail})")
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return ServerUnreachable(
            f"TLS handshake with {url} failed (is it serving HTTPS?): {_reason(exc.os_error)}"
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError) and url.startswith(("http:", "ws:")):
        return ServerUnreachable(
            f"cannot reach the Banyan server at {url}: it closed the connection "
            "(if it serves HTTPS, use an https:// URL)"
        )
    return ServerUnreachable(f"cannot reach the Banyan server at {url}: {exc}")


def _reason(exc: BaseException) -> str:
    """``exc`` in words, without OpenSSL's ``(_ssl.c:1000)`` source location."""
    return _SSL_LOCATION.sub("", str(exc)).strip() or type(exc).__name__
