"""What a handshake check is given, read and checked before any connection is made: the URL,
the client certificate and its key (which must match), and the CAs to trust the server with.

Anything wrong here is the caller's input, not a finding about the server: it raises
:class:`ProbeInputError` (``certbound handshake`` exits 2).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from certbound.clock import format_rfc3339
from certbound.errors import CertboundError
from certbound.pki.certificate import (
    der,
    key_description,
    san_strings,
    serial_hex,
    sha256_fingerprint,
    x5t_s256,
)
from certbound.pki.pem import load_certificates, load_presented_file

TlsKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class ProbeInputError(Exception):
    """A usage or input error: a bad URL, an unreadable file, a key that does not match."""


@dataclass(frozen=True, slots=True)
class Target:
    """The server to check: ``https://host[:port][/path]``; requests go to its origin."""

    url: str
    host: str
    port: int

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def authority(self) -> str:
        """``host:port`` as it goes in a URL or a Host header (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"https://{self.authority}"

    @property
    def server_name(self) -> bytes | None:
        """The SNI name: the host, unless it is an IP address (RFC 6066 section 3)."""
        return None if self.is_ip else self.host.encode("idna")


def parse_target(url: str) -> Target:
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "https":
        raise ProbeInputError(f"URL {url!r}: the URL must start with https://")
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise ProbeInputError(f"URL {url!r}: {exc}") from exc
    if not parts.hostname:
        raise ProbeInputError(f"URL {url!r}: no host")
    return Target(url=url, host=parts.hostname, port=port)


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ProbeInputError(f"{option} {path}: cannot read: {exc.strerror or exc}") from exc


def _load_key(data: bytes, path: Path) -> TlsKey:
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError as exc:  # cryptography: "Password was not given but ... encrypted"
        raise ProbeInputError(
            f"--key {path}: the private key is encrypted; write a decrypted copy "
            "(openssl pkey -in KEY -out PLAIN) and pass that"
        ) from exc
    except ValueError as exc:
        raise ProbeInputError(f"--key {path}: no private key could be read: {exc}") from exc
    if not isinstance(key, TlsKey):
        raise ProbeInputError(f"--key {path}: a {type(key).__name__} cannot sign a TLS handshake")
    return key


def _same_key(cert: x509.Certificate, key: TlsKey) -> bool:
    return bool(cert.public_key().public_bytes(*_SPKI) == key.public_key().public_bytes(*_SPKI))


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """The client certificate (leaf first, then any intermediates from the same file) and its
    private key, checked to belong together."""

    cert_path: Path
    key_path: Path
    chain: tuple[x509.Certificate, ...]
    key: TlsKey

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def x5t_s256(self) -> str:
        return x5t_s256(der(self.leaf))

    def facts(self, now: dt.datetime) -> dict[str, Any]:
        leaf = self.leaf
        return {
            "file": str(self.cert_path),
            "keyFile": str(self.key_path),
            "subjectDn": leaf.subject.rfc4514_string(),
            "issuerDn": leaf.issuer.rfc4514_string(),
            "serialNumber": serial_hex(leaf),
            "notBefore": format_rfc3339(leaf.not_valid_before_utc),
            "notAfter": format_rfc3339(leaf.not_valid_after_utc),
            "validNow": leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc,
            "sha256Thumbprint": sha256_fingerprint(leaf),
            "x5t#S256": self.x5t_s256,
            "sans": san_strings(leaf),
            "key": key_description(leaf),
            "keyMatches": True,  # checked by load_credentials, or there is no report
            "intermediates": len(self.chain) - 1,
        }


def load_credentials(cert_path: Path, key_path: Path | None = None) -> ClientCredentials:
    """Read ``--cert`` (PEM/DER, leaf first) and ``--key`` (default: the same file, as with
    ``curl --cert combined.pem``); a key that is not the certificate's is an input error."""
    key_path = key_path or cert_path
    try:
        chain = load_presented_file(_read(cert_path, "--cert"))
    except CertboundError as exc:
        raise ProbeInputError(f"--cert {cert_path}: {exc}") from exc
    key = _load_key(_read(key_path, "--key"), key_path)
    if not _same_key(chain[0], key):
        raise ProbeInputError(
            f"--key {key_path} does not match --cert {cert_path}: the certificate "
            f"({chain[0].subject.rfc4514_string()}, serial {serial_hex(chain[0])}) holds "
            "another public key; pass the key the certificate was issued for"
        )
    return ClientCredentials(cert_path, key_path, tuple(chain), key)


@dataclass(frozen=True, slots=True)
class ServerAnchors:
    """The CAs the server's certificate must lead to: ``--cacert`` or the system store."""

    cafile: Path | None
    certificates: tuple[x509.Certificate, ...] = ()

    def describe(self) -> str:
        return f"--cacert {self.cafile}" if self.cafile else "the system store"


def load_server_anchors(cafile: Path | None) -> ServerAnchors:
    if cafile is None:
        return ServerAnchors(None)
    try:
        certificates = load_certificates(_read(cafile, "--cacert"))
    except CertboundError as exc:
        raise ProbeInputError(f"--cacert {cafile}: {exc}") from exc
    return ServerAnchors(cafile, tuple(certificates))
