"""The ASGI TLS extension of a connection: ``scope["extensions"]["tls"]``.

Built once per connection when its handshake finishes, and copied into every request's
scope. The keys are the ASGI TLS extension's (``client_cert_chain`` as PEM, leaf first,
computed lazily on first use; ``tls_version``; ``cipher_suite``; ``server_cert``;
``client_cert_name``; ``client_cert_error``) and Certbound's own from
:mod:`certbound.intake.chain` (DER chain, OpenSSL's recorded complaints, version and cipher
names).

Server-side, ``SSL_get_peer_cert_chain`` leaves the leaf out: the leaf from
``SSL_get_peer_certificate`` is put back in front (unless a future OpenSSL includes it).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import overload

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from certbound.intake import chain
from certbound.intake.tls.context import CIPHER_SUITE_IDS, TLS_VERSION_IDS


class PemChain(Sequence[str]):
    """DER certificates seen as PEM strings, converted on first access only."""

    __slots__ = ("_der", "_pem")

    def __init__(self, der: tuple[bytes, ...]) -> None:
        self._der = der
        self._pem: tuple[str, ...] | None = None

    def _strings(self) -> tuple[str, ...]:
        if self._pem is None:
            self._pem = tuple(ssl.DER_cert_to_PEM_cert(item) for item in self._der)
        return self._pem

    def __len__(self) -> int:
        return len(self._der)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._strings()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PemChain):
            return self._der == other._der
        if isinstance(other, Sequence):
            return list(self._strings()) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PemChain({len(self._der)} certificates)"


def presented_chain(conn: SSL.Connection, leaf: x509.Certificate | None) -> tuple[bytes, ...]:
    """The chain the client presented, DER, leaf first; empty without a certificate.

    ``leaf`` is ``conn.get_peer_certificate(as_cryptography=True)``.
    """
    if leaf is None:
        return ()
    leaf_der = leaf.public_bytes(Encoding.DER)
    others = conn.get_peer_cert_chain(as_cryptography=True) or ()
    rest = [cert.public_bytes(Encoding.DER) for cert in others]
    if rest and rest[0] == leaf_der:
        rest = rest[1:]
    return (leaf_der, *rest)


def tls_extension(
    conn: SSL.Connection, errors: Sequence[tuple[int, int, str]], server_cert_pem: str | None
) -> dict[object, object]:
    """The extension dict for a connection whose handshake just finished."""
    leaf = conn.get_peer_certificate(as_cryptography=True)
    der = presented_chain(conn, leaf)
    version = conn.get_protocol_version_name()
    cipher = conn.get_cipher_name()
    return {
        "client_cert_chain": PemChain(der),
        "client_cert_name": leaf.subject.rfc4514_string() if leaf is not None else None,
        "client_cert_error": _error_text(errors) if der else None,
        "tls_version": TLS_VERSION_IDS.get(version),
        "cipher_suite": CIPHER_SUITE_IDS.get(cipher) if cipher else None,
        "server_cert": server_cert_pem,
        chain.CHAIN_DER: der,
        chain.VERIFY_ERRORS: tuple(errors),
        chain.VERSION_NAME: version,
        chain.CIPHER_NAME: cipher,
    }


def _error_text(errors: Sequence[tuple[int, int, str]]) -> str | None:
    if not errors:
        return None
    return "; ".join(f"{message} (depth {depth})" for _, depth, message in errors)
