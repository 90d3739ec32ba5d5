"""A throw-away PKI for development, demos and tests: CAs and device certificates.

``quickstart`` writes one to disk with the layout DESIGN.md fixes; tests build whatever
odd certificate they need with :func:`issue`. Nothing here is for production keys.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
DAY = dt.timedelta(days=1)


def make_key(kind: str = "p256") -> PrivateKey:
    """A key: ``p256``, ``p384``, ``p521``, ``p192``, ``rsaBITS`` or ``ed25519``."""
    curves: dict[str, ec.EllipticCurve] = {
        "p256": ec.SECP256R1(),
        "p384": ec.SECP384R1(),
        "p521": ec.SECP521R1(),
        "p192": ec.SECP192R1(),
    }
    if kind in curves:
        return ec.generate_private_key(curves[kind])
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}")


def dn(common_name: str, organisation: str | None = "Certbound Dev") -> x509.Name:
    attrs = []
    if organisation:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


@dataclass
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def name(self) -> x509.Name:
        return self.cert.subject

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


_CA_USAGE = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
_LEAF_USAGE = x509.KeyUsage(True, False, False, False, False, False, False, False, False)


@dataclass
class Profile:
    """What goes into a certificate; defaults make a good P-256 device certificate."""

    ca: bool = False
    path_length: int | None = None
    key_usage: x509.KeyUsage | None = None  # None: the role's default
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.CLIENT_AUTH,)
    sans: Sequence[x509.GeneralName] = ()
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    hash_algorithm: Any = field(default_factory=hashes.SHA256)
    basic_constraints: bool = True
    extra: Sequence[tuple[x509.ExtensionType, bool]] = ()
    serial: int | None = None
    crl_urls: Sequence[str] = ()


def issue(
    subject: x509.Name | str,
    issuer: Issued | None = None,
    *,
    key: PrivateKey | None = None,
    profile: Profile | None = None,
    now: dt.datetime | None = None,
) -> Issued:
    """Issue a certificate for ``subject``, signed by ``issuer`` (self-signed when None)."""
    p = profile or Profile()
    now = now or dt.datetime.now(dt.UTC)
    key = key or make_key()
    name = dn(subject) if isinstance(subject, str) else subject
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.name if issuer else name)
        .public_key(key.public_key())
        .serial_number(p.serial or x509.random_serial_number())
        .not_valid_before(p.not_before or now - DAY)
        .not_valid_after(p.not_after or now + 365 * DAY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if p.basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(p.ca, p.path_length), True)
    usage = p.key_usage or (_CA_USAGE if p.ca else _LEAF_USAGE)
    builder = builder.add_extension(usage, True)
    if issuer:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
        builder = builder.add_extension(aki, False)
    if p.eku and not p.ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(p.eku)), False)
    if p.sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(p.sans)), False)
    if p.crl_urls:
        points = [
            x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None)
            for u in p.crl_urls
        ]
        builder = builder.add_extension(x509.CRLDistributionPoints(points), False)
    for ext, critical in p.extra:
        builder = builder.add_extension(ext, critical)
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else p.hash_algorithm
    return Issued(builder.sign(signer, algorithm), key)


def ca(
    subject: str,
    issuer: Issued | None = None,
    *,
    organisation: str = "Certbound Dev",
    key_kind: str = "p256",
    **kwargs: object,
) -> Issued:
    """A CA certificate (root when ``issuer`` is None)."""
    profile = Profile(ca=True, eku=None, **kwargs)  # type: ignore[arg-type]
    return issue(dn(subject, organisation), issuer, key=make_key(key_kind), profile=profile)


def pem_bundle(certs: Iterable[Issued | x509.Certificate]) -> bytes:
    out = b""
    for item in certs:
        cert = item.cert if isinstance(item, Issued) else item
        out += cert.public_bytes(serialization.Encoding.PEM)
    return out


def make_crl(
    issuer: Issued, revoked_serials: Iterable[int], now: dt.datetime, days: int = 7
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + days * DAY)
        .add_extension(x509.CRLNumber(1), False)
    )
    for serial in revoked_serials:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - dt.timedelta(minutes=5))
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(issuer.key, hashes.SHA256())


# The devices quickstart issues, and the reason code each one must get from `verify`.
QUICKSTART_DEVICES: dict[str, str | None] = {
    "good": None,
    "cn-only": None,
    "expired": "CERTIFICATE_EXPIRED",
    "not-yet-valid": "CERTIFICATE_NOT_YET_VALID",
    "foreign": "UNKNOWN_CA",
    "server-auth-only": "EKU_NOT_CLIENT_AUTH",
    "revoked": "REVOKED_CERTIFICATE",
}


# The user the quickstart's good device maps to (its SAN email).
GOOD_DEVICE_USER = "alice@certbound.test"


@dataclass
class DevPKI:
    root: Issued
    intermediate: Issued
    devices: dict[str, Issued]
    crl: x509.CertificateRevocationList
    server_ca: Issued
    server: Issued


def server_certificate(issuer: Issued, now: dt.datetime) -> Issued:
    """A TLS server certificate for the listener on this machine: localhost, 127.0.0.1, ::1."""
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    profile = Profile(sans=sans, eku=[ExtendedKeyUsageOID.SERVER_AUTH], not_after=now + 825 * DAY)
    return issue(dn("localhost"), issuer, profile=profile, now=now)


def build_dev_pki(now: dt.datetime | None = None, crl_url: str | None = None) -> DevPKI:
    """Root -> intermediate -> the quickstart devices, plus a foreign CA's device and a CRL."""
    now = now or dt.datetime.now(dt.UTC)
    root = ca("Certbound Dev Root CA", not_after=now + 3650 * DAY)
    inter = ca("Certbound Dev Intermediate CA", root, path_length=0, not_after=now + 1825 * DAY)
    foreign_root = ca("Foreign Root CA", organisation="Elsewhere Inc", not_after=now + 3650 * DAY)
    foreign_inter = ca("Foreign Issuing CA", foreign_root, organisation="Elsewhere Inc")
    crl_urls = (crl_url,) if crl_url else ()

    def device(
        name: str, issuer: Issued = inter, extra_sans: Sequence[x509.GeneralName] = (), **kw: object
    ) -> Issued:
        profile = Profile(
            sans=[x509.DNSName(f"{name}.devices.certbound.test"), *extra_sans],
            crl_urls=crl_urls,
            **kw,  # type: ignore[arg-type]
        )
        return issue(dn(f"{name}.devices.certbound.test"), issuer, profile=profile, now=now)

    devices = {
        "good": device("good", extra_sans=[x509.RFC822Name(GOOD_DEVICE_USER)]),
        "cn-only": issue(dn("cn-only"), inter, profile=Profile(crl_urls=crl_urls), now=now),
        "expired": device("expired", not_before=now - 60 * DAY, not_after=now - DAY),
        "not-yet-valid": device("not-yet-valid", not_before=now + 30 * DAY),
        "foreign": device("foreign", foreign_inter),
        "server-auth-only": device("server-auth-only", eku=[ExtendedKeyUsageOID.SERVER_AUTH]),
        "revoked": device("revoked"),
    }
    crl = make_crl(inter, [devices["revoked"].cert.serial_number], now)
    server_ca = ca("Certbound Dev Server CA", not_after=now + 3650 * DAY)
    return DevPKI(root, inter, devices, crl, server_ca, server_certificate(server_ca, now))


def write_dev_pki(pki: DevPKI, directory: Path) -> None:
    """Write the layout DESIGN.md fixes: D/pki/{ca-chain,root,intermediate}.pem, devices/,
    and the listener's server-ca.pem, server.pem and server.key."""
    devices = directory / "devices"
    devices.mkdir(parents=True, exist_ok=True)
    (directory / "root.pem").write_bytes(pki.root.cert_pem())
    (directory / "intermediate.pem").write_bytes(pki.intermediate.cert_pem())
    (directory / "ca-chain.pem").write_bytes(pem_bundle([pki.intermediate, pki.root]))
    (directory / "intermediate.crl.pem").write_bytes(
        pki.crl.public_bytes(serialization.Encoding.PEM)
    )
    (directory / "server-ca.pem").write_bytes(pki.server_ca.cert_pem())
    (directory / "server.pem").write_bytes(pki.server.cert_pem())
    server_key = directory / "server.key"
    server_key.write_bytes(pki.server.key_pem())
    server_key.chmod(0o600)
    for name, item in pki.devices.items():
        (devices / f"{name}.pem").write_bytes(item.cert_pem())
        key_path = devices / f"{name}.key"
        key_path.write_bytes(item.key_pem())
        key_path.chmod(0o600)
