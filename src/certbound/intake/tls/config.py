"""What the built-in TLS listener is told, and what it reports back.

:class:`TlsListenerConfig` is the listener's configuration (address, server certificate,
client-verify mode, timeouts, bounds). In reject mode the caller supplies a :data:`Judge`
(Certbound's validator and revocation) that decides on the presented chain inside the
handshake, and an :data:`OnReject` that receives a :class:`HandshakeRejection` for every
refusal, so it can be logged with the certificate's subject, issuer, serial and reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from certbound.errors import ReasonCode

ClientVerify = Literal["accept", "reject"]
CLIENT_VERIFY_MODES: tuple[str, ...] = ("accept", "reject")


@dataclass(frozen=True, slots=True)
class TlsListenerConfig:
    """The listener's settings. Timeouts are seconds; ``port`` 0 picks a free port.

    - ``client_verify``: ``"accept"`` hands every chain (or none) to the app with OpenSSL's
      complaints recorded; ``"reject"`` lets the judge refuse a chain inside the handshake,
      with the matching TLS alert.
    - ``handshake_timeout``: from accept to a finished handshake.
    - ``header_timeout``: to send a request's headers, counted from the handshake for the
      first request and from the request's first byte for later ones (slowloris).
    - ``keepalive_timeout``: idle time between requests on a kept-alive connection.
    - ``max_connections``: open connections; more are closed as soon as they are accepted.
    - ``max_handshakes``: handshakes in flight; later connections wait, unread, for a slot
      (their handshake timeout runs while they wait).
    - ``shutdown_timeout``: how long :meth:`TlsListener.stop` lets running requests finish.
    """

    host: str
    port: int
    cert_file: Path
    key_file: Path
    client_verify: str = "accept"
    handshake_timeout: float = 10.0
    header_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    max_connections: int = 1000
    max_handshakes: int = 64
    shutdown_timeout: float = 10.0
    backlog: int = 2048

    def __post_init__(self) -> None:
        if self.client_verify not in CLIENT_VERIFY_MODES:
            raise ValueError(f"client_verify must be accept or reject, not {self.client_verify!r}")
        for name in ("handshake_timeout", "header_timeout", "keepalive_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_connections < 1 or self.max_handshakes < 1:
            raise ValueError("max_connections and max_handshakes must be at least 1")


@dataclass(frozen=True, slots=True)
class HandshakeRejection:
    """A handshake reject mode refused, for the System Log.

    ``chain`` is DER, leaf first, as far as OpenSSL had built it (the leaf and the presented
    intermediates linked to it by issuer name); empty when the client sent no certificate.
    """

    chain: tuple[bytes, ...]
    reason: ReasonCode
    detail: str
    peer: str | None  # "ip:port"
    tls_version: str | None  # "TLSv1.3"


# Reject mode: None accepts the chain; (reason, detail) refuses it.
Judge = Callable[[tuple[bytes, ...]], tuple[ReasonCode, str] | None]
OnReject = Callable[[HandshakeRejection], None]
