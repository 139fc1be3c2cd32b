"""TLS for the server: its certificate and key (``--tls-cert``/``--tls-key``),
and ``ssl_reason()``, an SSL error in words, which the client's TLS
(``banyan.client.tls``) shares."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

from banyan.errors import InvalidInput

_SSL_LOCATION = re.compile(r"\s*\(_ssl\.c:\d+\)")


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
            f"private key: {ssl_reason(exc)}"
        ) from exc
    return context


def ssl_reason(exc: BaseException) -> str:
    """``exc`` in words, without OpenSSL's ``(_ssl.c:1000)`` source location."""
    return _SSL_LOCATION.sub("", str(exc)).strip() or type(exc).__name__
