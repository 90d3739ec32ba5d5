"""What intake hands on: the presented chain, where it came from, and what the hop looked like.

:class:`Presented` is the boundary between intake and the layers after it (validation,
revocation, device mapping). It also fixes the keys of the ASGI TLS extension the built-in
listener fills (``scope["extensions"]["tls"]``): the standard ``client_cert_chain`` (PEM
strings), ``tls_version`` and ``cipher_suite``, plus Certbound's own keys below, which carry
the DER bytes (no PEM round trip) and what OpenSSL said during the handshake.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from certbound.errors import ReasonCode

TLS_EXTENSION = "tls"
# Certbound's keys in the ASGI TLS extension (set by certbound.intake.tls).
CHAIN_DER = "certbound.chain_der"  # tuple[bytes, ...]: the presented chain, leaf first
VERIFY_ERRORS = "certbound.verify_errors"  # tuple[tuple[int, int, str], ...]: errnum, depth, text
VERSION_NAME = "certbound.tls_version_name"  # "TLSv1.3"
CIPHER_NAME = "certbound.cipher_name"  # "TLS_AES_256_GCM_SHA384"


class IntakePath(enum.StrEnum):
    """Where the chain came from."""

    TLS = "tls"  # the built-in TLS listener's handshake
    PROXY = "proxy"  # a trusted proxy's header on the plain-HTTP listener
    NONE = "none"  # plain HTTP without a (trusted) certificate header


@dataclass(frozen=True, slots=True)
class HandshakeError:
    """One complaint OpenSSL's chain check made during the handshake (recorded, not obeyed)."""

    code: int
    depth: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "depth": self.depth, "message": self.message}


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """The TLS connection a chain came over."""

    version: str
    cipher: str
    handshake_errors: tuple[HandshakeError, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "cipher": self.cipher,
            "handshakeErrors": [e.to_dict() for e in self.handshake_errors],
        }


@dataclass(frozen=True, slots=True)
class Presented:
    """A request's client-certificate chain as intake found it.

    ``certificates`` is DER, leaf first, exactly as presented (empty: none). ``problem`` is
    set when intake itself refuses what it saw (a certificate header from an untrusted
    peer, a header that does not decode); the chain is then empty. ``ignored_headers`` names
    certificate headers that were present but did not count.
    """

    path: IntakePath
    certificates: tuple[bytes, ...]
    peer: str | None
    trusted_hop: bool
    listener: str = "tls"  # "tls" or "http"
    header_format: str | None = None
    proxy_verdict: str | None = None
    tls: TlsFacts | None = None
    problem: ReasonCode | None = None
    problem_detail: str | None = None
    ignored_headers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The ``intake`` object of events and of the echo endpoint."""
        return {
            "path": self.path.value,
            "listener": self.listener,
            "peer": self.peer,
            "trustedHop": self.trusted_hop,
            "headerFormat": self.header_format,
            "proxyVerdict": self.proxy_verdict,
            "ignoredHeaders": list(self.ignored_headers),
            "tls": self.tls.to_dict() if self.tls else None,
            "certificates": len(self.certificates),
        }
