"""The listener's pyOpenSSL context: what TLS it speaks and how it asks for client certificates.

- TLS 1.2 and 1.3 only. TLS 1.2 suites: ECDHE with AEAD ciphers only (Mozilla's
  "intermediate" list), server preference; TLS 1.3 suites and key-exchange groups are
  OpenSSL's defaults.
- No resumption: no session tickets and the session cache off. A resumed session skips the
  verify callback and carries only the leaf, so a device that failed could come back looking
  clean.
- No renegotiation (``OP_NO_RENEGOTIATION``): it could swap the certificate under a
  connection whose requests already carry the old one.
- The client is asked for a certificate with an empty CA list (any chain is welcome: the
  app, or reject mode's judge, decides); see :mod:`certbound.intake.tls.verifier`.
- ``SSL_MODE_RELEASE_BUFFERS``: an idle connection gives its record buffers back.

The server certificate file may hold the chain after the leaf. A context is built per
listener (contexts cannot be pickled or shared across processes).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from OpenSSL import SSL
from OpenSSL._util import lib as _lib

from certbound.intake.tls.config import Judge
from certbound.intake.tls.verifier import Verifier

TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
# IANA code points of the suites the context allows, by OpenSSL's name (ASGI cipher_suite).
CIPHER_SUITE_IDS: dict[str, int] = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-RSA-AES128-GCM-SHA256": 0xC02F,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
    "ECDHE-RSA-AES256-GCM-SHA384": 0xC030,
    "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9,
    "ECDHE-RSA-CHACHA20-POLY1305": 0xCCA8,
}
TLS_VERSION_IDS: dict[str, int] = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
MAX_VERIFY_DEPTH = 10

_OPTIONS = (
    SSL.OP_NO_TICKET
    | SSL.OP_NO_RENEGOTIATION
    | SSL.OP_CIPHER_SERVER_PREFERENCE
    | SSL.OP_NO_COMPRESSION
    | SSL.OP_SINGLE_ECDH_USE
)


@dataclass(frozen=True, slots=True)
class ServerContext:
    """A built context, the verifier whose callback it holds, and the server's leaf as PEM."""

    context: SSL.Context
    verifier: Verifier
    server_cert_pem: str


def build_context(cert_file: Path, key_file: Path, judge: Judge | None) -> ServerContext:
    """The server context for one listener; reject mode when ``judge`` is given.

    Raises ``OSError`` for an unreadable file and ``ValueError`` for a certificate or key
    OpenSSL refuses (or a key that does not match the certificate).
    """
    cert_pem = Path(cert_file).read_bytes()  # OSError with the path, before OpenSSL's error
    Path(key_file).read_bytes()
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_max_proto_version(SSL.TLS1_3_VERSION)
    context.set_options(_OPTIONS)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.set_mode(_lib.SSL_MODE_RELEASE_BUFFERS)
    context.set_cipher_list(TLS12_CIPHERS.encode("ascii"))
    try:
        context.use_certificate_chain_file(str(cert_file))
        context.use_privatekey_file(str(key_file))
        context.check_privatekey()
    except SSL.Error as exc:
        raise ValueError(f"server certificate or key refused: {exc}") from exc
    context.set_verify_depth(MAX_VERIFY_DEPTH)
    verifier = Verifier(judge)
    verifier.install(context)
    return ServerContext(context, verifier, _first_pem(cert_pem))


def _first_pem(pem: bytes) -> str:
    """The first certificate of a PEM file, re-encoded (the ASGI ``server_cert``)."""
    text = pem.decode("ascii", "replace")
    end_marker = "-----END CERTIFICATE-----"
    start = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find(end_marker, start)
    if start < 0 or end < 0:
        raise ValueError("no PEM certificate in the server certificate file")
    der = ssl.PEM_cert_to_DER_cert(text[start : end + len(end_marker)])
    return ssl.DER_cert_to_PEM_cert(der)
