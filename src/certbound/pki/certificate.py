"""Facts about one X.509 certificate: names, validity, fingerprints, pins and role."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID

from certbound.clock import format_rfc3339

# What cryptography raises when a certificate's extensions do not decode (they decode
# lazily, on first access to ``Certificate.extensions``).
UNDECODABLE = (ValueError, TypeError, x509.DuplicateExtension)

_DER = serialization.Encoding.DER
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(_DER)


def sha256_fingerprint(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the certificate's DER."""
    return hashlib.sha256(der(cert)).hexdigest()


def x5t_s256(cert_der: bytes) -> str:
    """RFC 8705 ``x5t#S256``: base64url (no padding) of SHA-256 over the DER."""
    return base64.urlsafe_b64encode(hashlib.sha256(cert_der).digest()).rstrip(b"=").decode()


def spki_sha256(cert: x509.Certificate) -> str:
    """RFC 7469 pin: standard base64 of SHA-256 over the SubjectPublicKeyInfo DER."""
    spki = cert.public_key().public_bytes(_DER, _SPKI)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def serial_hex(cert: x509.Certificate) -> str:
    """Serial number as upper-case hex, even length (as OpenSSL prints it, without colons)."""
    text = format(cert.serial_number, "X")
    return text if len(text) % 2 == 0 else "0" + text


def extension(cert: x509.Certificate, ext_type: type[Any]) -> Any:
    """The value of an extension, or None when it is absent."""
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None


def basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    value = extension(cert, x509.BasicConstraints)
    return value if isinstance(value, x509.BasicConstraints) else None


def is_ca(cert: x509.Certificate) -> bool:
    constraints = basic_constraints(cert)
    return constraints is not None and constraints.ca


def can_sign_certificates(cert: x509.Certificate) -> bool:
    usage = extension(cert, x509.KeyUsage)
    return usage is None or bool(usage.key_cert_sign)


def is_self_issued(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer`` names ``cert``'s issuer and its key verifies the signature."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, InvalidSignature, TypeError, UnsupportedAlgorithm):
        return False
    return True


def name_constraint_subtrees(cert: x509.Certificate) -> int:
    """How many permitted and excluded subtrees the certificate's name constraints hold
    (0 without the extension, or when its extensions do not decode)."""
    try:
        constraints = extension(cert, x509.NameConstraints)
    except UNDECODABLE:
        return 0
    if constraints is None:
        return 0
    return len(constraints.permitted_subtrees or ()) + len(constraints.excluded_subtrees or ())


def key_id(cert: x509.Certificate) -> str | None:
    """The authority key identifier the certificate names, as hex, if any."""
    aki = extension(cert, x509.AuthorityKeyIdentifier)
    if aki is None or aki.key_identifier is None:
        return None
    return bytes(aki.key_identifier).hex()


def subject_key_id(cert: x509.Certificate) -> str | None:
    ski = extension(cert, x509.SubjectKeyIdentifier)
    return None if ski is None else bytes(ski.digest).hex()


def san_strings(cert: x509.Certificate) -> list[str]:
    """Subject alternative names as ``TYPE:value`` strings, in certificate order."""
    try:
        sans = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    out: list[str] = []
    for name in sans:  # type: ignore[attr-defined]
        out.append(_general_name(name))
    return out


def _general_name(name: x509.GeneralName) -> str:
    match name:
        case x509.DNSName():
            return f"DNS:{name.value}"
        case x509.RFC822Name():
            return f"email:{name.value}"
        case x509.UniformResourceIdentifier():
            return f"URI:{name.value}"
        case x509.IPAddress():
            return f"IP:{name.value}"
        case x509.DirectoryName():
            return f"dirName:{name.value.rfc4514_string()}"
        case x509.RegisteredID():
            return f"RID:{name.value.dotted_string}"
        case x509.OtherName():
            return f"otherName:{name.type_id.dotted_string}"
    return str(name)


def key_description(cert: x509.Certificate) -> str:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unsupported key"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    return type(key).__name__


def role(cert: x509.Certificate) -> str:
    if not is_ca(cert):
        return "leaf"
    return "root" if is_self_issued(cert) and signed_by(cert, cert) else "intermediate"


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What Certbound shows about a certificate (CLI, API and System Log)."""

    subject_dn: str
    issuer_dn: str
    serial_number: str
    not_before: dt.datetime
    not_after: dt.datetime
    sha256_fingerprint: str
    spki_sha256: str
    role: str
    key: str
    signature_algorithm: str
    sans: tuple[str, ...] = ()

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertificateInfo:
        sig = cert.signature_algorithm_oid
        return cls(
            subject_dn=cert.subject.rfc4514_string(),
            issuer_dn=cert.issuer.rfc4514_string(),
            serial_number=serial_hex(cert),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            sha256_fingerprint=sha256_fingerprint(cert),
            spki_sha256=spki_sha256(cert),
            role=role(cert),
            key=key_description(cert),
            signature_algorithm=getattr(sig, "_name", None) or sig.dotted_string,
            sans=tuple(san_strings(cert)),
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["not_before"] = format_rfc3339(self.not_before)
        out["not_after"] = format_rfc3339(self.not_after)
        out["sans"] = list(self.sans)
        return out
